"""The curator's decisions on intake proposals change the draft they came from, and nothing else."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from catalog.intake import review
from catalog.intake.service import intake_files
from catalog.models import Policy, PolicyIntake, Tag
from core.errors import ValidationFailed
from tests import factories
from tests.support import intake_docs as docs


def _draft(db: Session, *, with_tags: bool = False) -> Policy:
    factories.make_department(db, name="中山市工业和信息化局", short_name="中山工信", region_code="442000")
    for name in ("专精特新中小企业", "专精特新“小巨人”企业"):
        if not db.scalar(select(func.count()).select_from(Tag).where(Tag.name == name)):
            factories.make_tag(db, name=name, kind="qualification")
    suggest = (lambda title, text, rules: ["专精特新中小企业"]) if with_tags else None
    (result,) = intake_files(db=db, files=[("notice.txt", docs.NOTICE.encode())], actor=None, suggest_tags=suggest)
    assert result.policy is not None
    return result.policy


def _key(db: Session, policy: Policy, field: str) -> str:
    record = db.scalar(select(PolicyIntake).where(PolicyIntake.policy_id == policy.id))
    assert record is not None
    return next(i.key for i in review.items(record) if i.kind == "condition" and i.coded and i.name == field)


def test_reject_then_accept_puts_the_condition_back_and_an_edit_replaces_it_in_place(db: Session) -> None:
    policy = _draft(db)
    revenue = _key(db, policy, "annual_revenue")
    original = list(policy.rules["all"])
    review.decide(db, policy_id=policy.id, key=revenue, decision="reject", actor=None)
    assert {"field": "annual_revenue", "op": "gte", "value": 2000} not in policy.rules["all"]
    review.decide(db, policy_id=policy.id, key=revenue, decision="accept", actor=None)
    assert {"field": "annual_revenue", "op": "gte", "value": 2000} in policy.rules["all"]
    place = policy.rules["all"].index({"field": "annual_revenue", "op": "gte", "value": 2000})
    item = review.decide(db, policy_id=policy.id, key=revenue, decision="edit", actor=None, value="0.5亿元")
    assert item.status == "edited" and item.current == {"field": "annual_revenue", "op": "gte", "value": 5000}
    assert policy.rules["all"][place] == item.current  # in the proposal's place
    review.decide(db, policy_id=policy.id, key=revenue, decision="edit", actor=None, op="between", value="3000-9000")
    assert len(policy.rules["all"]) == len(original)
    assert [n for n in policy.rules["all"] if n["field"] == "annual_revenue"] == [
        {"field": "annual_revenue", "op": "between", "value": [3000, 9000]}
    ]
    # Accepting the proposal after an edit restores what the document said.
    review.decide(db, policy_id=policy.id, key=revenue, decision="accept", actor=None)
    assert sorted(map(str, policy.rules["all"])) == sorted(map(str, original))


def test_field_decisions_change_the_column_but_never_what_the_curator_typed(db: Session) -> None:
    policy = _draft(db)
    assert policy.doc_number == "中工信〔2026〕18号"
    review.decide(
        db, policy_id=policy.id, key="field-doc_number", decision="edit", actor=None, value="中工信〔2026〕19号"
    )
    assert policy.doc_number == "中工信〔2026〕19号"
    review.decide(db, policy_id=policy.id, key="field-doc_number", decision="reject", actor=None)
    assert policy.doc_number is None
    # A deadline the curator set by hand stays when the proposed one is rejected.
    hand = dt.date.today() + dt.timedelta(days=20)
    policy.apply_end_on = hand
    db.flush()
    review.decide(db, policy_id=policy.id, key="field-apply_end_on", decision="reject", actor=None)
    assert policy.apply_end_on == hand
    # Fields shown for checking only are recorded, not stored.
    item = review.decide(db, policy_id=policy.id, key="field-issuer", decision="edit", actor=None, value="中山市工信局")
    assert item.current == "中山市工信局"
    with pytest.raises(ValidationFailed) as refused:
        review.decide(db, policy_id=policy.id, key="field-title", decision="reject", actor=None)
    assert refused.value.errors[0].field == "decision"


def test_tags_are_accepted_or_rejected_and_plain_conditions_are_confirmed_by_hand(db: Session) -> None:
    policy = _draft(db, with_tags=True)
    assert [t.name for t in policy.tags] == ["专精特新中小企业"]
    review.decide(db, policy_id=policy.id, key="tag-0", decision="reject", actor=None)
    assert policy.tags == []
    review.decide(db, policy_id=policy.id, key="tag-0", decision="accept", actor=None)
    assert [t.name for t in policy.tags] == ["专精特新中小企业"]
    record = db.scalar(select(PolicyIntake).where(PolicyIntake.policy_id == policy.id))
    assert record is not None
    plain = next(i for i in review.items(record) if not i.coded)
    before = policy.rules
    review.decide(db, policy_id=policy.id, key=plain.key, decision="accept", actor=None)
    assert policy.rules == before  # never in the computable rules
    assert next(i for i in review.items(record) if i.key == plain.key).status == "accepted"


def test_publishing_waits_for_every_decision(db: Session) -> None:
    from catalog import service as catalog_service
    from catalog.schemas import PolicyUpdate

    policy = _draft(db)
    cat = factories.make_category(db)
    catalog_service.update_policy(
        db=db,
        policy_id=policy.id,
        policy_in=PolicyUpdate(
            summary="摘要。",
            interpreter_name="李明",
            interpreter_contact="0760-88881234",
            categories=[cat.code],
            apply_end_on=dt.date.today() + dt.timedelta(days=9),
        ),
        actor=None,
    )
    record = db.scalar(select(PolicyIntake).where(PolicyIntake.policy_id == policy.id))
    with pytest.raises(ValidationFailed) as refused:
        catalog_service.publish_policy(db=db, policy_id=policy.id, actor=None)
    assert refused.value.code == "catalog.intake_undecided"
    for item in review.undecided(record):
        decision = "reject" if item.key.startswith("field-apply") else "accept"
        review.decide(db, policy_id=policy.id, key=item.key, decision=decision, actor=None)
    assert review.undecided(record) == []
    assert catalog_service.publish_policy(db=db, policy_id=policy.id, actor=None).status == "published"


ALTERNATIVES = """中山市科学技术局关于组织申报2026年企业研发补助的通知
中科〔2026〕7号
各有关企业：
一、申报条件
（一）在中山市依法注册登记、具有独立法人资格的企业；
（二）上年度营业收入2000万元以上或研发费用500万元以上；
（三）未被列入严重失信主体名单。
二、支持标准
对符合条件的企业给予补助，最高不超过50万元。
中山市科学技术局
2026年2月20日
"""


def _alternatives_draft(db: Session) -> tuple[Policy, str, str]:
    factories.make_department(db, name="中山市科学技术局", short_name="中山科技", region_code="442000")
    (result,) = intake_files(db=db, files=[("alt.txt", ALTERNATIVES.encode())], actor=None)
    assert result.policy is not None
    policy = result.policy
    revenue = _key(db, policy, "annual_revenue")
    rd = _key(db, policy, "rd_expense")
    return policy, revenue, rd


def _any_of(policy: Policy) -> list[dict]:
    return [n["any"] for n in policy.rules["all"] if isinstance(n, dict) and "any" in n]


def test_decisions_on_alternatives_change_their_any_and_never_turn_them_into_requirements(db: Session) -> None:
    policy, revenue, rd = _alternatives_draft(db)
    rev_node = {"field": "annual_revenue", "op": "gte", "value": 2000}
    rd_node = {"field": "rd_expense", "op": "gte", "value": 500}
    assert _any_of(policy) == [[rev_node, rd_node]]
    top = len(policy.rules["all"])
    # Editing one alternative changes it inside its `any`.
    item = review.decide(db, policy_id=policy.id, key=revenue, decision="edit", actor=None, value="3000")
    edited = item.current
    assert _any_of(policy) == [[edited, rd_node]] and len(policy.rules["all"]) == top
    # Rejecting one alternative leaves the other one simply required.
    review.decide(db, policy_id=policy.id, key=rd, decision="reject", actor=None)
    assert _any_of(policy) == [] and edited in policy.rules["all"] and rd_node not in policy.rules["all"]
    assert len(policy.rules["all"]) == top
    # Accepting it again puts it back as an alternative, not as one more requirement.
    review.decide(db, policy_id=policy.id, key=rd, decision="accept", actor=None)
    assert _any_of(policy) == [[edited, rd_node]] and len(policy.rules["all"]) == top
    # Both rejected: neither is required any more.
    review.decide(db, policy_id=policy.id, key=rd, decision="reject", actor=None)
    review.decide(db, policy_id=policy.id, key=revenue, decision="reject", actor=None)
    assert len(policy.rules["all"]) == top - 1
    assert all(n.get("field") not in {"annual_revenue", "rd_expense"} for n in policy.rules["all"])
    # Accepting them back, one after the other, rebuilds the alternative.
    review.decide(db, policy_id=policy.id, key=revenue, decision="accept", actor=None)
    assert rev_node in policy.rules["all"]
    review.decide(db, policy_id=policy.id, key=rd, decision="accept", actor=None)
    assert _any_of(policy) == [[rev_node, rd_node]] and len(policy.rules["all"]) == top
