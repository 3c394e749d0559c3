"""Background re-matching: short transactions against a real database file, as the scheduler runs it."""

from __future__ import annotations

from sqlalchemy import func, select

from catalog import demo
from core import migrate
from core.db import Database
from matcher import service
from matcher.models import MatchResult
from profiles import demo as profiles_demo


def test_rematch_matches_changed_policies_then_has_nothing_left_to_do(tmp_path, matcher) -> None:  # type: ignore[no-untyped-def]
    database = Database(f"sqlite:///{tmp_path / 'rematch.db'}")
    migrate.upgrade(url=database.url)
    with database.session() as db:
        demo.load_demo_catalog(db=db, actor=None)
        profiles_demo.load_demo_enterprises(db=db, count=40)
    first = service.rematch(database=database, matcher=matcher)
    assert first["policies"] >= 100 and first["eligible"] > 0 and first["failed"] == 0
    with database.session() as db:
        stored = db.scalar(select(func.count()).select_from(MatchResult))
        assert stored >= first["eligible"] + first["likely"]
        assert service.changed_policy_ids(db=db) == []
    second = service.rematch(database=database, matcher=matcher)
    assert second["policies"] == 0 and second["firms"] == 0
    database.dispose()
