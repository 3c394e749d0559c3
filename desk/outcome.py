"""Outcome: the firm accepts the instant answer or asks for a person, rates the result; revisits, closing, reopening.

A dissatisfied rating reopens a handled case under supervision (督办) with fresh clocks, and a second
one (``HUIQI_DESK_REOPEN_ESCALATE_AFTER``) escalates it to supervisors; a late dissatisfied rating of
an accepted instant answer sends the case to a person instead.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from auth.service import Principal
from core.config import Settings
from core.db import utcnow
from core.errors import FieldError, ValidationFailed
from desk.intake import apply_routing
from desk.lifecycle import (
    IllegalTransition,
    add_event,
    check_transition,
    get_case,
    move,
    require_firm,
    require_handler,
    require_supervisor,
    transition,
)
from desk.models import RATING_LABELS, Case, CaseStatus, EventKind, Rating
from desk.routing import route_case

S = CaseStatus


# ---------------------------------------------------------------- the firm's answers to an instant answer


def accept_answer(
    *,
    db: Session,
    settings: Settings,
    case_id: int,
    actor: Principal | None,
    rating: Rating | None = None,
    comment: str | None = None,
    now: dt.datetime | None = None,
) -> Case:
    """The firm accepts the instant answer: the case closes (and is rated when a rating is given)."""
    now = now or utcnow()
    case = get_case(db=db, case_id=case_id, actor=actor)
    require_firm(case, actor, "采纳答复")
    with transition(
        db,
        case,
        "accept_answer",
        EventKind.accepted_answer,
        actor=actor,
        settings=settings,
        now=now,
        note="企业采纳即时答复",
    ):
        case.closed_at = now
    add_event(db, case, EventKind.closed, actor, note="即时答复已采纳，工单关闭", at=now)
    if rating is not None:
        rate_case(db, case, actor, Rating(rating), comment, settings=settings, now=now)
    db.flush()
    return case


def ask_for_person(
    *,
    db: Session,
    settings: Settings,
    case_id: int,
    actor: Principal | None,
    note: str | None = None,
    now: dt.datetime | None = None,
) -> Case:
    """The firm wants a person: the case is routed with the instant answer attached; clocks start now."""
    now = now or utcnow()
    case = get_case(db=db, case_id=case_id, actor=actor)
    require_firm(case, actor, "转人工")
    to_person(db, case, actor, note=note, action="ask_for_person", settings=settings, now=now)
    return case


def to_person(
    db: Session,
    case: Case,
    actor: Principal | None,
    *,
    note: str | None,
    action: str,
    settings: Settings,
    now: dt.datetime,
) -> None:
    """Route an instantly answered case to a department (or the central queue), its clocks starting now."""
    with transition(
        db, case, action, EventKind.dispatched, actor=actor, settings=settings, now=now, clocks="restart"
    ) as step:
        add_event(
            db,
            case,
            EventKind.asked_for_person,
            actor,
            at=now,
            note=note or "企业要求人工办理",
            data={"instant_answer_attached": case.instant_answer is not None},
        )
        case.closed_at = None
        decision = route_case(
            db=db, content=case.content, title=case.title, related_policy_id=case.related_policy_id, settings=settings
        )
        routed_note, data = apply_routing(db, case, decision, now=now)
        step.describe(routed_note, data=data)


# ---------------------------------------------------------------- rating, closing, reopening, revisits


def rate(
    *,
    db: Session,
    settings: Settings,
    case_id: int,
    actor: Principal | None,
    rating: Rating,
    comment: str | None = None,
    now: dt.datetime | None = None,
) -> Case:
    """The firm rates the outcome. 不满意 reopens the case under supervision (or sends an instant answer to a person)."""
    now = now or utcnow()
    case = get_case(db=db, case_id=case_id, actor=actor)
    require_firm(case, actor, "评价")
    rate_case(db, case, actor, Rating(rating), comment, settings=settings, now=now)
    return case


def rate_case(
    db: Session,
    case: Case,
    actor: Principal | None,
    rating: Rating,
    comment: str | None,
    *,
    settings: Settings,
    now: dt.datetime,
) -> None:
    """Record a rating of the case's outcome and what it leads to (rated, reopened or to a person)."""
    if case.status == S.closed and case.rating is not None:
        raise IllegalTransition(
            "工单已评价并关闭，不能重复评价", errors=[FieldError("rating", "已评价", "already_rated")]
        )
    never_dispatched = case.dispatched_at is None
    if rating == Rating.dissatisfied:
        action = "rate_answer_bad" if case.status == S.closed and never_dispatched else "rate_bad"
    else:
        action = "rate_ok"
    label = RATING_LABELS[rating]
    data = {"rating": str(rating)}
    if action == "rate_ok":
        with transition(
            db, case, action, EventKind.rated, actor=actor, settings=settings, now=now, note=comment or label, data=data
        ):
            _store_rating(case, rating, comment, now)
        return
    # 不满意: the rating is recorded, then the case moves on (to a person, or reopened) in one step.
    check_transition(case, action)
    _store_rating(case, rating, comment, now)
    add_event(db, case, EventKind.rated, actor, note=comment or label, data=data, at=now)
    if action == "rate_answer_bad":
        to_person(db, case, actor, note="企业对即时答复不满意，转人工办理", action=action, settings=settings, now=now)
        return
    reopen_case(
        db,
        case,
        actor,
        action=action,
        note=f"企业评价不满意，重新办理{('：' + comment) if comment else ''}",
        settings=settings,
        now=now,
    )


def _store_rating(case: Case, rating: Rating, comment: str | None, now: dt.datetime) -> None:
    case.rating = rating
    case.rating_comment = comment
    case.rated_at = now


def reopen_case(
    db: Session, case: Case, actor: Principal | None, *, action: str, note: str, settings: Settings, now: dt.datetime
) -> None:
    """Reopen under supervision (督办): a new round with fresh clocks; repeated reopening escalates."""
    if case.department_id is None:
        raise IllegalTransition(
            "工单没有承办部门，不能重新办理", errors=[FieldError("status", "无承办部门", "in_queue")]
        )
    with transition(
        db, case, action, EventKind.reopened, actor=actor, settings=settings, now=now, note=note, clocks="restart"
    ):
        case.reopen_count += 1
        case.supervised = True
        case.resolved_at = None
        case.closed_at = None
        case.extensions = []
        case.escalation_level = 0
    add_event(
        db,
        case,
        EventKind.supervised,
        None,
        at=now,
        note=f"列入督办（第{case.reopen_count}次重办）",
        data={"reopen_count": case.reopen_count},
    )
    if case.reopen_count >= settings.desk_reopen_escalate_after:
        add_event(
            db,
            case,
            EventKind.escalated,
            None,
            at=now,
            visible_to_firm=False,
            note=f"工单已重办{case.reopen_count}次，升级至督办人员",
            data={"reason": "repeated_reopen", "reopen_count": case.reopen_count, "to": "supervisor"},
        )
    db.flush()


def close(
    *,
    db: Session,
    settings: Settings,
    case_id: int,
    actor: Principal | None,
    note: str | None = None,
    now: dt.datetime | None = None,
) -> Case:
    """Close (归档) a rated case; a supervisor may also close a resolved case the firm did not rate."""
    now = now or utcnow()
    case = get_case(db=db, case_id=case_id, actor=actor)
    if case.status == S.resolved:
        require_supervisor(actor, "关闭未评价的工单")
        if not note:
            raise ValidationFailed(
                errors=[FieldError("note", "关闭未评价的工单须说明原因（如企业逾期未评价）", "required")]
            )
    else:
        require_handler(case, actor, "关闭工单")
    with transition(
        db, case, "close", EventKind.closed, actor=actor, settings=settings, now=now, note=note or "工单已归档"
    ):
        case.closed_at = now
    return case


def reopen(
    *,
    db: Session,
    settings: Settings,
    case_id: int,
    actor: Principal | None,
    reason: str,
    now: dt.datetime | None = None,
) -> Case:
    """A supervisor reopens a resolved, rated or closed case for another round (督办)."""
    now = now or utcnow()
    case = get_case(db=db, case_id=case_id, actor=actor)
    require_supervisor(actor, "重新办理")
    check_transition(case, "reopen")  # a wrong status is refused before a missing department
    reopen_case(db, case, actor, action="reopen", note=reason, settings=settings, now=now)
    return case


def revisit(
    *,
    db: Session,
    settings: Settings,
    case_id: int,
    actor: Principal | None,
    note: str,
    rating: Rating | None = None,
    comment: str | None = None,
    now: dt.datetime | None = None,
) -> Case:
    """Record a revisit (回访) of the firm by staff, with the rating it gave on the phone, if any."""
    now = now or utcnow()
    case = get_case(db=db, case_id=case_id, actor=actor)
    require_handler(case, actor, "回访")
    move(db, case, "revisit", EventKind.revisited, actor=actor, settings=settings, now=now, note=note)
    if rating is not None:
        rate_case(db, case, actor, Rating(rating), comment, settings=settings, now=now)
    db.flush()
    return case
