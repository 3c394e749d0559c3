"""Issue 14 item 15: the first `make run` printed nothing for ~110 s while installing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_a_first_install_says_what_it_is_doing_and_shows_the_big_downloads() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # -n: print the recipe, run nothing; -B: as on a fresh clone, every target out of date.
    out = subprocess.run(
        ["make", "-n", "-B", "run", "VENV=/nonexistent-venv"], cwd=ROOT, capture_output=True, text=True, timeout=60
    ).stdout
    lines = out.splitlines()
    steps = [ln for ln in lines if "==>" in ln]
    assert len(steps) >= 5, out
    assert any("PyTorch" in s for s in steps) and any("npm ci" in s for s in steps)
    installs = [ln for ln in lines if " install " in ln and ("torch" in ln or "requirements.txt" in ln)]
    assert installs and all(" -q " not in ln for ln in installs), installs
    # The step lines come before the commands they announce.
    torch = next(i for i, ln in enumerate(lines) if "install torch" in ln)
    assert any("PyTorch" in ln for ln in lines[:torch])
