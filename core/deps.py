"""Request dependencies every domain uses: the app's settings, the database session, paging.

Routers of every package take these from here (never from api/), so dependencies point one way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session

from core.config import Settings
from core.db import Database, unit_of_work

F = TypeVar("F", bound=Callable[..., Any])


def get_settings_dep(request: Request) -> Settings:
    """Return the settings the app was built with."""
    return request.app.state.settings


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def reads_only(endpoint: F) -> F:
    """Mark a POST endpoint that reads and computes but writes nothing (the calculator, previews):
    it gets a reader session, so it never takes SQLite's write lock however long it computes."""
    vars(endpoint)["reads_only"] = True
    return endpoint


def writes_in_stages(endpoint: F) -> F:
    """Mark an endpoint that writes in short transactions of its own (`core.db.write_stage`).

    Its request session begins as a reader too, so neither the dependencies (signing in) nor slow
    work between its writes hold SQLite's write lock.
    """
    vars(endpoint)["writes_in_stages"] = True
    return endpoint


def _reads(request: Request) -> bool:
    endpoint = getattr(request.scope.get("route"), "endpoint", None)
    marked = getattr(endpoint, "reads_only", False) or getattr(endpoint, "writes_in_stages", False)
    return request.method in SAFE_METHODS or bool(marked)


def get_db(request: Request) -> Iterator[Session]:
    """Yield a session for one request: commit on success, roll back on any error."""
    # Requests that change things take SQLite's write lock up front (waiting for it rather than
    # failing when a background job commits between their read and their write); reads never do, and
    # staged writers take it themselves, stage by stage.
    db = request.app.state.db
    with unit_of_work(db.sessionmaker if _reads(request) else db.writer) as session:
        yield session


# scope="function": commit before the response is sent, so a client that gets 200 sees its write
# and its next request cannot race the commit (the default scope would commit after sending).
DbSession = Annotated[Session, Depends(get_db, scope="function")]
AppSettings = Annotated[Settings, Depends(get_settings_dep)]


def get_database(request: Request) -> Database:
    """Return the app's database (for work done after the response, in sessions of its own)."""
    return request.app.state.db


AppDatabase = Annotated[Database, Depends(get_database)]


async def release_reads(db: DbSession) -> None:
    """End what a staged route's session read while signing in, returning its connection to the pool.

    Declared after the principal of a route marked `writes_in_stages`: it runs on the event loop, so
    the request holds no connection while it waits for a worker thread to run its body (with every
    thread busy, requests holding connections while waiting for a thread starve the threads waiting
    for a connection). Ending a read-only transaction does no I/O worth a thread.
    """
    if db.in_transaction():
        db.commit()


ReleasedReads = Annotated[None, Depends(release_reads)]


class PageParams:
    """Page number and size from the query string, with a ceiling from settings."""

    def __init__(
        self,
        settings: AppSettings,
        page: Annotated[int, Query(ge=1, description="页码，从1开始")] = 1,
        page_size: Annotated[int, Query(ge=1, le=1000, description="每页条数")] = 20,
    ) -> None:
        self.page = page
        self.page_size = min(page_size, settings.page_size_max)

    @property
    def offset(self) -> int:
        """Return the row offset of this page."""
        return (self.page - 1) * self.page_size


Paging = Annotated[PageParams, Depends()]
