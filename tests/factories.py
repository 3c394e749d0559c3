"""Test data builders that go through the services, so tests exercise real validation."""

from __future__ import annotations

import datetime as dt
import itertools
import random
from typing import Any

from sqlalchemy.orm import Session

from auth import service as auth_service
from auth.models import Role, User
from auth.schemas import UserIn
from catalog import service as catalog_service
from catalog.models import Category, Department, Policy, Tag
from catalog.schemas import CategoryIn, DepartmentIn, PolicyIn, TagIn
from core.db import Database
from profiles import service as profiles_service
from profiles import uscc
from profiles.models import Enterprise
from profiles.schemas import EnterpriseIn

_seq = itertools.count(1)


def n() -> int:
    """Return a number unique within the test session."""
    return next(_seq)


def make_department(db: Session, **kw: Any) -> Department:
    i = n()
    data = {"code": f"dept-{i}", "name": f"测试部门{i}", "short_name": f"部门{i}", "region_code": "442000"} | kw
    return catalog_service.create_department(db=db, department_in=DepartmentIn(**data))


def make_category(db: Session, parent: Category | None = None, **kw: Any) -> Category:
    i = n()
    if parent is None:
        parent = catalog_service.create_category(db=db, category_in=CategoryIn(code=f"9{i:03d}", name=f"测试大类{i}"))
    data = {"code": f"{parent.code}{i:02d}", "name": f"测试小类{i}", "parent_code": parent.code} | kw
    return catalog_service.create_category(db=db, category_in=CategoryIn(**data))


def make_tag(db: Session, **kw: Any) -> Tag:
    i = n()
    data = {"name": f"测试标签{i}", "kind": "benefit", "synonyms": []} | kw
    return catalog_service.create_tag(db=db, tag_in=TagIn(**data))


def make_policy(db: Session, *, publish: bool = False, announce: bool = True, **kw: Any) -> Policy:
    """Create a complete policy (publishable), optionally publishing it (announced to subscribers unless told not to)."""
    i = n()
    dept = kw.pop("department", None) or make_department(db)
    cat = kw.pop("category", None) or make_category(db)
    today = dt.date.today()
    data = {
        "title": f"测试政策第{i}号扶持资金",
        "doc_number": f"测〔2026〕{i}号",
        "issuing_department": dept.code,
        "handling_department": dept.code,
        "level": "municipal",
        "policy_type": "application",
        "region_codes": ["442000"],
        "categories": [cat.code],
        "summary": "对符合条件的企业给予一次性资金扶持。",
        "interpreter_name": "张敏",
        "interpreter_contact": "0760-88880000",
        "apply_start_on": today - dt.timedelta(days=10),
        "apply_end_on": today + dt.timedelta(days=30),
        "valid_to_on": today + dt.timedelta(days=365),
        "max_amount": 30,
        "rules": {"all": [{"field": "region_code", "op": "within_region", "value": ["442000"]}]},
    } | kw
    policy = catalog_service.create_policy(db=db, policy_in=PolicyIn(**data), actor=None)
    if publish:
        catalog_service.publish_policy(db=db, policy_id=policy.id, actor=None, announce=announce)
    return policy


def credit_code(seed: int | None = None, region: str = "442000") -> str:
    """Return a valid unified social credit code."""
    return uscc.make_credit_code(random.Random(seed if seed is not None else n() * 7919), region)


def make_enterprise(db: Session, **kw: Any) -> Enterprise:
    i = n()
    data = {
        "credit_code": credit_code(i * 104729),
        "name": f"中山市测试科技有限公司{i}",
        "region_code": "442000",
        "industry_code": "C3911",
        "established_on": dt.date(2018, 5, 1),
        "employees": 50,
        "annual_revenue": 3000,
        "total_assets": 2000,
        "rd_expense": 150,
        "contact_name": "李雷",
        "contact_phone": "13800138000",
    } | kw
    return profiles_service.create_enterprise(db=db, enterprise_in=EnterpriseIn(**data))


def make_user(db: Session, *, role: Role, **kw: Any) -> User:
    i = n()
    if role == Role.desk and "department_id" not in kw:
        kw["department_id"] = make_department(db).id
    if role == Role.enterprise and "enterprise_id" not in kw:
        kw["enterprise_id"] = make_enterprise(db).id
    data = {"username": f"user{i}", "password": "Factory-pass-2026", "display_name": f"用户{i}", "role": role} | kw
    return auth_service.create_user(db=db, user_in=UserIn(**data))


def match(db: Session, matcher: Any, *, today: dt.date | None = None) -> Any:
    """Run the worker's catch-up inside the test's session, as `huiqi worker` would after a change."""
    from core.db import InSession
    from matcher import runs

    matcher.policy_sets.clear()
    return runs.rematch_changed(InSession(db), matcher, today=today)


def verify_phone(db: Session, enterprise_id: int, phone: str = "13800138000") -> None:
    """Record a firm's number as verified (as a code sent to it would), so SMS may be switched on and sent."""
    from auth import phone as auth_phone

    auth_phone.mark_verified(db=db, enterprise_id=enterprise_id, phone=phone)


def stored_firm_rows(database: Database) -> dict[int, tuple[Any, ...]]:
    """Every firm's stored matches (`firm_match`) as comparable values: the decoded arrays' bytes, the
    wording, the eligible and likely counts."""
    from sqlalchemy import select

    from matcher import store
    from matcher.models import FirmMatch

    with database.session() as db:
        return {
            r.enterprise_id: (
                *(part.tobytes() for part in store.decode(r.payload)),
                store.decode_words(r.payload),
                r.eligible,
                r.likely,
            )
            for r in db.scalars(select(FirmMatch))
        }
