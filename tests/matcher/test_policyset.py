"""The open catalog as the matcher reads it (`policyset.load`), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

from catalog.models import Policy
from matcher import policyset
from tests import factories


def test_load_reads_each_open_policy_with_its_department_categories_tags_and_regions(db) -> None:  # type: ignore[no-untyped-def]
    today = dt.date.today()
    dept = factories.make_department(db, short_name="科技局")
    cat_a = factories.make_category(db)
    cat_b = factories.make_category(db)  # a larger code than cat_a's
    assert cat_a.code < cat_b.code
    tags = [factories.make_tag(db, name=name) for name in ("知识产权", "研发", "高企")]
    shown = factories.make_policy(
        db,
        publish=True,
        department=dept,
        categories=[cat_b.code, cat_a.code],
        region_codes=["442000", "440100"],
        max_amount=50,
        amount_text="最高50万元",
        tags=[t.name for t in reversed(tags)],
    )
    standing = factories.make_policy(db, publish=True, policy_type="exempt", apply_end_on=today - dt.timedelta(days=3))
    closed = factories.make_policy(
        db, publish=True, apply_start_on=today - dt.timedelta(days=60), apply_end_on=today - dt.timedelta(days=1)
    )
    draft = factories.make_policy(db)
    db.flush()

    ps = policyset.load(db, today=today)
    ids = [p.id for p in ps.policies]
    assert shown.id in ids and standing.id in ids  # a policy that is not applied for stays open after an end date
    assert closed.id not in ids and draft.id not in ids
    assert ids == sorted(ids)

    info = next(p for p in ps.policies if p.id == shown.id)
    policy = db.get(Policy, shown.id)
    db.expire(policy, ["tags"])  # read again from the database, in the relationship's order
    assert info.issuing_department == policyset.DepartmentInfo(dept.id, dept.code, dept.name, "科技局")
    assert info.categories == (cat_a.code, cat_b.code)  # by code, as the relationship orders them
    assert info.curated_tags == tuple(t.name for t in policy.tags)  # by name, as the relationship orders them
    assert set(info.curated_tags) == {"知识产权", "研发", "高企"}
    assert info.region_codes == ("440100", "442000")
    assert (info.title, info.summary, info.version, info.rules) == (
        policy.title,
        policy.summary,
        policy.version,
        policy.rules,
    )
    assert (info.policy_type, info.level) == ("application", "municipal")
    assert (info.apply_start_on, info.apply_end_on) == (policy.apply_start_on, policy.apply_end_on)
    assert (info.max_amount, info.amount_text, info.apply_url) == (50, "最高50万元", policy.apply_url)
    assert set(info.curated_tags) <= ps.tags[ids.index(shown.id)]
