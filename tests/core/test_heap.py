"""core.heap: a serving process keeps long-lived state out of full collections; other processes are untouched.

Each case runs in a fresh interpreter: freezing is process-wide and would change this test process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import gc, json
from core import heap

out = {}
kept = [[i] for i in range(50_000)]  # state loaded before serving
with heap.loading():
    out["paused_while_loading"] = not gc.isenabled()
    loaded = [[i] for i in range(50_000)]
out["enabled_after_loading"] = gc.isenabled()
out["frozen_after_loading"] = gc.get_freeze_count()
if MANAGE:
    heap.manage()
    out["frozen_after_manage"] = gc.get_freeze_count()
    with heap.loading():
        out["paused_while_loading_managed"] = not gc.isenabled()
        more = [[i] for i in range(50_000)]
    out["enabled_after_loading_managed"] = gc.isenabled()
    out["frozen_after_loading_managed"] = gc.get_freeze_count()
    # A replacement: the old state's garbage cycles are collected, not kept frozen.
    cycle = []
    cycle.append(cycle)
    heap.settle()
    del cycle
    with heap.loading(replaces=True):
        newer = [[i] for i in range(10)]
    out["cycle_freed"] = not any(type(o) is list and len(o) == 1 and o[0] is o for o in gc.get_objects())
    # A full collection walks only what came after (the frozen objects are not tracked by generations).
    out["tracked_after"] = len(gc.get_objects())
print(json.dumps(out))
"""


def _probe(manage: bool) -> dict:
    code = f"MANAGE = {manage}\n" + PROBE
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_unmanaged_processes_collect_as_usual() -> None:
    out = _probe(manage=False)
    assert out == {"paused_while_loading": False, "enabled_after_loading": True, "frozen_after_loading": 0}


def test_a_serving_process_loads_without_collecting_and_freezes_what_stays() -> None:
    out = _probe(manage=True)
    assert out["frozen_after_manage"] >= 100_000  # both lists of 50k and their items
    assert out["paused_while_loading_managed"] is True
    assert out["enabled_after_loading_managed"] is True
    assert out["frozen_after_loading_managed"] >= out["frozen_after_manage"] + 50_000
    assert out["cycle_freed"] is True
    assert out["tracked_after"] < 10_000
