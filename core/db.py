"""Database engine, sessions and the declarative base shared by every domain."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from sqlalchemy import DateTime, MetaData, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, CursorResult, Engine, Result
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from core.config import Settings, get_settings

# Stable constraint names so Alembic migrations are reproducible on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    """Return the current time as an aware UTC datetime."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware UTC datetime is required")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    """Declarative base for every ORM model."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime()}


def table_of(model: type[Base]) -> Table:
    """Return a model's Table, for Core statements (typing knows __table__ only as a FromClause)."""
    table = model.__table__
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not mapped to a table")
    return table


def upsert_insert(bind: Session | Connection | Engine, table: Table) -> postgresql.Insert | sqlite.Insert:
    """Return an INSERT into table that takes ON CONFLICT clauses, in the bind's dialect (PostgreSQL or SQLite)."""
    dialect = (bind.get_bind() if isinstance(bind, Session) else bind).dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"INSERT … ON CONFLICT is not available for {dialect}")


def driver_cursor(connection: Connection) -> Any:
    """Return a cursor of the connection's own DBAPI connection (COPY, bulk reads past SQLAlchemy's rows)."""
    driver = connection.connection.driver_connection
    if driver is None:
        raise RuntimeError("the connection is closed")
    return driver.cursor()


def advance_id_sequences(bind: Session | Connection, tables: Iterable[str]) -> None:
    """Move each table's `id` sequence past its largest id (PostgreSQL; nothing to do elsewhere).

    Bulk loaders that write rows with explicit ids (INSERT … id, or COPY) leave the serial sequence
    where it was, so the next ordinary insert would draw an id already taken. Call this after such a
    load, in the same transaction or after it.
    """
    connection = bind.connection() if isinstance(bind, Session) else bind
    if connection.dialect.name != "postgresql":
        return
    for table in tables:
        connection.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f'(SELECT COALESCE(MAX(id), 0) + 1 FROM "{table}"), false)'
            )
        )


def rowcount(result: Result[Any]) -> int:
    """Return how many rows an INSERT, UPDATE or DELETE touched (Session.execute types it a plain Result)."""
    if not isinstance(result, CursorResult):
        raise TypeError("rowcount needs the result of an INSERT, UPDATE or DELETE")
    return result.rowcount


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    # pysqlite's own transaction handling breaks SAVEPOINTs (a RELEASE can commit the outer
    # transaction); let SQLAlchemy emit BEGIN itself instead (see _sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # "IMMEDIATE" (Database.writer): take the write lock at BEGIN, waiting up to busy_timeout. A
    # deferred transaction that reads and then writes fails at once with "database is locked" when
    # another connection committed in between (SQLite cannot upgrade a stale snapshot).
    mode = conn.get_execution_options().get("sqlite_begin", "")
    conn.exec_driver_sql(f"BEGIN {mode}".rstrip())


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            from pathlib import Path

            Path(path).parent.mkdir(parents=True, exist_ok=True)
        if "///" in url and path.split("?", 1)[0] not in ("", ":memory:"):
            # SQLite connections are cheap: as many as a process's request threads (anyio's 40), so the
            # requests let into the database at once (core.deps) are not fewer than threads can serve.
            kwargs.setdefault("pool_size", 20)
            kwargs.setdefault("max_overflow", 20)
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


@contextmanager
def unit_of_work(factory: Callable[[], Session]) -> Iterator[Session]:
    """Yield a new session from factory that commits on success, rolls back on any error, and is closed."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


class Database:
    """An engine and its session factory; the app and the CLI each hold one."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessionmaker = sessionmaker(bind=self.engine, expire_on_commit=False)
        # Sessions that will write: on SQLite they begin IMMEDIATE (see _sqlite_begin); elsewhere the same.
        self.writer = sessionmaker(
            bind=self.engine.execution_options(sqlite_begin="IMMEDIATE") if url.startswith("sqlite") else self.engine,
            expire_on_commit=False,
        )

    def session(self) -> AbstractContextManager[Session]:
        """Yield a session that commits on success and rolls back on error."""
        return unit_of_work(self.sessionmaker)

    def writer_session(self) -> AbstractContextManager[Session]:
        """Yield a session that will write: on SQLite it takes the write lock at BEGIN. Keep it short."""
        return unit_of_work(self.writer)

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


@contextmanager
def write_stage(session: Session) -> Iterator[Session]:
    """Run the block as a short write transaction of its own and commit it.

    For work that writes in stages with slow reading in between (desk intake): whatever the session
    had open is committed first, SQLite's write lock is taken at BEGIN (IMMEDIATE, waiting up to the
    busy timeout, like Database.writer) and released by the commit at the end of the block.
    """
    if session.in_transaction():
        session.commit()
    session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
    try:
        yield session
    except BaseException:
        session.rollback()
        raise
    session.commit()


_default_db: Database | None = None


def get_database(settings: Settings | None = None) -> Database:
    """Return the process-wide Database for the given (or current) settings."""
    global _default_db
    settings = settings or get_settings()
    url = settings.resolved_database_url
    if _default_db is None or _default_db.url != url:
        _default_db = Database(url)
    return _default_db


@contextmanager
def session_scope(settings: Settings | None = None) -> Iterator[Session]:
    """Yield one unit of work for jobs and the CLI: commit on success, roll back on error."""
    with get_database(settings).session() as session:
        yield session


class InSession:
    """A `Database` look-alike whose sessions are one caller's session: batch work joins its transaction.

    Batch functions take a database and open short sessions of their own; given an `InSession` they
    work inside the caller's transaction instead (tests that roll back, a command that wants one unit).
    """

    def __init__(self, db: Session) -> None:
        self.db = db
        self.url = str(db.get_bind().engine.url)
        self.engine = db.get_bind().engine

    @contextmanager
    def session(self) -> Iterator[Session]:
        """Yield the caller's session (flushed afterwards; the caller commits)."""
        yield self.db
        self.db.flush()

    writer_session = session
