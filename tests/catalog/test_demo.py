"""The demo catalog loads completely through the services and looks like a real platform's."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from sqlalchemy import func, select

from catalog import demo
from catalog.models import Category, Policy, PolicyStatus


def test_demo_catalog_loads_with_realistic_spread(db) -> None:  # type: ignore[no-untyped-def]
    today = dt.date(2026, 11, 23)
    counts = demo.load_demo_catalog(db=db, actor=None, today=today)
    assert counts["policies"] >= 120
    assert counts["categories"] >= 9 + 40 and counts["departments"] >= 30
    policies = list(db.scalars(select(Policy)))
    published = [p for p in policies if p.status == PolicyStatus.published]
    assert len(published) >= 100
    # 一政策一摘要一解读人 holds for everything that was ever published.
    assert all(p.summary and p.interpreter_name and p.categories for p in policies if p.version)
    levels = Counter(p.level for p in policies)
    assert set(levels) == {"national", "provincial", "municipal", "county"}
    tops = {c.parent.code for p in policies for c in p.categories if c.parent is not None}
    assert len(tops) == db.scalar(select(func.count()).select_from(Category).where(Category.parent_id.is_(None)))
    regions = {code for p in policies for code in p.region_codes}
    assert len(regions) >= 6
    open_soon = [p for p in published if p.apply_end_on and 0 <= (p.apply_end_on - today).days <= 14]
    closed = [p for p in published if p.apply_end_on and p.apply_end_on < today]
    assert len(open_soon) >= 10 and len(closed) >= 5
    assert sum(p.status == PolicyStatus.expired for p in policies) >= 5
    assert sum(1 for p in published if p.rules) >= 90


def test_demo_policies_have_unique_titles_per_department_and_doc_numbers() -> None:
    items = demo.demo_policies(dt.date(2026, 11, 23))
    keys = [(p["issuing_department"], p["title"]) for p in items]
    assert len(keys) == len(set(keys))
    docs = [p["doc_number"] for p in items if p.get("doc_number")]
    assert len(docs) == len(set(docs))


def test_demo_attachments_are_real_forms_stored_like_any_upload(db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from core.attachments import Attachment, open_blob
    from core.config import Settings
    from core.files import XLSX, sniff_type

    settings = Settings(env="test", var_dir=tmp_path)
    demo.load_demo_catalog(db=db, actor=None, today=dt.date(2026, 11, 23))
    assert demo.load_demo_attachments(db=db, settings=settings, limit=3) == 3
    rows = list(db.scalars(select(Attachment).order_by(Attachment.id)))
    assert len(rows) == 3 and {r.kind for r in rows} == {"form"}
    for row in rows:
        policy = db.get(Policy, row.owner_id)
        assert policy.status == PolicyStatus.published and row.display_name == f"{policy.title}申请表.xlsx"
        assert sniff_type(b"".join(open_blob(settings=settings, attachment=row))) is XLSX
