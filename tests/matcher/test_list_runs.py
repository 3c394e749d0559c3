"""Resumable policy listings (`list_run`): stopped between units, failing in the middle of a unit's writes or
killed with SIGKILL, a listing resumes without redoing written units, and ends with exactly the rows and
counts of an uninterrupted listing; no policy reads as listed before its whole list is written.

On SQLite (a database file) and PostgreSQL (a schema of its own, committed: a killed process writes to it).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import delete, func, select, update

from catalog import demo
from catalog import service as catalog_service
from catalog.models import Policy
from core import migrate
from core.db import Database, utcnow
from core.errors import Conflict
from matcher import batch, lists, pipeline, runs, store
from matcher.models import FirmMatch, ListRun, ListRunUnit, MatchResult, MatchRun, PolicyMatchState
from profiles import demo as profiles_demo
from profiles.models import Enterprise
from tests.factories import stored_firm_rows
from tests.support.pg_schema import demo_schema

ROOT = Path(__file__).resolve().parents[2]
FIRMS = 48
WIDTH = 8  # firms per unit here: 6 units


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path, matcher: Any) -> Iterator[Database]:
    """A database of its own with the demo catalog and firms, every firm matched (no list kept yet)."""
    if request.param == "sqlite":
        db_ = Database(f"sqlite:///{tmp_path / 'lists.db'}")
        migrate.upgrade(url=db_.url)
        with db_.session() as db:
            demo.load_demo_catalog(db=db, actor=None)
            profiles_demo.load_demo_enterprises(db=db, count=FIRMS)
        runs.rematch_all(db_, matcher)
        yield db_
        db_.dispose()
    else:
        with demo_schema("hq_lists", firms=FIRMS, needs="the PostgreSQL listing tests") as (db_, _):
            runs.rematch_all(db_, matcher)
            yield db_


@pytest.fixture(autouse=True)
def small_units(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runs, "LIST_BATCH", WIDTH)


Rows = dict[tuple[int, int], tuple[Any, ...]]
_COLUMNS = tuple(c for c in runs._LIST_COLUMNS if c not in ("enterprise_id", "policy_id", "computed_at"))


def _rows(database: Database) -> Rows:
    """Every list row but its time of writing, as stored."""
    with database.session() as db:
        return {
            (r.enterprise_id, r.policy_id): tuple(getattr(r, c) for c in _COLUMNS)
            for r in db.scalars(select(MatchResult))
        }


def _states(database: Database) -> dict[int, tuple[int, int, int, bool]]:
    with database.session() as db:
        return {
            s.policy_id: (s.policy_version, s.eligible, s.likely, s.listed)
            for s in db.scalars(select(PolicyMatchState))
        }


def _unlisted(database: Database) -> list[int]:
    with database.session() as db:
        return runs.unlisted_policy_ids(db)


def _uninterrupted(database: Database, matcher: Any) -> tuple[Rows, dict[int, tuple[int, int, int, bool]], list[int]]:
    """List every unlisted policy in one go; return its rows and states, then forget the lists again."""
    unlisted = _unlisted(database)
    assert len(unlisted) > 50
    runs.list_policies(database, matcher, unlisted)
    rows, states = _rows(database), _states(database)
    assert len(rows) > 100 and _unlisted(database) == []
    with database.writer_session() as db:
        db.execute(delete(MatchResult))
        db.execute(delete(ListRun))
        db.execute(update(PolicyMatchState).values(listed=False))
    assert _unlisted(database) == unlisted
    return rows, states, unlisted


def _units(database: Database) -> int:
    with database.session() as db:
        return db.scalar(select(func.count()).select_from(ListRunUnit)) or 0


def _counting(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> dict[str, int]:
    """Count the calls of `module.name` (a pass over a unit of firms) from now on."""
    calls = {"n": 0}
    real = getattr(module, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_a_listing_stopped_between_units_resumes_where_it_stopped(database, matcher, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    expected_rows, expected_states, unlisted = _uninterrupted(database, matcher)

    def after_two_units() -> bool:
        return _units(database) >= 2

    runs.list_policies(database, matcher, unlisted, should_stop=after_two_units)
    assert _units(database) == 2
    assert _unlisted(database) == unlisted  # nothing reads as listed yet
    with database.session() as db:
        first = db.scalar(select(ListRun.first_id))
        written = {eid for eid, _ in _rows(database)}
        assert written and all(first <= eid < first + 2 * WIDTH for eid in written)
        assert db.scalar(select(ListRun.status)) == "running"
        listing = runs.status(db)["listing"]  # staff see the listing waiting to resume
        assert (listing["kind"], listing["units"], listing["units_done"]) == ("list", FIRMS // WIDTH, 2)
        assert listing["policies"] == len(unlisted)
    passes = _counting(monkeypatch, pipeline, "list_chunk")
    counts = runs.list_policies(database, matcher, unlisted)
    assert passes["n"] == FIRMS // WIDTH - 2  # the two written units are not judged again
    assert _rows(database) == expected_rows
    assert _states(database) == expected_states
    assert {pid: (c["eligible"], c["likely"]) for pid, c in counts.items()} == {
        pid: (expected_states[pid][1], expected_states[pid][2]) for pid in unlisted
    }
    with database.session() as db:
        run = db.scalars(select(ListRun)).one()
        assert (run.status, run.units_done, run.units) == ("done", FIRMS // WIDTH, FIRMS // WIDTH)
        assert runs.status(db)["listing"] is None


def test_a_unit_cut_short_mid_write_is_rolled_back_and_written_on_resume(database, matcher, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A crash in the middle of a unit's writes (after some of its parts) leaves none of the unit's rows;
    a stop asked between its parts rolls it back too. The resumed listing writes it whole."""
    expected_rows, expected_states, unlisted = _uninterrupted(database, matcher)
    monkeypatch.setattr(runs, "LIST_PART", 40)  # several parts per unit
    insert = runs._insert_list_rows
    parts = {"n": 0}

    def crash_in_the_third_unit(db: Any, rows: list[dict[str, Any]]) -> None:
        insert(db, rows)
        if rows and _units_in(db) == 2:
            parts["n"] += 1
            if parts["n"] == 2:  # its second part is written, in the unit's open transaction
                raise RuntimeError("killed mid-unit")

    monkeypatch.setattr(runs, "_insert_list_rows", crash_in_the_third_unit)
    with pytest.raises(RuntimeError, match="killed mid-unit"):
        runs.list_policies(database, matcher, unlisted)
    monkeypatch.setattr(runs, "_insert_list_rows", insert)
    assert _units(database) == 2
    with database.session() as db:
        first = db.scalar(select(ListRun.first_id))
    assert all(eid < first + 2 * WIDTH for eid, _ in _rows(database))  # nothing of the third unit
    assert _unlisted(database) == unlisted

    # A stop asked between two parts of the next unit: rolled back as well, not recorded.
    asked = {"n": 0}

    def between_parts() -> bool:
        asked["n"] += 1
        return asked["n"] > 2  # before the unit, before its first part: go on; before its second: stop

    runs.list_policies(database, matcher, unlisted, should_stop=between_parts)
    assert _units(database) == 2 and all(eid < first + 2 * WIDTH for eid, _ in _rows(database))
    runs.list_policies(database, matcher, unlisted)
    assert _rows(database) == expected_rows
    assert _states(database) == expected_states


def _units_in(db: Any) -> int:
    return db.scalar(select(func.count()).select_from(ListRunUnit)) or 0


_LISTING = """
import sys
from core.config import get_settings
from core.db import get_database
from matcher import runs
from matcher.engine import Matcher

runs.LIST_BATCH = int(sys.argv[1])
settings = get_settings()
database = get_database(settings)
matcher = Matcher(settings)
with database.session() as db:
    ids = runs.unlisted_policy_ids(db)
runs.list_policies(database, matcher, ids)
"""


def test_a_listing_killed_with_sigkill_resumes_without_duplicates_or_gaps(database, matcher) -> None:  # type: ignore[no-untyped-def]
    expected_rows, expected_states, unlisted = _uninterrupted(database, matcher)
    env = {
        **os.environ,
        "HUIQI_DATABASE_URL": database.url,
        "HUIQI_VAR_DIR": str(matcher.settings.var_dir),
        "HUIQI_MODELS_DIR": str(matcher.settings.models_dir),
        "HUIQI_ENV": "test",
        "HUIQI_SECRET_KEY": matcher.settings.secret_key,
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", _LISTING, "1"],  # one firm per unit: 48 units
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and _units(database) < 4:
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    killed_at = _units(database)
    assert 4 <= killed_at < FIRMS
    assert _unlisted(database) == unlisted
    with database.session() as db:
        run = db.scalars(select(ListRun)).one()
        assert run.status == "running" and run.width == 1 and run.units_done == killed_at
    runs.LIST_BATCH = 1  # the same layout (the run keeps its own width; the autouse fixture restores it)
    runs.list_policies(database, matcher, unlisted)
    assert _rows(database) == expected_rows
    assert _states(database) == expected_states
    with database.session() as db:
        assert db.scalar(select(func.count()).select_from(ListRunUnit)) == FIRMS
        assert db.scalar(select(ListRun.status)) == "done"


def test_a_stopped_policy_patch_is_pending_until_resumed_and_ends_as_an_uninterrupted_one(
    database: Database, matcher: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`list_policy` (a published or edited policy: its list and every firm's stored best patched) stopped
    part-way: the policy is not listed (staff see the list as pending), its new version is not recorded
    (the catch-up resumes it), and the resumed patch ends with the rows of an uninterrupted one."""
    runs.list_policies(database, matcher, _unlisted(database))
    with database.writer_session() as db:
        pid = db.scalars(
            select(MatchResult.policy_id).group_by(MatchResult.policy_id).order_by(func.count().desc())
        ).first()
        policy = db.get(Policy, pid)
        assert pid is not None and policy is not None
        policy.version += 1  # an edit, as the catalog records it (a new version, a new catalog revision)
        catalog_service.bump_revision(db)
    before_rows, before_firms = _rows(database), stored_firm_rows(database)
    runs.list_policy(database, matcher, pid)
    expected_rows, expected_firms, expected_state = _rows(database), stored_firm_rows(database), _states(database)[pid]
    assert expected_state[0] == before_rows[next(k for k in before_rows if k[1] == pid)][0] + 1
    # Back to before the patch, then patch again with a stop after two units.
    with database.writer_session() as db:
        db.execute(delete(MatchResult).where(MatchResult.policy_id == pid))
        db.execute(delete(ListRun))
        state = db.get(PolicyMatchState, pid)
        assert state is not None
        state.policy_version -= 1
    with database.writer_session() as db:
        for (eid, p), row in before_rows.items():
            if p == pid:
                db.add(MatchResult(enterprise_id=eid, policy_id=p, **dict(zip(_COLUMNS, row, strict=True))))
    _restore_firms(database, before_firms)
    runs.list_policy(database, matcher, pid, should_stop=lambda: _units(database) >= 2)
    with database.session() as db:
        policy = db.get(Policy, pid)
        assert policy is not None and not lists.state(db, policy).listed
        assert pid in runs.changed_policy_ids(db)
        with pytest.raises(Conflict):
            lists.eligible_enterprises(db=db, policy_id=pid, statuses=["eligible"], offset=0, limit=10)
    passes = _counting(monkeypatch, runs, "_patch_chunk")
    runs.list_policy(database, matcher, pid)
    assert passes["n"] == FIRMS // WIDTH - 2
    assert _rows(database) == expected_rows
    assert stored_firm_rows(database) == expected_firms
    assert _states(database)[pid] == expected_state
    with database.session() as db:
        assert pid not in runs.changed_policy_ids(db)


def _restore_firms(database: Database, firms: dict[int, tuple[Any, ...]]) -> None:
    """Put back the firms' stored matches as they were (items, near misses, wording and counts)."""
    with database.writer_session() as db:
        for row in db.scalars(select(FirmMatch)):
            items, near, words, eligible, likely = firms[row.enterprise_id]
            row.payload = store.encode(
                np.frombuffer(items, dtype=store.ITEM), np.frombuffer(near, dtype=store.NEAR), words or None
            )
            row.eligible, row.likely = eligible, likely


def test_a_firm_changed_while_a_listing_waits_is_listed_as_it_is_now(database, matcher) -> None:  # type: ignore[no-untyped-def]
    """A firm re-matched between a stop and the resume (the catch-up re-matches changed firms first) keeps
    the lists being written current: its rows in written units are replaced, and the resumed listing
    ends with the rows a listing from scratch writes."""
    unlisted = _unlisted(database)
    runs.list_policies(database, matcher, unlisted, should_stop=lambda: _units(database) >= 3)
    with database.session() as db:
        ids = list(db.scalars(select(Enterprise.id).order_by(Enterprise.id)))
    changed = [ids[1], ids[WIDTH + 2], ids[-1]]  # two in written units, one in a unit not written yet
    with database.writer_session() as db:
        for eid in changed:
            firm = db.get(Enterprise, eid)
            assert firm is not None
            firm.employees = (firm.employees or 0) + 300
            firm.annual_revenue = (firm.annual_revenue or 0) * 4 + 800
            firm.profile_updated_at = utcnow()
    report = runs.rematch_firms(database, matcher, changed)
    assert report.details["list_rows"] > 0  # the policies being listed are kept by the firms' own pass
    runs.list_policies(database, matcher, unlisted)
    resumed = _rows(database)
    with database.writer_session() as db:
        db.execute(delete(MatchResult))
        db.execute(delete(ListRun))
        db.execute(update(PolicyMatchState).values(listed=False))
    runs.list_policies(database, matcher, unlisted)
    assert len(resumed) > 100 and resumed == _rows(database)


def test_list_rows_copied_on_postgresql_store_the_text_a_core_insert_stores(matcher) -> None:  # type: ignore[no-untyped-def]
    """COPY writes what a Core insert writes, to the byte: floats, NULL, JSON text (escapes, non-ASCII)."""
    from sqlalchemy import insert, text

    with demo_schema("hq_copy", firms=2, needs="the COPY test") as (database, _):
        with database.session() as db:
            firms = list(db.scalars(select(Enterprise.id).order_by(Enterprise.id)))
            policies = list(db.scalars(select(Policy.id).order_by(Policy.id).limit(4)))
        now = utcnow()
        values = [
            (0.1 + 0.2, 1 / 3, ["高新技术企业", 'a\\b\t"c"\n'], [2, 1, 0], None),
            (1.0, 0.0, [], [], -0.0001),
            (0.30000000000000004, 5e-324, ["专精特新"], [2], 0.8123),
            (123456.789, 1e-7, ["x"], [1, 1], 1.0),
        ]
        rows = [
            {
                "enterprise_id": eid,
                "policy_id": pid,
                "policy_version": 3,
                "status": "eligible",
                "score": score,
                "rule_score": rule,
                "tag_score": score / 7,
                "semantic_score": rule * 3,
                "similarity": similarity,
                "shared_tags": tags,
                "condition_states": states,
                "computed_at": now,
            }
            for pid, (score, rule, tags, states, similarity) in zip(policies, values, strict=True)
            for eid in firms
        ]
        stored = []
        for write in (lambda db: db.execute(insert(MatchResult), rows), lambda db: runs._insert_list_rows(db, rows)):
            with database.writer_session() as db:
                db.execute(delete(MatchResult))
                write(db)
            with database.session() as db:
                stored.append(
                    db.execute(
                        text("SELECT CAST(match_result AS TEXT) FROM match_result ORDER BY policy_id, enterprise_id")
                    ).all()
                )
        assert len(stored[0]) == 8 and stored[0] == stored[1]


def test_listed_rows_made_column_wise_are_the_rows_list_entry_makes_and_store_the_same(database, matcher) -> None:  # type: ignore[no-untyped-def]
    """`_listed_rows` (columns, `_ListRows`) gives each pair the values `_list_entry` gives it, but for one
    `computed_at`; written by `_insert_list_rows` (COPY from the columns on PostgreSQL, executemany on
    SQLite) the stored rows are those of the dict rows written the same way, to the stored text."""
    from sqlalchemy import text

    with database.session() as db:
        ctx = runs.context(db, matcher, today=dt.date.today())
        chunk = pipeline.load_chunk(db, ctx, ids=np.asarray(db.scalars(select(Enterprise.id)).all(), dtype=np.int64))
    chunk.has_vector[::5] = False  # some firms without a vector: similarity NULL
    pairs = pipeline.list_chunk(chunk, ctx, range(len(ctx.policies)))
    start, stop = 3, len(pairs) - 2  # a part that is not the whole
    states = pairs.states_of(start, stop)
    expected = [
        runs._list_entry(ctx, chunk, j, i, st, r, t, sem, cos, s)
        for i, j, st, r, t, sem, cos, s in zip(
            pairs.firm[start:stop].tolist(),
            pairs.policy[start:stop].tolist(),
            pairs.status[start:stop].tolist(),
            *(v[start:stop].tolist() for v in (pairs.rules, pairs.tags, pairs.semantic, pairs.cosine)),
            states,
            strict=True,
        )
    ]
    made = runs._listed_rows(ctx, chunk, pairs, start, stop)
    assert len(made) == len(expected) > 100
    # What the pairs cover: both verdicts, NULL and real similarities, several shared tags, conditions or none.
    assert {r["status"] for r in expected} == {"eligible", "likely"}
    assert any(r["similarity"] is None for r in expected) and any(r["similarity"] is not None for r in expected)
    assert any(len(r["shared_tags"]) > 1 for r in expected) and any(not r["shared_tags"] for r in expected)
    assert len({tuple(r["condition_states"]) for r in expected}) > 5

    def values(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [tuple((type(r[c]), r[c]) for c in runs._LIST_COLUMNS if c != "computed_at") for r in rows]

    dicts = made.dicts()
    assert values(dicts) == values(expected)
    assert {r["computed_at"] for r in dicts} == {made.computed_at}

    cast = "CAST({} AS TEXT)" if database.engine.dialect.name == "postgresql" else "{}"
    columns = ", ".join(cast.format(c) for c in runs._LIST_COLUMNS if c != "computed_at")
    stored = []
    for rows in (expected, made):
        with database.writer_session() as db:
            db.execute(delete(MatchResult))
            runs._insert_list_rows(db, rows)
        with database.session() as db:
            stored.append(
                db.execute(text(f"SELECT {columns} FROM match_result ORDER BY policy_id, enterprise_id")).all()
            )
    assert len(stored[0]) == len(expected) and stored[0] == stored[1]


def test_finished_listing_runs_are_kept_only_as_the_latest(database, matcher, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(runs, "KEPT_LIST_RUNS", 2)
    pid = _unlisted(database)[0]
    for _ in range(4):
        runs.list_policies(database, matcher, [pid])
    with database.session() as db:
        kept = list(db.execute(select(ListRun.id, ListRun.status).order_by(ListRun.id)).tuples())
        assert [status for _, status in kept] == ["done", "done"] and kept[1][0] - kept[0][0] == 1
        assert set(db.scalars(select(ListRunUnit.run_id))) == {run_id for run_id, _ in kept}


def test_a_policy_edited_while_its_listing_waits_is_patched_on_its_own_and_dropped_from_the_listing(
    database: Database, matcher: Any
) -> None:
    """The catch-up after a stop: an edited policy of the waiting listing is judged again on its own
    (`list_policy`), the listing resumes without it, and every list ends as a listing from scratch writes it."""
    unlisted = _unlisted(database)
    runs.list_policies(database, matcher, unlisted, should_stop=lambda: _units(database) >= 2)
    with database.writer_session() as db:
        pid = db.scalars(
            select(MatchResult.policy_id).group_by(MatchResult.policy_id).order_by(func.count().desc())
        ).first()
        policy = db.get(Policy, pid)
        assert pid is not None and policy is not None
        policy.version += 1
        catalog_service.bump_revision(db)
        version = policy.version
    with database.session() as db:
        changed = runs.changed_policy_ids(db)  # it, and the published policies not open (never judged)
    assert pid in changed
    report = runs.rematch_changed(database, matcher)
    assert not report.stopped and report.policies == len(changed) and report.firms == 0
    with database.session() as db:
        assert runs.changed_policy_ids(db) == [] and runs.unlisted_policy_ids(db) == []
        listing = db.scalars(select(ListRun).where(ListRun.kind == "list")).one()
        assert listing.status == "done" and listing.units_done == FIRMS // WIDTH
    rows, states = _rows(database), _states(database)
    assert states[pid][0] == version and all(row[0] == version for (_, p), row in rows.items() if p == pid)
    with database.writer_session() as db:
        db.execute(delete(MatchResult))
        db.execute(delete(ListRun))
        db.execute(update(PolicyMatchState).values(listed=False))
    runs.list_policies(database, matcher, unlisted)
    assert len(rows) > 100 and rows == _rows(database) and states == _states(database)


def _latest_run_id(database: Database) -> int:
    with database.session() as db:
        return db.scalar(select(func.max(ListRun.id))) or 0


def test_a_full_run_lists_the_kept_lists_again_from_the_firms_it_read(
    database: Database, matcher: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The nightly full run re-reads every firm (here half the firms changed at once, as by an import, so
    the catch-up re-scores them with a full run, not the firms' own pass that keeps the lists): the kept
    lists, made earlier against the firms of then, must not read as current after it. The run marks them
    pending and lists them again; stopped during that listing they stay pending (refused, not read half
    written), and the catch-up resumes it even above the scale where it lists every policy itself. They
    end as a listing from scratch writes them."""
    unlisted = _unlisted(database)
    runs.list_policies(database, matcher, unlisted)
    before = _rows(database)
    with database.writer_session() as db:
        for firm in list(db.scalars(select(Enterprise).order_by(Enterprise.id)))[::2]:
            firm.employees = (firm.employees or 0) + 300
            firm.annual_revenue = (firm.annual_revenue or 0) * 4 + 800
            firm.profile_updated_at = utcnow()
    last = _latest_run_id(database)

    def after_a_relisted_unit() -> bool:
        with database.session() as db:
            return bool(db.scalar(select(func.count()).select_from(ListRunUnit).where(ListRunUnit.run_id > last)))

    report = runs.rematch_all(database, matcher, should_stop=after_a_relisted_unit)
    assert report.stopped and report.details["relisted"] == len(unlisted)
    assert _unlisted(database) == unlisted  # every kept list reads as pending
    with database.session() as db:
        pid = next(p for _, p in before)
        policy = db.get(Policy, pid)
        assert policy is not None and not lists.state(db, policy).listed
        with pytest.raises(lists.ListPending):
            lists.eligible_enterprises(db=db, policy_id=pid, statuses=["eligible", "likely"], offset=0, limit=10)
        with pytest.raises(lists.ListPending):
            batch.matched_firms(db=db, policy_id=pid, statuses=["eligible", "likely"])
        status = runs.status(db)
        assert not status["up_to_date"] and status["listing"]["kind"] == "list"
        assert status["listing"]["units_done"] == 1 and status["listing"]["policies"] == len(unlisted)
    monkeypatch.setattr(matcher.settings, "policy_lists_max_firms", 1)  # lists made on demand only
    report = runs.rematch_changed(database, matcher)
    assert not report.stopped and report.firms == 0
    relisted = _rows(database)
    with database.session() as db:
        assert runs.unlisted_policy_ids(db) == [] and runs.status(db)["listing"] is None
    assert relisted != before  # the firms' changes moved the lists
    with database.writer_session() as db:
        db.execute(delete(MatchResult))
        db.execute(delete(ListRun))
        db.execute(update(PolicyMatchState).values(listed=False))
    runs.list_policies(database, matcher, unlisted)
    assert len(relisted) > 100 and relisted == _rows(database)


def test_a_full_run_lists_again_only_what_was_kept_and_leaves_a_policy_edited_meanwhile_to_its_patch(
    database: Database, matcher: Any
) -> None:
    """Lists never made stay unmade (a full run does not list every policy above the city's scale). A policy
    edited before the run is judged by it at its new version: its list is made again. One edited while the
    run scores firms is judged at its old version: its list is pending and left to its patch (the catch-up's)."""
    runs.list_policies(database, matcher, _unlisted(database))
    with database.session() as db:
        open_ = sorted(set(db.scalars(select(MatchResult.policy_id))))
    kept, before, during = open_[:3], open_[3], open_[4]
    with database.writer_session() as db:
        db.execute(delete(MatchResult).where(MatchResult.policy_id.not_in([*kept, before, during])))
        db.execute(update(PolicyMatchState).values(listed=PolicyMatchState.policy_id.in_([*kept, before, during])))

    def edit(pid: int) -> None:
        with database.writer_session() as db:
            policy = db.get(Policy, pid)
            assert policy is not None
            policy.version += 1
            catalog_service.bump_revision(db)

    edit(before)
    edited: list[int] = []

    def edit_once_scoring() -> bool:
        with database.session() as db:
            scoring = db.scalar(select(func.count()).select_from(MatchRun).where(MatchRun.status == "running"))
        if scoring and not edited:
            edit(during)
            edited.append(during)
        return False

    report = runs.rematch_all(database, matcher, should_stop=edit_once_scoring)
    assert edited and not report.stopped and report.details["relisted"] == len(kept) + 1
    with database.session() as db:
        states = {s.policy_id: (s.listed, s.policy_version) for s in db.scalars(select(PolicyMatchState))}
        assert {pid for pid, (listed, _) in states.items() if listed} == {*kept, before}
        assert not states[during][0] and during in runs.changed_policy_ids(db)
        assert before not in runs.changed_policy_ids(db)
        policy = db.get(Policy, before)
        assert policy is not None and states[before][1] == policy.version
    runs.rematch_changed(database, matcher)
    with database.session() as db:
        assert runs.changed_policy_ids(db) == []
        policy = db.get(Policy, during)
        assert policy is not None and lists.state(db, policy).listed and lists.state(db, policy).current


def test_readers_never_read_a_list_being_written(database: Database, matcher: Any, test_settings: Any) -> None:
    """Every reader of the kept lists reads complete lists only: while a listing is under way its policies'
    rows already written are not read as a list (reminders wait, counts say pending, not 0); once it is
    done they read the whole list."""
    import datetime as dt

    from applications import stats
    from push import reminders

    unlisted = _unlisted(database)
    runs.list_policies(database, matcher, unlisted, should_stop=lambda: _units(database) >= 2)
    written = _rows(database)
    pids = sorted({p for _, p in written})
    today = dt.date.today()
    with database.writer_session() as db:  # a deadline in 3 days for the policy with most rows
        pid = max(pids, key=lambda p: sum(1 for _, q in written if q == p))
        policy = db.get(Policy, pid)
        assert policy is not None
        policy.apply_end_on = today + dt.timedelta(days=3)
    item = reminders.ReminderItem(pid, 7, today + dt.timedelta(days=3))
    statuses = ["eligible", "likely"]
    with database.session() as db:
        assert db.scalar(select(func.count()).select_from(MatchResult).where(MatchResult.status == "likely"))
        for p in pids:
            with pytest.raises(lists.ListPending):
                batch.matched_firms(db=db, policy_id=p, statuses=statuses)
            assert db.scalars(batch.matched_firms_query(policy_id=p, statuses=statuses)).all() == []
        assert batch.match_counts(db=db, policy_ids=pids, statuses=statuses) == dict.fromkeys(pids)
        assert batch.firms_with_open_likely(db=db, today=today) == set()
        firm = next(e for (e, _), row in written.items() if row[1] == "likely")
        assert batch.open_likely_policy_ids(db=db, enterprise_id=firm, today=today) == []
        figures = stats.policy_figures(db=db)
        assert figures and all(f.list_pending and f.eligible == 0 for f in figures if f.policy_id in pids)
        with pytest.raises(lists.ListPending):
            stats.never_applied_ids(db=db, policy_id=pid)
    with database.writer_session() as db:
        assert reminders.send_reminders(db=db, item=item, now=utcnow(), settings=test_settings) == 0
    runs.list_policies(database, matcher, unlisted)
    whole = _rows(database)
    with database.session() as db:
        for p in pids:
            expected = {e: row[1] for (e, q), row in whole.items() if q == p}
            assert batch.matched_firms(db=db, policy_id=p, statuses=statuses) == expected
            assert sorted(db.scalars(batch.matched_firms_query(policy_id=p, statuses=statuses))) == sorted(expected)
        counts = batch.match_counts(db=db, policy_ids=pids, statuses=statuses)
        assert counts == {p: sum(1 for _, q in whole if q == p) for p in pids}
        assert batch.firms_with_open_likely(db=db, today=today)
        figures = stats.policy_figures(db=db)
        assert not any(f.list_pending for f in figures)
    with database.writer_session() as db:
        assert reminders.send_reminders(db=db, item=item, now=utcnow(), settings=test_settings) > 0


def test_a_policy_published_later_moves_other_lists_scores_not_their_firms_and_the_list_says_so(
    database: Database, matcher: Any
) -> None:
    """A list row's tag score weighs shared tags by their IDF over the published catalog: publishing another
    policy moves other lists' scores (and so their order) a little, never who is in them. The list reports
    the change since it was made (the eligible page shows it) until it is made again."""
    import datetime as dt

    from catalog.schemas import PolicyIn

    unlisted = _unlisted(database)
    runs.list_policies(database, matcher, unlisted)
    before = _rows(database)
    item = next(i for i in demo.demo_policies(dt.date.today()) if len(i.get("tags") or []) >= 3)
    item = {k: v for k, v in item.items() if k not in ("status", "doc_number")}
    with database.session() as db:
        policy = catalog_service.create_policy(
            db=db, policy_in=PolicyIn(**{**item, "title": item["title"] + "（新）"}), actor=None
        )
        catalog_service.publish_policy(db=db, policy_id=policy.id, actor=None, announce=False)
        db.commit()
    pid = next(p for _, p in before)
    with database.session() as db:
        listed = db.get(Policy, pid)
        assert listed is not None
        assert lists.catalog_changes_since(db, listed, lists.state(db, listed).matched_at) == 1
    runs.list_policies(database, matcher, unlisted)
    after = _rows(database)
    assert set(after) == set(before)  # the same firms in every list, with the same verdicts
    assert all(after[k][1] == before[k][1] for k in before)
    score = _COLUMNS.index("score")
    moved = [abs(after[k][score] - before[k][score]) for k in before if after[k][score] != before[k][score]]
    assert moved and max(moved) < 0.01
    with database.session() as db:
        assert lists.catalog_changes_since(db, listed, lists.state(db, listed).matched_at) == 0
