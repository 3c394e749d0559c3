"""The API's background warm-up on a first start: it waits for the worker's catch-up embedding."""

from __future__ import annotations

import threading

from starlette.datastructures import State

from api.app import warm_up
from core.db import Database


def test_warm_up_waits_while_the_catch_up_embeds_firms(database: Database, matcher) -> None:  # type: ignore[no-untyped-def]
    state = State()
    state.db, state.matcher = database, matcher
    done = threading.Event()
    thread = threading.Thread(target=lambda: (warm_up(state), done.set()), daemon=True)
    with matcher.cache.batch_running():  # as the worker holds it while it embeds every new firm
        thread.start()
        assert not done.wait(1.0)
        # Waiting holds no lock a request needs: embedding a query goes ahead meanwhile.
        assert matcher.encode(["研发费用加计扣除怎么申报"], "query").shape == (1, matcher.embedder.dim)
        assert not done.is_set()
    thread.join(timeout=300)
    assert done.is_set()
