"""Catalog service: publish rules (一政策一摘要一解读人), versions and diffs, search and filters."""

from __future__ import annotations

import datetime as dt

import pytest

from catalog import service
from catalog.models import PolicyStatus
from catalog.schemas import PolicyFilters, PolicyIn, PolicyUpdate, TagIn
from core.errors import Conflict, InvalidState, ValidationFailed
from tests import factories


def _draft(db, **kw):  # type: ignore[no-untyped-def]
    dept = factories.make_department(db)
    data = {
        "title": "中山市测试专项资金政策",
        "issuing_department": dept.code,
        "level": "municipal",
        "policy_type": "informational",
    } | kw
    return service.create_policy(db=db, policy_in=PolicyIn(**data), actor=None)


def test_publishing_without_summary_interpreter_and_category_names_each_missing_field(db) -> None:  # type: ignore[no-untyped-def]
    policy = _draft(db)
    with pytest.raises(ValidationFailed) as exc:
        service.publish_policy(db=db, policy_id=policy.id, actor=None)
    fields = {e.field for e in exc.value.errors}
    assert fields == {"summary", "interpreter_name", "interpreter_contact", "categories"}
    assert exc.value.code == "catalog.policy_incomplete"
    assert "摘要" in exc.value.message and "解读人" in exc.value.message


def test_application_policy_needs_a_deadline_to_publish(db) -> None:  # type: ignore[no-untyped-def]
    policy = factories.make_policy(db, apply_end_on=None, apply_start_on=None)
    with pytest.raises(ValidationFailed) as exc:
        service.publish_policy(db=db, policy_id=policy.id, actor=None)
    assert [e.field for e in exc.value.errors] == ["apply_end_on"]


def test_publish_records_version_one(db) -> None:  # type: ignore[no-untyped-def]
    policy = factories.make_policy(db, publish=True)
    assert policy.status == PolicyStatus.published
    versions = service.list_versions(db=db, policy_id=policy.id)
    assert [v.version for v in versions] == [1]
    assert versions[0].snapshot["title"] == policy.title


def test_editing_a_published_policy_creates_a_new_version_and_diff(db) -> None:  # type: ignore[no-untyped-def]
    policy = factories.make_policy(db, publish=True)
    old_end = policy.apply_end_on
    new_end = old_end + dt.timedelta(days=15)
    service.update_policy(
        db=db,
        policy_id=policy.id,
        policy_in=PolicyUpdate(apply_end_on=new_end, max_amount=50, note="延长申报期"),
        actor=None,
    )
    assert policy.version == 2
    diff = service.diff_versions(db=db, policy_id=policy.id, from_version=1, to_version=2)
    changes = {c.field: (c.before, c.after) for c in diff.changes}
    assert changes == {"apply_end_on": (old_end.isoformat(), new_end.isoformat()), "max_amount": (30, 50)}
    assert {c.label for c in diff.changes} == {"申报截止日期", "最高金额（万元）"}


def test_editing_a_draft_creates_no_version(db) -> None:  # type: ignore[no-untyped-def]
    policy = factories.make_policy(db)
    service.update_policy(db=db, policy_id=policy.id, policy_in=PolicyUpdate(max_amount=80), actor=None)
    assert service.list_versions(db=db, policy_id=policy.id) == []


def test_saving_an_unchanged_published_policy_creates_no_version(db) -> None:  # type: ignore[no-untyped-def]
    policy = factories.make_policy(db, publish=True)
    service.update_policy(db=db, policy_id=policy.id, policy_in=PolicyUpdate(max_amount=policy.max_amount), actor=None)
    assert policy.version == 1


def test_withdrawn_policy_can_be_republished_as_a_new_version(db) -> None:  # type: ignore[no-untyped-def]
    policy = factories.make_policy(db, publish=True)
    service.withdraw_policy(db=db, policy_id=policy.id, actor=None)
    assert policy.status == PolicyStatus.withdrawn
    service.publish_policy(db=db, policy_id=policy.id, actor=None)
    assert policy.version == 2


def test_withdrawing_a_draft_is_refused(db) -> None:  # type: ignore[no-untyped-def]
    policy = factories.make_policy(db)
    with pytest.raises(InvalidState):
        service.withdraw_policy(db=db, policy_id=policy.id, actor=None)


def test_published_policy_cannot_be_deleted(db) -> None:  # type: ignore[no-untyped-def]
    policy = factories.make_policy(db, publish=True)
    with pytest.raises(InvalidState):
        service.delete_policy(db=db, policy_id=policy.id)


def test_invalid_rules_are_refused_with_their_path(db) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationFailed) as exc:
        factories.make_policy(db, rules={"all": [{"field": "rd_ratio", "op": "prefix", "value": ["C"]}]})
    assert any(e.field.startswith("rules.all[0]") for e in exc.value.errors)


def test_unknown_category_and_tag_are_named(db) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationFailed) as exc:
        factories.make_policy(db, categories=["999999"], tags=["不存在的标签"])
    fields = {e.field for e in exc.value.errors}
    assert "categories[0]" in fields or "tags[0]" in fields


def test_tags_are_resolved_through_synonyms(db) -> None:  # type: ignore[no-untyped-def]
    tag = service.create_tag(db=db, tag_in=TagIn(name="高新技术企业", kind="qualification", synonyms=["高企"]))
    policy = factories.make_policy(db, tags=["高企", "高新技術企業"])
    assert [t.id for t in policy.tags] == [tag.id]


def test_duplicate_doc_number_is_a_conflict(db) -> None:  # type: ignore[no-untyped-def]
    factories.make_policy(db, doc_number="中科〔2026〕1号")
    with pytest.raises(Conflict):
        factories.make_policy(db, doc_number="中科〔2026〕1号")


def test_keyword_search_accepts_traditional_characters(db) -> None:  # type: ignore[no-untyped-def]
    policy = factories.make_policy(db, publish=True, title="中山市高新技术企业认定奖励")
    items, total = service.list_policies(db=db, filters=PolicyFilters(q="高新技術企業"), actor=None)
    assert policy.id in [p.id for p in items] and total >= 1


def test_public_listing_hides_drafts(db) -> None:  # type: ignore[no-untyped-def]
    draft = factories.make_policy(db, title="内部草稿政策不可见")
    items, _ = service.list_policies(db=db, filters=PolicyFilters(q="内部草稿政策"), actor=None)
    assert draft.id not in [p.id for p in items]


def test_region_filter_includes_parent_regions_and_nationwide(db) -> None:  # type: ignore[no-untyped-def]
    city = factories.make_policy(db, publish=True, region_codes=["440600"])
    province = factories.make_policy(db, publish=True, region_codes=["440000"])
    nationwide = factories.make_policy(db, publish=True, region_codes=[])
    elsewhere = factories.make_policy(db, publish=True, region_codes=["440300"])
    items, _ = service.list_policies(db=db, filters=PolicyFilters(region="440606"), actor=None, limit=1000)
    ids = {p.id for p in items}
    assert {city.id, province.id, nationwide.id} <= ids
    assert elsewhere.id not in ids


def test_open_now_filter_and_deadline_sort(db) -> None:  # type: ignore[no-untyped-def]
    today = dt.date.today()
    dept = factories.make_department(db)
    soon = factories.make_policy(db, publish=True, department=dept, apply_end_on=today + dt.timedelta(days=3))
    later = factories.make_policy(db, publish=True, department=dept, apply_end_on=today + dt.timedelta(days=60))
    closed = factories.make_policy(
        db,
        publish=True,
        department=dept,
        apply_start_on=today - dt.timedelta(days=40),
        apply_end_on=today - dt.timedelta(days=1),
    )
    items, _ = service.list_policies(
        db=db, filters=PolicyFilters(department=dept.code, open_now=True, sort="deadline"), actor=None
    )
    assert [p.id for p in items] == [soon.id, later.id]
    assert closed.id not in [p.id for p in items]


def test_category_filter_on_a_top_class_includes_its_sub_classes(db) -> None:  # type: ignore[no-untyped-def]
    sub = factories.make_category(db)
    policy = factories.make_policy(db, publish=True, category=sub)
    items, _ = service.list_policies(db=db, filters=PolicyFilters(category=sub.parent.code), actor=None)
    assert [p.id for p in items] == [policy.id]


def test_expire_due_policies_marks_past_validity(db) -> None:  # type: ignore[no-untyped-def]
    policy = factories.make_policy(db, publish=True)
    expired = service.expire_due_policies(db=db, today=policy.valid_to_on + dt.timedelta(days=1))
    assert policy.id in expired and policy.status == PolicyStatus.expired


def test_tag_synonyms_in_rules_are_stored_as_canonical_names(db) -> None:  # type: ignore[no-untyped-def]
    service.create_tag(db=db, tag_in=TagIn(name="高新技术企业", kind="qualification", synonyms=["高企"]))
    policy = factories.make_policy(db, rules={"all": [{"field": "qualifications", "op": "has_any", "value": ["高企"]}]})
    assert policy.rules == {"all": [{"field": "qualifications", "op": "has_any", "value": ["高新技术企业"]}]}


def test_unknown_tag_in_rules_is_refused(db) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationFailed) as exc:
        factories.make_policy(
            db, rules={"all": [{"field": "qualifications", "op": "has_any", "value": ["不存在的资质"]}]}
        )
    assert exc.value.errors[0].code == "unknown_tag"


def test_keyword_search_expands_tag_abbreviations(db) -> None:  # type: ignore[no-untyped-def]
    service.create_tag(db=db, tag_in=TagIn(name="规模以上工业企业", kind="qualification", synonyms=["规上"]))
    policy = factories.make_policy(db, publish=True, title="中山市规模以上工业企业增产奖励")
    items, _ = service.list_policies(db=db, filters=PolicyFilters(q="规上 增产"), actor=None)
    assert [p.id for p in items] == [policy.id]
