"""The cyclic garbage collector in a serving process: long-lived state kept out of its full collections.

An API worker holds a large heap that lives as long as the process: the app (routes, models), the
policy set (~100k objects at 10k policies), the vocabulary, the search index and the desk's knowledge
base. Under load, the objects of requests in flight outlive the young collections and are promoted,
so CPython starts a full collection every few hundred requests, and a full collection walks the
whole heap with the GIL held: 0.4–1 s each, measured at 10k policies with 32 clients (18 in 25 s over
two workers, collecting almost nothing), a pause for every request of the process and most of the
p99. `settle()` moves what is alive into the permanent generation (`gc.freeze`) once such state is
loaded, so full collections walk only what came after.

On in the processes that serve (`api.main`, what `huiqi serve` runs) via `manage()`; elsewhere
(tests, the CLI, the worker) `settle()` does nothing.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

_lock = threading.Lock()
_managed = False
_settled = False
_paused = 0  # loads in progress with automatic collection paused


def manage() -> None:
    """Keep long-lived state out of full collections in this process from now on; settle what is loaded."""
    global _managed
    _managed = True
    settle()


@contextmanager
def loading(*, replaces: bool = False) -> Iterator[None]:
    """Load long-lived state with automatic collection paused, then `settle` it (no-op unless managed).

    Building the policy set makes ~100k objects that all stay: with collection on, each batch of them
    starts a collection that walks the batch again (10k policies: 2.7–3.3 CPU s with, 1.3 s without).
    """
    if not _managed:
        yield
        return
    global _paused
    with _lock:
        _paused += 1
        gc.disable()
    try:
        yield
    finally:
        with _lock:
            _paused -= 1
            if not _paused:
                gc.enable()
        settle(replaced=replaces)


def settle(*, replaced: bool = False) -> None:
    """Freeze what is alive now (no-op unless `manage()` was called).

    Call after loading long-lived state. `replaced=True` when the new state replaces older state
    (a rebuilt policy set): what was frozen is first unfrozen and collected, so garbage cycles of
    the old state are freed rather than kept frozen. That is one full collection per replacement
    (a catalog change or a new day), instead of one every few hundred requests.
    """
    global _settled
    if not _managed:
        return
    with _lock:
        started = time.perf_counter()
        if replaced and _settled:
            gc.unfreeze()
        gc.collect()
        gc.freeze()
        _settled = True
        log.info(
            "heap settled: %d objects frozen in %.0f ms", gc.get_freeze_count(), (time.perf_counter() - started) * 1000
        )
