"""Schemathesis over the live OpenAPI schema: every operation, as each role, answers without a 5xx and
with a response that conforms to the schema.

The ASGI app (in process, its own migrated SQLite file) holds the demo taxonomy, demo 中山 policies,
a few demo firms, the demo users and the desk's FAQ and cases, with the session's real matcher.
For each operation schemathesis draws up to HUIQI_FUZZ_EXAMPLES (default 12, at most 20) requests
from the schema, and each request is sent as admin, curator, desk officer and firm; the whole run
stops drawing new examples after HUIQI_FUZZ_BUDGET seconds (default 200), every operation still
getting at least a few. Failures are collected, not stopped at, so one run lists every operation
that misbehaves; the counts (operations, requests) are printed.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("schemathesis")

import schemathesis  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import checks as st_checks  # noqa: E402

from api.app import create_app  # noqa: E402
from applications import demo as applications_demo  # noqa: E402
from auth import demo as auth_demo  # noqa: E402
from auth.models import User  # noqa: E402
from catalog import demo as catalog_demo  # noqa: E402
from catalog import service as catalog_service  # noqa: E402
from catalog.schemas import PolicyIn  # noqa: E402
from core import migrate, security  # noqa: E402
from core.config import Settings  # noqa: E402
from core.db import Database  # noqa: E402
from desk import demo as desk_demo  # noqa: E402
from profiles import demo as profiles_demo  # noqa: E402

pytestmark = pytest.mark.slow

ROLES = {"admin": "admin", "curator": "curator", "desk": "desk_kjj", "firm": "firm"}
EXAMPLES = min(int(os.environ.get("HUIQI_FUZZ_EXAMPLES", "12")), 20)
MIN_EXAMPLES = 3
BUDGET_S = float(os.environ.get("HUIQI_FUZZ_BUDGET", "200"))
ONLY = os.environ.get("HUIQI_FUZZ_ONLY", "")  # a substring of "METHOD /path" to fuzz fewer (debugging)
CHECKS = [
    st_checks.not_a_server_error,
    st_checks.response_schema_conformance,
    st_checks.content_type_conformance,
]


@pytest.fixture(scope="module")
def fuzz_app(test_settings: Settings, matcher: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    path: Path = tmp_path_factory.mktemp("fuzz") / "huiqi.db"
    database = Database(f"sqlite:///{path}")
    with database.engine.connect() as conn:
        migrate.upgrade(connection=conn)
    today = dt.date.today()
    with database.sessionmaker() as db:
        catalog_demo.load_taxonomy(db=db)
        items = [i for i in catalog_demo.demo_policies(today) if i["region_codes"] == ["442000"]][:8]
        for item in items:
            status = item.pop("status", "published")
            policy = catalog_service.create_policy(db=db, policy_in=PolicyIn(**item), actor=None)
            if status == "published":
                catalog_service.publish_policy(
                    db=db, policy_id=policy.id, actor=None, today=min(today, policy.valid_from_on or today)
                )
        profiles_demo.load_demo_enterprises(db=db, count=6)
        db.flush()
        auth_demo.create_demo_users(
            db=db, department_ids=catalog_demo.department_ids(db=db), firm_id=profiles_demo.demo_firm_id(db=db)
        )
        desk_demo.load_demo_desk(db=db, settings=test_settings)
        applications_demo.load_demo_applications(db=db)  # applications and rosters for ids to land on
        db.commit()
        tokens = {}
        for role, username in ROLES.items():
            user = db.query(User).filter(User.username == username).one()
            tokens[role] = security.create_access_token(settings=test_settings, subject=str(user.id))
    app = create_app(test_settings, database=database, matcher=matcher)
    app.state.fuzz_tokens = tokens
    yield app
    database.dispose()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return " | ".join(line.strip() for line in text if line.strip())[:400]


@dataclass
class Tally:
    """What the run did and what failed, by operation."""

    headers: dict[str, dict[str, str]]
    failures: dict[str, list[str]] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)
    requests: int = 0


def _fuzz(operation: Any, tally: Tally, seconds: float) -> None:
    """Draw up to EXAMPLES cases of one operation (fewer once `seconds` ran out) and send each as every role."""
    label = f"{operation.method.upper()} {operation.path}"
    started = time.monotonic()
    drawn = 0

    @settings(
        max_examples=EXAMPLES, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        nonlocal drawn
        if drawn >= MIN_EXAMPLES and time.monotonic() - started > seconds:
            return
        drawn += 1
        for role, role_headers in tally.headers.items():
            tally.requests += 1
            try:
                response = case.call(headers=role_headers, timeout=120)
            except Exception as exc:  # the app raised: a 500 the client saw as an exception
                tally.failures.setdefault(label, []).append(f"{role}: raised {type(exc).__name__}: {_short(exc)}")
                continue
            tally.statuses[response.status_code] += 1
            try:
                case.validate_response(response, checks=CHECKS, headers=role_headers)
            except Exception as exc:
                tally.failures.setdefault(label, []).append(
                    f"{role}: {response.status_code} {_short(exc)} :: {case.path_parameters} "
                    f"{case.query} {str(case.body)[:120]} -> {response.text[:200]}"
                )

    run()


def test_every_operation_as_every_role_answers_without_5xx_and_to_its_schema(fuzz_app: Any) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    if ONLY:
        operations = [op for op in operations if ONLY in f"{op.method.upper()} {op.path}"]
    assert len(operations) >= (1 if ONLY else 100)
    tally = Tally({role: {"Authorization": f"Bearer {token}"} for role, token in fuzz_app.state.fuzz_tokens.items()})
    started = time.monotonic()
    for index, operation in enumerate(operations):
        left = max(BUDGET_S - (time.monotonic() - started), 0)
        _fuzz(operation, tally, left / (len(operations) - index))
    elapsed = time.monotonic() - started
    print(
        f"\nschemathesis: {len(operations)} operations, {tally.requests} requests as {len(tally.headers)} roles "
        f"in {elapsed:.0f} s; statuses {dict(sorted(tally.statuses.items()))}"
    )
    report = "\n".join(
        f"{label}\n    " + "\n    ".join(sorted(set(lines))[:3]) for label, lines in tally.failures.items()
    )
    assert not tally.failures, f"{len(tally.failures)} operations failed:\n{report}"
