"""Request dependency for the matcher the app holds (embedder, indexes), for every router that needs it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from matcher.engine import Matcher


async def get_matcher(request: Request) -> Matcher:
    """Return the matcher the app created at start-up (async: no I/O, so no hop to a worker thread)."""
    return request.app.state.matcher


MatcherDep = Annotated[Matcher, Depends(get_matcher)]
