"""SQLite write transactions: a request that reads and then writes must wait for a job's commit, not fail."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from core.db import Database, write_stage


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'w.db'}")
    with db.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)")
        conn.exec_driver_sql("INSERT INTO counter VALUES (1, 0)")
    return db


def _bump(db: Database) -> None:
    """Another connection (a background job) commits a write."""
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE counter SET n = n + 1 WHERE id = 1"))


def test_a_deferred_reader_cannot_write_after_another_commit(sqlite_db: Database) -> None:
    # The failure the writer sessions exist for: read, someone else commits, write → "database is locked".
    session = sqlite_db.sessionmaker()
    try:
        n = session.execute(text("SELECT n FROM counter WHERE id = 1")).scalar_one()
        _bump(sqlite_db)
        with pytest.raises(OperationalError, match="locked"):
            session.execute(text("UPDATE counter SET n = :n WHERE id = 1"), {"n": n + 10})
    finally:
        session.rollback()
        session.close()


def test_a_writer_session_takes_the_lock_first_so_the_other_writer_waits(sqlite_db: Database) -> None:
    import threading

    session = sqlite_db.writer()
    done = threading.Event()
    try:
        n = session.execute(text("SELECT n FROM counter WHERE id = 1")).scalar_one()
        other = threading.Thread(target=lambda: (_bump(sqlite_db), done.set()))
        other.start()
        assert not done.wait(0.3)  # the job waits for our write lock instead of slipping in between
        session.execute(text("UPDATE counter SET n = :n WHERE id = 1"), {"n": n + 10})
        session.commit()
        other.join(5)
        assert done.is_set()
    finally:
        session.close()
    with sqlite_db.engine.connect() as conn:
        assert conn.execute(text("SELECT n FROM counter")).scalar_one() == 11


def test_a_write_stage_after_reading_waits_for_the_lock_instead_of_failing(sqlite_db: Database) -> None:
    # Staged work (desk intake): read as a reader, then write in a short transaction of its own.
    import threading

    session = sqlite_db.sessionmaker()
    done = threading.Event()
    try:
        n = session.execute(text("SELECT n FROM counter WHERE id = 1")).scalar_one()
        _bump(sqlite_db)  # committed between the read and the write: a deferred write would fail here
        with write_stage(session):
            session.execute(text("SELECT n FROM counter WHERE id = 1"))
            other = threading.Thread(target=lambda: (_bump(sqlite_db), done.set()))
            other.start()
            assert not done.wait(0.3)  # the stage holds the write lock from its BEGIN, before writing
            session.execute(text("UPDATE counter SET n = n + 10 WHERE id = 1"))
        other.join(5)
        assert done.is_set() and not session.in_transaction()
    finally:
        session.close()
    with sqlite_db.engine.connect() as conn:
        assert conn.execute(text("SELECT n FROM counter")).scalar_one() == n + 12
