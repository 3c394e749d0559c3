"""The worker's matching runs against a real database file, in short transactions, as the scheduler runs them."""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select

from catalog import demo
from core import migrate
from core.db import Database
from matcher import runs, store
from matcher.models import FirmMatch, MatchResult, MatchRun, MatchRunChunk, PolicyMatchState
from profiles import demo as profiles_demo
from profiles.models import Enterprise
from tests.factories import stored_firm_rows

ROOT = Path(__file__).resolve().parents[2]


def _demo_database(path: Path, firms: int) -> Database:
    database = Database(f"sqlite:///{path}")
    migrate.upgrade(url=database.url)
    with database.session() as db:
        demo.load_demo_catalog(db=db, actor=None)
        profiles_demo.load_demo_enterprises(db=db, count=firms)
    return database


def test_catch_up_scores_every_firm_lists_every_policy_then_has_nothing_left_to_do(tmp_path, matcher) -> None:  # type: ignore[no-untyped-def]
    database = _demo_database(tmp_path / "catchup.db", 40)
    first = runs.rematch_changed(database, matcher)
    assert first.kind == "all" and first.firms == 40 and not first.stopped
    with database.session() as db:
        assert db.scalar(select(func.count()).select_from(FirmMatch)) == 40
        assert db.scalar(select(func.count()).select_from(MatchResult)) > 0
        assert runs.changed_policy_ids(db) == [] and runs.unlisted_policy_ids(db) == []
        assert runs.status(db)["up_to_date"]
    second = runs.rematch_changed(database, matcher)
    assert second.firms == 0 and second.policies == 0 and second.embedded == 0
    database.dispose()


def _lists(database: Database) -> tuple[dict[tuple[int, int], tuple[Any, ...]], dict[int, tuple[Any, ...]]]:
    with database.session() as db:
        rows = {
            (r.enterprise_id, r.policy_id): (
                r.policy_version,
                r.status,
                r.score,
                r.rule_score,
                r.tag_score,
                r.semantic_score,
                r.similarity,
                r.shared_tags,
                r.condition_states,
            )
            for r in db.scalars(select(MatchResult))
        }
        states = {
            s.policy_id: (s.policy_version, s.eligible, s.likely, s.listed)
            for s in db.scalars(select(PolicyMatchState))
        }
    return rows, states


def test_the_catch_up_lists_every_policy_in_one_pass_exactly_as_one_policy_at_a_time(tmp_path, matcher) -> None:  # type: ignore[no-untyped-def]
    one_pass = _demo_database(tmp_path / "one_pass.db", 60)
    runs.rematch_changed(one_pass, matcher)
    # The former catch-up: the same full run, then each policy listed on its own (firms read once per policy).
    each = _demo_database(tmp_path / "each.db", 60)
    runs.rematch_all(each, matcher)
    with each.session() as db:
        changed, unlisted = runs.changed_policy_ids(db), runs.unlisted_policy_ids(db)
    assert len(unlisted) > 50 and changed  # published but not open: the full run does not record them
    for pid in changed:
        runs.list_policy(each, matcher, pid)
    for pid in unlisted:
        if pid not in changed:
            runs.list_policy(each, matcher, pid, patch=False)
    rows, states = _lists(one_pass)
    assert len(rows) > 100 and all(listed for *_, listed in states.values())
    assert (rows, states) == _lists(each)
    firm_rows = [stored_firm_rows(database) for database in (one_pass, each)]
    assert len(firm_rows[0]) == 60 and firm_rows[0] == firm_rows[1]
    with one_pass.session() as db:
        assert runs.unlisted_policy_ids(db) == [] and runs.status(db)["up_to_date"]
    one_pass.dispose()
    each.dispose()


def test_re_matching_changed_firms_keeps_the_lists_from_its_own_pass_as_listing_them_anew_would(
    tmp_path, matcher, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """Changed firms' rows in the kept lists come out of the pass that scores them: keeping the lists
    judges no rule tree beyond that pass (it used to judge every eligible pair again, one firm at a time),
    and the lists are then those a listing from scratch writes. An edit that leaves a firm's profile
    text alone is not embedded again; one that changes it is."""
    from core.db import utcnow
    from matcher import eligibility, pipeline

    database = _demo_database(tmp_path / "changed.db", 60)
    runs.rematch_changed(database, matcher)
    with database.session() as db:
        assert runs.unlisted_policy_ids(db) == []
        ids = list(db.scalars(select(Enterprise.id).order_by(Enterprise.id)))
    changed = ids[::3] + ids[1:12:3]  # 24 firms, more than a few: the many-firms kernel
    with database.writer_session() as db:
        for eid in changed:  # real edits of facts the rules read, as a firm saving its profile does
            firm = db.get(Enterprise, eid)
            assert firm is not None
            firm.employees = (firm.employees or 0) + 120
            firm.annual_revenue = (firm.annual_revenue or 0) * 3 + 500
            firm.profile_updated_at = utcnow()
        text_edit = db.get(Enterprise, changed[0])
        assert text_edit is not None
        text_edit.products = (text_edit.products or "") + "；新增工业机器人减速器"
    with database.session() as db:
        assert sorted(runs._changed_firms(db)) == sorted(changed)

    calls = {"n": 0}
    evaluate = eligibility.evaluate_with_states

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(eligibility, "evaluate_with_states", counted)
    report = runs.rematch_firms(database, matcher, changed)
    in_rematch = calls["n"]
    assert report.firms == len(changed) and report.embedded == 1  # only the firm whose text changed
    assert report.details["list_rows"] > 0
    with database.session() as db:
        ctx = runs.context(db, matcher, today=dt.date.today())
        chunk = pipeline.load_chunk(db, ctx, ids=np.asarray(sorted(changed), dtype=np.int64))
    calls["n"] = 0
    pipeline.score_chunk(chunk, ctx)
    assert in_rematch == calls["n"] > 0  # the lists cost no judgement of their own
    monkeypatch.undo()

    after_rematch, _ = _lists(database)
    with database.session() as db:
        listed = list(db.scalars(select(PolicyMatchState.policy_id).where(PolicyMatchState.listed.is_(True))))
    runs.list_policies(database, matcher, listed)
    anew, _ = _lists(database)  # (the policies' counts are recorded by listings, not by firms' re-matches)
    assert len(anew) > 100 and after_rematch == anew
    database.dispose()


def test_a_stop_during_the_policy_lists_records_none_of_them(tmp_path, matcher) -> None:  # type: ignore[no-untyped-def]
    database = _demo_database(tmp_path / "stop_lists.db", 20)
    runs.rematch_all(database, matcher)
    with database.session() as db:
        unlisted = runs.unlisted_policy_ids(db)
    calls = {"n": 0}

    def stop_after_the_first_unit() -> bool:
        calls["n"] += 1
        return calls["n"] > 1

    runs.list_policies(database, matcher, unlisted, should_stop=stop_after_the_first_unit)
    with database.session() as db:
        assert runs.unlisted_policy_ids(db) == unlisted
    counts = runs.list_policies(database, matcher, unlisted)
    assert sum(c["eligible"] + c["likely"] for c in counts.values()) > 0
    with database.session() as db:
        assert runs.unlisted_policy_ids(db) == []
    database.dispose()


def test_a_stop_request_leaves_the_run_resumable_and_the_resumed_run_skips_finished_chunks(tmp_path, matcher) -> None:  # type: ignore[no-untyped-def]
    database = _demo_database(tmp_path / "stop.db", 30)
    calls = {"n": 0}

    def stop_after_two_chunks() -> bool:
        calls["n"] += 1
        with database.session() as db:
            return (db.scalar(select(func.count()).select_from(MatchRunChunk)) or 0) >= 2

    first = runs.rematch_all(database, matcher, width=5, should_stop=stop_after_two_chunks)
    assert first.stopped and first.chunks == 6
    second = runs.rematch_all(database, matcher, width=5)
    assert not second.stopped and second.resumed == 2 and second.firms == 20
    with database.session() as db:
        assert db.scalar(select(func.count()).select_from(FirmMatch)) == 30
        assert db.scalar(select(MatchRun.status)) == "done"
    database.dispose()


def test_a_full_run_killed_with_sigkill_resumes_without_duplicates_or_gaps(tmp_path, matcher) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "kill.db"
    database = _demo_database(path, 120)
    # Vectors first (in this process, through the shared cache), so the killed run spends its time in chunks.
    runs.embed_firms(database, matcher)
    env = {
        **os.environ,
        "HUIQI_DATABASE_URL": database.url,
        "HUIQI_VAR_DIR": str(matcher.settings.var_dir),
        "HUIQI_MATCH_CHUNK_WIDTH": "4",
        "HUIQI_ENV": "test",
        "HUIQI_SECRET_KEY": matcher.settings.secret_key,
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "match", "--all"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 240
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        with database.session() as db:
            done = db.scalar(select(func.count()).select_from(MatchRunChunk)) or 0
        if done >= 5:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    with database.session() as db:
        killed_at = db.scalar(select(func.count()).select_from(MatchRunChunk))
        assert db.scalar(select(MatchRun.status)) == "running" and 5 <= killed_at < 30
    resumed = runs.rematch_all(database, matcher, width=4)
    assert resumed.resumed == killed_at and not resumed.stopped
    with database.session() as db:
        ids = list(db.scalars(select(FirmMatch.enterprise_id)))
        assert Counter(ids).most_common(1)[0][1] == 1  # no firm written twice
        assert set(ids) == set(db.scalars(select(Enterprise.id)))  # none missing
        assert db.scalar(select(func.count()).select_from(MatchRunChunk)) == 30
        run_counts = dict(db.execute(select(PolicyMatchState.policy_id, PolicyMatchState.eligible)).tuples().all())
    # The resumed run's figures equal an uninterrupted run's.
    fresh = _demo_database(tmp_path / "fresh.db", 120)
    runs.rematch_all(fresh, matcher, width=4)
    with fresh.session() as db:
        assert (
            dict(db.execute(select(PolicyMatchState.policy_id, PolicyMatchState.eligible)).tuples().all()) == run_counts
        )
        expected = {r.enterprise_id: store.decode(r.payload) for r in db.scalars(select(FirmMatch))}
    with database.session() as db:
        got = {r.enterprise_id: store.decode(r.payload) for r in db.scalars(select(FirmMatch))}
    assert {k: (v[0]["policy"].tolist(), v[1]["policy"].tolist()) for k, v in got.items()} == {
        k: (v[0]["policy"].tolist(), v[1]["policy"].tolist()) for k, v in expected.items()
    }
    database.dispose()
    fresh.dispose()


def _add_firm_users(database: Database, logins: dict[int, dt.datetime | None], **extra: Any) -> None:
    from auth.models import Role, User

    with database.session() as db:
        for k, (eid, at) in enumerate(logins.items()):
            db.add(
                User(
                    username=f"firm{eid}-{k}-{extra.get('role', Role.enterprise).value}",
                    password_hash="x",
                    display_name="企业用户",
                    role=extra.get("role", Role.enterprise),
                    enterprise_id=eid,
                    is_active=extra.get("is_active", True),
                    last_login_at=at,
                )
            )


def test_a_first_catch_up_stores_the_firms_with_accounts_before_the_full_run(tmp_path, matcher) -> None:  # type: ignore[no-untyped-def]
    from auth.models import Role

    database = _demo_database(tmp_path / "accounts.db", 40)
    with database.session() as db:
        ids = sorted(db.scalars(select(Enterprise.id)))
    now = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    _add_firm_users(database, {ids[30]: None, ids[7]: now, ids[12]: now + dt.timedelta(hours=1)})
    _add_firm_users(database, {ids[3]: now}, is_active=False)
    _add_firm_users(database, {ids[5]: now}, role=Role.curator)
    assert runs.firms_with_accounts(database, 10) == [ids[12], ids[7], ids[30]]
    assert runs.firms_with_accounts(database, 2) == [ids[12], ids[7]]

    def stored() -> set[int]:
        with database.session() as db:
            return set(db.scalars(select(FirmMatch.enterprise_id)))

    # Stop as soon as anything is stored: what is stored then is what came first.
    early = runs.rematch_changed(database, matcher, should_stop=lambda: bool(stored()))
    assert early.stopped and early.kind == "all"
    assert stored() == {ids[7], ids[12], ids[30]}
    report = runs.rematch_changed(database, matcher)
    assert report.kind == "all" and report.firms == 40 and not report.stopped
    assert report.details["accounts_first"] == 3
    # The same rows as a catch-up with no account at all.
    plain = _demo_database(tmp_path / "plain.db", 40)
    assert runs.rematch_changed(plain, matcher).details["accounts_first"] == 0
    rows = stored_firm_rows(database)
    assert len(rows) == 40 and rows == stored_firm_rows(plain)
    # The API's warm-up (`wait_for_batches`) waits from the first of these firms to the end of the run's
    # embedding: a batch is marked running throughout, not released in between (a catch-up from nothing stored).
    held: list[bool] = []

    def batch_marked() -> bool:
        fd = os.open(matcher.cache.directory / matcher.cache.BATCH_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    with database.session() as db:
        db.execute(delete(FirmMatch))
    runs.rematch_changed(database, matcher, should_stop=lambda: held.append(batch_marked()) or False)
    assert held[0] and False in held and True not in held[held.index(False) :]
    database.dispose()
    plain.dispose()
