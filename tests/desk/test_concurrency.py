"""No case lost, none duplicated: 200 concurrent submissions on PostgreSQL, some retried with the same key.

Two ways in: threads calling :func:`desk.intake.submit_case` with sessions of their own, and HTTP
clients against the app served by uvicorn, retrying requests with the same ``Idempotency-Key``. Both
commit for real (that is the point), so each test removes what it made afterwards.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import delete, func, select

from api.app import create_app
from auth.models import Role, User
from auth.service import Principal, principal_for_user
from core import security
from core.config import Settings
from core.db import Database
from desk import intake
from desk.models import Case, CaseEvent
from desk.schemas import CaseIn
from profiles.models import Enterprise
from tests import factories

SUBMISSIONS = 200
DISTINCT_KEYS = 120
WORKERS = 16


@dataclass
class Firm:
    enterprise_id: int
    user_id: int
    principal: Principal


@pytest.fixture
def firm(database: Database) -> Iterator[Firm]:
    """A committed firm and its user; their cases, user and enterprise are deleted afterwards."""
    if database.engine.dialect.name != "postgresql":
        pytest.skip("concurrent submissions need PostgreSQL: SQLite serialises every writer, there is no race to test")
    with database.session() as s:
        user = factories.make_user(s, role=Role.enterprise)
        made = Firm(enterprise_id=user.enterprise_id, user_id=user.id, principal=principal_for_user(user))
    try:
        yield made
    finally:
        with database.session() as s:
            ids = select(Case.id).where(Case.enterprise_id == made.enterprise_id)
            s.execute(delete(CaseEvent).where(CaseEvent.case_id.in_(ids)))
            s.execute(delete(Case).where(Case.enterprise_id == made.enterprise_id))
            s.execute(delete(User).where(User.id == made.user_id))
            s.delete(s.get(Enterprise, made.enterprise_id))


def _plan(seed: int) -> list[str]:
    """200 submissions over 120 keys: every key once, 80 of them again (retries), in random order."""
    rng = random.Random(seed)
    keys = [f"k-{seed}-{i:03d}" for i in range(DISTINCT_KEYS)]
    plan = keys + [rng.choice(keys) for _ in range(SUBMISSIONS - DISTINCT_KEYS)]
    rng.shuffle(plan)
    return plan


def _case_in(key: str) -> CaseIn:
    return CaseIn(
        kind="complaint",
        title=f"并发提交 {key}",
        content=f"并发提交测试，幂等键 {key}：补贴资金迟迟未到账。",
        idempotency_key=key,
    )


def _check(database: Database, firm: Firm, acknowledged: list[tuple[str, int, str]]) -> None:
    by_key: dict[str, set[int]] = defaultdict(set)
    for key, case_id, _number in acknowledged:
        by_key[key].add(case_id)
    assert len(by_key) == DISTINCT_KEYS
    assert all(len(ids) == 1 for ids in by_key.values()), "one key made more than one case"
    with database.session() as s:
        rows = s.execute(
            select(Case.id, Case.number, Case.idempotency_key).where(Case.enterprise_id == firm.enterprise_id)
        ).all()
        events = s.scalar(
            select(func.count())
            .select_from(CaseEvent)
            .join(Case, Case.id == CaseEvent.case_id)
            .where(Case.enterprise_id == firm.enterprise_id, CaseEvent.kind == "submitted")
        )
    assert len(rows) == DISTINCT_KEYS, "a duplicate or a lost case"
    assert {r.id for r in rows} == {i for ids in by_key.values() for i in ids}, "an acknowledged case is missing"
    assert len({r.number for r in rows}) == DISTINCT_KEYS
    assert {r.idempotency_key: r.id for r in rows} == {k: next(iter(v)) for k, v in by_key.items()}
    assert {n for _, _, n in acknowledged} == {r.number for r in rows}
    assert events == DISTINCT_KEYS  # one timeline per case, none from the losing attempts


def test_concurrent_submissions_through_the_service(database: Database, test_settings: Settings, firm: Firm) -> None:
    plan = _plan(seed=1)

    def submit(key: str) -> tuple[str, int, str]:
        with database.session() as s:
            case = intake.submit_case(
                db=s, matcher=None, settings=test_settings, actor=firm.principal, case_in=_case_in(key)
            )
            return key, case.id, case.number

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        acknowledged = list(pool.map(submit, plan))
    assert len(acknowledged) == SUBMISSIONS
    _check(database, firm, acknowledged)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_concurrent_http_submissions_with_client_retries(
    database: Database, test_settings: Settings, firm: Firm, matcher
) -> None:  # type: ignore[no-untyped-def]
    import uvicorn

    app = create_app(test_settings, database=database, matcher=matcher)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="desk-concurrency-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.05)
    token = security.create_access_token(settings=test_settings, subject=str(firm.user_id))
    url = f"http://127.0.0.1:{port}/api/v1/desk/cases"
    statuses: list[int] = []
    lock = threading.Lock()

    def submit(key: str) -> tuple[str, int, str]:
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
        body = _case_in(key).model_dump(mode="json", exclude={"idempotency_key"}, exclude_none=True)
        with httpx.Client(timeout=60) as http:
            for _attempt in range(5):  # a client retries until acknowledged
                try:
                    r = http.post(url, json=body, headers=headers)
                except httpx.TransportError:
                    continue
                with lock:
                    statuses.append(r.status_code)
                if r.status_code in (200, 201):
                    return key, r.json()["id"], r.json()["number"]
        raise AssertionError(f"{key} was never acknowledged")

    try:
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            acknowledged = list(pool.map(submit, _plan(seed=2)))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert sorted(set(statuses)) == [200, 201]
    assert statuses.count(201) == DISTINCT_KEYS and statuses.count(200) == SUBMISSIONS - DISTINCT_KEYS
    _check(database, firm, acknowledged)
