"""Intake: a submission checked, written as a case, and given its outcome — an instant answer or a department.

Intake runs in stages so that nothing slow happens while the case is being written (see
:mod:`desk.flows`, which commits between them for HTTP requests):

1. :func:`prepare` — who may file what through which channel, attachments, the kind (detected when not
   given), due times from receipt; or the case an idempotency key already made (``case.replayed``);
2. :func:`receive` — write the case (status ``submitted``, its clocks running) and its first event;
   a staff member who names the department dispatches it here, there is nothing to decide;
3. :func:`decide` — reads only: the instant answer of a consultation (knowledge base, embedder) and,
   when there is no confident answer, the routing decision;
4. :func:`record_outcome` — exactly once per case (``intake_done_at`` is claimed by a conditional
   UPDATE): answered, or dispatched to a department or the central queue.

:func:`submit_case` runs them all in the caller's transaction (imports, demo data, tests).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from auth.models import Role
from auth.service import Principal
from catalog.models import Department, Policy
from core.config import Settings
from core.db import rowcount, utcnow
from core.errors import FieldError, ValidationFailed
from desk import sla
from desk.answer import InstantAnswer, answer_question
from desk.clock import recompute_due, site_profile, site_tz
from desk.kinds import detect_kind
from desk.lifecycle import add_event, department_data, move, set_lead, transition
from desk.models import Case, CaseStatus, Channel, EventKind, RoutingMethod
from desk.routing import RoutingDecision, route_case
from desk.schemas import AttachmentIn, CaseIn
from profiles.models import Enterprise

if TYPE_CHECKING:
    from matcher.engine import Matcher

log = logging.getLogger(__name__)

# Attachments the desk accepts (metadata only; files live in the document store).
ALLOWED_CONTENT_TYPES = frozenset(
    {
        "application/pdf",
        "application/ofd",
        "image/jpeg",
        "image/png",
        "image/gif",
        "image/webp",
        "text/plain",
        "text/csv",
        "application/msword",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.ms-excel",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/zip",
        "audio/mpeg",
        "audio/wav",
        "video/mp4",
    }
)


# ---------------------------------------------------------------- checks


def idempotency_scope(actor: Principal | None) -> str:
    """Return whose idempotency keys a submission's key is unique among: the user's, the API key's, the system's."""
    if actor is None:
        return "system"
    return f"apikey:{actor.id}" if actor.via_api_key else f"user:{actor.user_id}"


def by_idempotency_key(db: Session, scope: str, key: str) -> Case | None:
    """Return the case a caller's idempotency key made, if any."""
    return db.scalar(select(Case).where(Case.idempotency_scope == scope, Case.idempotency_key == key))


def _intake_rules(
    db: Session, actor: Principal | None, case_in: CaseIn, settings: Settings, now: dt.datetime
) -> tuple[str, int | None]:
    """Check who may file what through which channel; return (channel, enterprise id)."""
    errors: list[FieldError] = []
    channel = case_in.channel
    enterprise_id = case_in.enterprise_id
    if actor is not None and actor.role == Role.enterprise and not actor.via_api_key:
        if channel not in (None, Channel.web):
            errors.append(FieldError("channel", "企业用户只能网上提交（web）", "not_allowed"))
        if enterprise_id not in (None, actor.enterprise_id):
            errors.append(FieldError("enterprise_id", "只能为本企业提交诉求", "not_allowed"))
        for name in ("department_id", "visit_record", "received_at", "external_ref"):
            if getattr(case_in, name) is not None:
                errors.append(FieldError(name, "企业用户不能填写此项", "not_allowed"))
        channel, enterprise_id = Channel.web, actor.enterprise_id
    elif actor is not None and actor.via_api_key:
        channel = channel or Channel.api
        if channel not in (Channel.api, Channel.hotline, Channel.import_):
            errors.append(FieldError("channel", "系统对接只能使用 api、hotline 或 import 渠道", "not_allowed"))
    elif actor is not None:
        if actor.role not in (Role.desk, Role.supervisor, Role.admin):
            errors.append(FieldError("channel", "该角色不能代企业提交诉求", "not_allowed"))
        channel = channel or Channel.proxy
        if channel not in (Channel.proxy, Channel.hotline, Channel.import_):
            errors.append(
                FieldError("channel", "工作人员只能代提（proxy）、录入热线（hotline）或导入（import）", "not_allowed")
            )
    else:
        channel = channel or Channel.import_

    if channel == Channel.proxy:
        if actor is not None and (actor.via_api_key or actor.role == Role.enterprise):
            errors.append(FieldError("channel", "代提只能由工作人员办理", "not_allowed"))
        if case_in.visit_record is None:
            errors.append(FieldError("visit_record", "代提必须填写走访记录（走访日期、走访人、地点）", "required"))
        elif case_in.visit_record.visited_on > now.astimezone(site_tz(settings)).date():
            errors.append(FieldError("visit_record.visited_on", "走访日期不能晚于今天", "future_date"))
        if enterprise_id is None:
            errors.append(FieldError("enterprise_id", "代提必须指明企业", "required"))
    elif case_in.visit_record is not None:
        errors.append(FieldError("visit_record", "只有代提需要走访记录", "not_allowed"))

    if enterprise_id is not None and db.get(Enterprise, enterprise_id) is None:
        errors.append(FieldError("enterprise_id", f"企业 {enterprise_id} 不存在", "unknown_enterprise"))
    if case_in.related_policy_id is not None and db.get(Policy, case_in.related_policy_id) is None:
        errors.append(FieldError("related_policy_id", f"政策 {case_in.related_policy_id} 不存在", "unknown_policy"))
    if case_in.department_id is not None and db.get(Department, case_in.department_id) is None:
        errors.append(FieldError("department_id", f"部门 {case_in.department_id} 不存在", "unknown_department"))
    if case_in.received_at is not None:
        if case_in.received_at.tzinfo is None:
            errors.append(FieldError("received_at", "受理时间须带时区，如 2026-11-23T09:30:00+08:00", "naive_datetime"))
        elif case_in.received_at > now + dt.timedelta(minutes=5):
            errors.append(FieldError("received_at", "受理时间不能晚于当前时间", "future_datetime"))
    errors.extend(check_attachments(case_in.attachments, settings=settings))
    if errors:
        raise ValidationFailed("诉求提交信息有误", errors=errors)
    return str(channel), enterprise_id


def check_attachments(attachments: Iterable[AttachmentIn], *, settings: Settings) -> list[FieldError]:
    """Return the problems of attachment metadata: size over the upload limit, type, duplicates."""
    errors = []
    limit = settings.upload_max_mb * 1024 * 1024
    seen: set[str] = set()
    for i, att in enumerate(attachments):
        if att.size > limit:
            errors.append(
                FieldError(f"attachments[{i}].size", f"附件超过 {settings.upload_max_mb} MB 上限", "too_large")
            )
        if att.content_type.lower() not in ALLOWED_CONTENT_TYPES:
            errors.append(
                FieldError(
                    f"attachments[{i}].content_type",
                    f"不支持的附件类型 {att.content_type}（支持 PDF、OFD、图片、Word、Excel、文本、压缩包、音视频）",
                    "unsupported_type",
                )
            )
        if att.sha256 in seen:
            errors.append(FieldError(f"attachments[{i}].sha256", "同一文件重复上传", "duplicate"))
        seen.add(att.sha256)
    return errors


def _title_of(case_in: CaseIn) -> str:
    if case_in.title:
        return case_in.title
    first = case_in.content.strip().splitlines()[0]
    return first if len(first) <= 30 else first[:30] + "…"


def _question_of(title: str, content: str) -> str:
    return content if title.rstrip("…") in content else f"{title}\n{content}"


def case_number(case: Case, tz: dt.tzinfo) -> str:
    """Return the human case number: HQ + local date of receipt + the case id, e.g. HQ20261123-000123."""
    return f"HQ{case.received_at.astimezone(tz):%Y%m%d}-{case.id:06d}"


# ---------------------------------------------------------------- stages 1 and 2: the acknowledgement


def prepare(*, db: Session, settings: Settings, actor: Principal | None, case_in: CaseIn, now: dt.datetime) -> Case:
    """Check a submission; return the case its idempotency key already made, or a new unsaved case.

    A returned existing case has ``replayed`` set. A new one carries its kind (detected when not
    given), title and due times counted from receipt; :func:`receive` writes it.
    """
    scope = idempotency_scope(actor)
    key = case_in.idempotency_key
    if key:
        existing = by_idempotency_key(db, scope, key)
        if existing is not None:
            existing.replayed = True
            return existing
    channel, enterprise_id = _intake_rules(db, actor, case_in, settings, now)
    if case_in.kind is not None:
        kind, kind_detected, kind_confidence = case_in.kind, False, None
    else:
        kind, kind_confidence = detect_kind(f"{case_in.title or ''}\n{case_in.content}")
        kind_detected = True
    received_at = case_in.received_at.astimezone(dt.UTC) if case_in.received_at else now
    case = Case(
        number=f"tmp-{uuid.uuid4().hex}",
        kind=kind,
        kind_detected=kind_detected,
        kind_confidence=kind_confidence,
        title=_title_of(case_in),
        content=case_in.content,
        channel=channel,
        enterprise_id=enterprise_id,
        submitted_by_id=actor.user_id if actor else None,
        api_key_id=actor.id if actor and actor.via_api_key else None,
        external_ref=case_in.external_ref,
        contact_name=case_in.contact_name,
        contact_phone=case_in.contact_phone,
        related_policy_id=case_in.related_policy_id,
        status=CaseStatus.submitted,
        idempotency_scope=scope if key else None,
        idempotency_key=key,
        visit_record=case_in.visit_record.model_dump(mode="json") if case_in.visit_record else None,
        attachments=[a.model_dump() for a in case_in.attachments],
        instant_answer=None,
        sla_profile=site_profile(settings).code,
        received_at=received_at,
        sla_started_at=received_at,
        extensions=[],
        due_warnings=[],
        created_at=now,
        updated_at=now,
    )
    recompute_due(case, settings=settings, now=now)
    return case


def receive(
    *,
    db: Session,
    settings: Settings,
    actor: Principal | None,
    case: Case,
    department_id: int | None = None,
    now: dt.datetime,
) -> Case:
    """Write a prepared case and its first event; return it, or the case that won a race for its key.

    The unique index on (scope, key) decides concurrent retries: the loser reads the winner's case
    (``replayed``). A case whose department staff named is dispatched here, its intake done.
    """
    scope, key = case.idempotency_scope, case.idempotency_key
    if key:
        assert scope is not None
        existing = by_idempotency_key(db, scope, key)  # under the write lock: a retry that raced ours
        if existing is not None:
            existing.replayed = True
            return existing
    try:
        with db.begin_nested():
            db.add(case)
            db.flush()
            case.number = case_number(case, site_tz(settings))
            add_event(
                db,
                case,
                EventKind.submitted,
                actor,
                at=now,
                note=f"收到{sla.KIND_LABELS[case.kind]}：{case.title}",
                data={
                    "channel": case.channel,
                    "kind": case.kind,
                    "kind_detected": case.kind_detected,
                    "number": case.number,
                },
            )
            if case.due_warnings:
                add_event(
                    db,
                    case,
                    EventKind.note,
                    actor,
                    at=now,
                    visible_to_firm=False,
                    note="；".join(case.due_warnings),
                    data={"warnings": case.due_warnings, "provisional": True},
                )
            if department_id is not None:
                case.intake_done_at = now
                dispatch_to(db, case, department_id, actor, action="dispatch", settings=settings, now=now)
            db.flush()
    except IntegrityError:
        if not key:
            raise
        assert scope is not None
        existing = by_idempotency_key(db, scope, key)
        if existing is None:
            raise
        log.info("idempotent replay of %s key %s raced; returning case %s", scope, key, existing.number)
        existing.replayed = True
        return existing
    return case


# ---------------------------------------------------------------- stages 3 and 4: the outcome


@dataclass(frozen=True)
class IntakeOutcome:
    """What intake decided for a case: the instant answer (consultations) and where it goes otherwise."""

    answer: InstantAnswer | None
    decision: RoutingDecision | None


def decide(*, db: Session, matcher: Matcher | None, settings: Settings, case: Case) -> IntakeOutcome:
    """Answer a consultation from the knowledge base and, unless it is confident, route the case (reads only).

    ``matcher=None`` skips instant answers (imports).
    """
    answer = None
    if case.kind == "consultation" and matcher is not None:
        firm = db.get(Enterprise, case.enterprise_id) if case.enterprise_id is not None else None
        answer = answer_question(
            db=db,
            matcher=matcher,
            question=_question_of(case.title, case.content),
            settings=settings,
            region=(firm.region_code if firm is not None else None) or None,
        )
    decision = None
    if answer is None or not answer.confident:
        decision = route_case(
            db=db,
            content=case.content,
            title=case.title,
            related_policy_id=case.related_policy_id,
            settings=settings,
            encode=_encoder(matcher),
        )
    return IntakeOutcome(answer, decision)


def _encoder(matcher: Matcher | None) -> Callable[[Sequence[str]], Any] | None:
    """Return the matcher's query embedding for routing models that read it, when its model is ready."""
    if matcher is None or not matcher.semantic_ready:
        return None
    return lambda texts: matcher.encode(list(texts), "query")


def record_outcome(
    *,
    db: Session,
    settings: Settings,
    case_id: int,
    outcome: IntakeOutcome,
    actor: Principal | None,
    now: dt.datetime,
) -> Case | None:
    """Record a case's intake outcome once: answered, or dispatched; None when it was already recorded.

    The conditional UPDATE of ``intake_done_at`` is the claim: of a request and the job finishing
    the same case, exactly one writes the outcome (on PostgreSQL the second waits for the first's
    row lock, then finds the column set).
    """
    claimed = db.execute(
        update(Case)
        .where(Case.id == case_id, Case.intake_done_at.is_(None))
        .values(intake_done_at=now)
        .execution_options(synchronize_session=False)
    )
    if rowcount(claimed) != 1:
        return None
    case = db.get(Case, case_id, populate_existing=True)
    assert case is not None
    answer = outcome.answer
    if answer is not None:
        case.instant_answer = answer.to_dict()
    if answer is not None and answer.confident and case.kind == "consultation":
        move(
            db,
            case,
            "answer",
            EventKind.answered_instantly,
            actor=actor,
            settings=settings,
            now=now,
            note=answer.text,
            data={"confidence": answer.confidence, "citations": len(answer.citations)},
        )
    elif outcome.decision is not None:
        route_by(db, case, outcome.decision, actor, action="dispatch", settings=settings, now=now)
    else:  # the kind was corrected to one that is not answered instantly while intake ran: the central queue
        dispatch_to(db, case, None, actor, action="dispatch", settings=settings, now=now)
    return case


def pending_intake_ids(*, db: Session, received_before: dt.datetime, limit: int = 500) -> list[int]:
    """Return cases still waiting for their intake outcome, created before the given time, oldest first."""
    return list(
        db.scalars(
            select(Case.id)
            .where(Case.intake_done_at.is_(None), Case.created_at < received_before)
            .order_by(Case.id)
            .limit(limit)
        )
    )


def submit_case(
    *,
    db: Session,
    matcher: Matcher | None,
    settings: Settings,
    actor: Principal | None,
    case_in: CaseIn,
    now: dt.datetime | None = None,
) -> Case:
    """File a case in the caller's transaction: check, write, answer a consultation when confident, else route.

    The same idempotency key from the same caller returns the case it first made (``case.replayed``
    is then True), also under concurrent retries. ``matcher=None`` skips instant answers (imports).
    HTTP intake goes through :func:`desk.flows.submit`, which runs the same stages in short transactions.
    """
    now = now or utcnow()
    case = prepare(db=db, settings=settings, actor=actor, case_in=case_in, now=now)
    if case.replayed:
        return case
    case = receive(db=db, settings=settings, actor=actor, case=case, department_id=case_in.department_id, now=now)
    if case.replayed or case.intake_done_at is not None:
        return case
    outcome = decide(db=db, matcher=matcher, settings=settings, case=case)
    record_outcome(db=db, settings=settings, case_id=case.id, outcome=outcome, actor=actor, now=now)
    return case


# ---------------------------------------------------------------- dispatching


def apply_routing(
    db: Session, case: Case, decision: RoutingDecision, *, now: dt.datetime
) -> tuple[str, dict[str, Any]]:
    """Send the case where a routing decision says (its department, or the central queue); return the event's note and data."""
    case.routing_method = decision.method if decision.department_id is not None else RoutingMethod.dispatch
    case.routing_confidence = decision.confidence
    case.routing_candidates = [[c, round(float(s), 4)] for c, s in decision.candidates]
    set_lead(db, case, decision.department_id, now)
    case.dispatched_at = now
    data = department_data(db, decision.department_id)
    note = f"分拨至{data['department_name']}" if decision.department_id else "暂无法自动确定承办部门，已进入统一分拨"
    return note, {**data, "method": str(case.routing_method)}


def route_by(
    db: Session,
    case: Case,
    decision: RoutingDecision,
    actor: Principal | None,
    *,
    action: str,
    settings: Settings,
    now: dt.datetime,
) -> None:
    """Dispatch by a routing decision: to its department, or to the central queue when it has none."""
    with transition(db, case, action, EventKind.dispatched, actor=actor, settings=settings, now=now) as step:
        note, data = apply_routing(db, case, decision, now=now)
        step.describe(note, data=data)


def dispatch_to(
    db: Session,
    case: Case,
    department_id: int | None,
    actor: Principal | None,
    *,
    action: str,
    settings: Settings,
    now: dt.datetime,
) -> None:
    """Dispatch to the department staff named (the central queue when None)."""
    with transition(db, case, action, EventKind.dispatched, actor=actor, settings=settings, now=now) as step:
        case.routing_method = RoutingMethod.manual if department_id else RoutingMethod.dispatch
        case.routing_confidence = None
        case.routing_candidates = None
        set_lead(db, case, department_id, now)
        case.dispatched_at = now
        data = department_data(db, department_id)
        step.describe(f"分拨至{data['department_name']}", data={**data, "method": str(case.routing_method)})
