"""The SLA scan (every 5 minutes): colour open cases by their running clock, escalate, tell the right people.

For every case whose clock runs (or that still carries a colour from an earlier scan) the scan asks
:func:`desk.clock.sla_view` for the running stage (contact → reply → close), its due time and its
state under the case's profile and the site's calendar, and stores ``sla_state`` and
``escalation_level`` (0 none, 1 yellow, 2 orange, 3 red — the current level; it drops when the
stage is done or the deadline moves). Thresholds are the profile's :class:`desk.sla.EscalationRule`
(``HUIQI_DESK_SLA_PROFILE`` JSON ``"escalation": {...}``; Xuzhou's 0 / 3 / 5 working days by default).

Each level reached on a deadline is recorded once: an ``escalated`` event (``data.reason = "sla"``)
keyed by (stage, due time, level). A new deadline — the next stage, an approved extension, a
reopened round — can be chased again. A scan that finds a case several levels up at once (the
worker was down) writes one event per level and notifies only for the highest.

Who is told (徐州黄橙红三色预警):

- yellow — the lead department's desk officers (the platform chases them); a case still in the
  central dispatch queue has no department, so its yellow goes to the supervisors (dispatchers);
- orange — also the supervisors (营商办 / the business-environment office);
- red — also ``HUIQI_DESK_RED_ALERT_EMAIL`` (the discipline inspection address; accountability).

Notifications are emails. The push outbox (``push_delivery``) is keyed on an enterprise — it is
the firms' inbox — and cannot address staff, so the desk keeps its own outbox in the timeline: the
``escalated`` event lists its recipients (written in the same transaction as the escalation, so a
crash loses both or neither), and after that transaction commits each recipient is sent one email
through :class:`push.channels.EmailChannel`. Every final outcome is appended as a ``note`` event
(hidden from the firm) with ``data.notification_for`` = the escalated event's id and the results;
a recipient with a recorded outcome is never mailed again for that event, so events stay
append-only and the timeline shows who was told. Retryable SMTP failures are retried on the next
scans for ``RETRY_HOURS``, then given up (recorded as dead). A crash between the server accepting a
mail and the note being committed resends it once, with the same Message-ID.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from auth.models import Role, User
from catalog.models import Department
from core.config import Settings, get_settings
from core.db import Database, get_database, utcnow
from core.scheduler import registry, run_items
from core.workcal import WorkCalendar
from desk import clock, flows, intake
from desk.lifecycle import add_event
from desk.models import Case, CaseEvent, EventKind
from desk.sla import KIND_LABELS, STAGE_LABELS, STATE_LABELS
from matcher import engine as matcher_engine
from push.channels import Channel, EmailChannel, EmailRecipient, Message

log = logging.getLogger(__name__)

registry.register("desk.sla_scan", "desk.jobs:sla_scan_job", "interval", minutes=5)
registry.register("desk.finish_intake", "desk.jobs:finish_intake_job", "interval", minutes=1)

LEVELS: dict[str, int] = {"on_track": 0, "due_soon": 0, "yellow": 1, "orange": 2, "red": 3}
LEVEL_STATES = {1: "yellow", 2: "orange", 3: "red"}
LEVEL_LABELS = {1: "黄色预警", 2: "橙色预警", 3: "红色预警"}
# Who chases at each level (徐州黄橙红三色预警).
LEVEL_CHASERS = {1: "平台催办", 2: "营商环境办督办", 3: "纪检监察介入，启动问责"}
ROLE_LABELS = {"desk": "承办部门业务专员", "supervisor": "督办人员", "discipline": "纪检监察"}
RETRY_HOURS = 24  # a retryable failure is retried on later scans this long, then given up
_LOOKBACK = dt.timedelta(hours=RETRY_HOURS * 2)  # escalations looked at for unsent notifications
SLA_REASON = "sla"
_ADDRESS_SPLIT = re.compile(r"[,;，；\s]+")


def site_calendar(settings: Settings) -> WorkCalendar:
    """Return the site's working calendar (desk.clock's, with loaded year arrangements)."""
    return clock.site_calendar(settings)


def red_alert_addresses(settings: Settings) -> list[str]:
    """Return the discipline inspection addresses for red escalations (comma or semicolon separated)."""
    raw = settings.desk_red_alert_email
    return [a for a in _ADDRESS_SPLIT.split(raw) if a]


def build_email_channel(settings: Settings) -> EmailChannel | None:
    """Return the SMTP channel the settings configure, or None when email is off."""
    if not (settings.smtp_host and settings.smtp_sender):
        return None
    return EmailChannel(
        host=settings.smtp_host,
        port=int(settings.smtp_port or 25),
        sender=settings.smtp_sender,
        username=settings.smtp_username,
        password=settings.smtp_password,
        use_tls=bool(settings.smtp_use_tls),
        use_ssl=bool(settings.smtp_use_ssl),
    )


@dataclass
class ScanReport:
    """What one scan did."""

    cases: int = 0  # cases read
    updated: int = 0  # cases whose colour or events changed, each in its own transaction
    failed_cases: list[str] = field(default_factory=list)
    changed: int = 0
    escalated_events: int = 0
    levels: dict[str, int] = field(default_factory=lambda: {"yellow": 0, "orange": 0, "red": 0})
    sent: int = 0
    dead: int = 0
    pending: int = 0
    failed_notifications: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain data (the job's return value)."""
        return dict(self.__dict__)


# ---------------------------------------------------------------- phase 1: colour and escalate


_CANDIDATE = or_(
    Case.status.in_([str(s) for s in clock.CLOCK_STATUSES]),
    Case.escalation_level > 0,
    Case.sla_state != "on_track",
)


@dataclass(frozen=True)
class _Reading:
    """A case's clock as the scan reads it now."""

    state: str
    level: int
    stage: str | None
    due_key: str | None  # the running deadline as a UTC ISO string, the key of its escalations


def _read(case: Case, *, settings: Settings, calendar: WorkCalendar, now: dt.datetime) -> _Reading:
    view = clock.sla_view(case, settings=settings, calendar=calendar, now=now)
    state = view.state or "on_track"
    due_key = view.due_at.astimezone(dt.UTC).isoformat() if view.due_at is not None else None
    return _Reading(state, LEVELS[state], view.stage, due_key)


def _level_key(data: Any) -> tuple[str, str, int] | None:
    """Return (stage, due key, level) of an SLA escalated event's data; None for other escalations."""
    if isinstance(data, dict) and data.get("reason") == SLA_REASON and isinstance(data.get("level"), int):
        return str(data.get("stage")), str(data.get("due_at")), data["level"]
    return None


def _missing_levels(reading: _Reading, recorded: set[tuple[str, str, int]]) -> list[int]:
    if reading.level == 0 or reading.stage is None or reading.due_key is None:
        return []
    return [lv for lv in range(1, reading.level + 1) if (reading.stage, reading.due_key, lv) not in recorded]


def _recorded(db: Session, case_ids: list[int]) -> dict[int, set[tuple[str, str, int]]]:
    """Return the SLA escalations already recorded per case."""
    out: dict[int, set[tuple[str, str, int]]] = {}
    for i in range(0, len(case_ids), 500):
        chunk = case_ids[i : i + 500]
        for case_id, data in db.execute(
            select(CaseEvent.case_id, CaseEvent.data).where(
                CaseEvent.case_id.in_(chunk), CaseEvent.kind == EventKind.escalated
            )
        ):
            key = _level_key(data)
            if key is not None:
                out.setdefault(case_id, set()).add(key)
    return out


def _to_update(db: Session, *, settings: Settings, calendar: WorkCalendar, now: dt.datetime) -> tuple[int, list[int]]:
    """Read every candidate case at once; return how many were read and the ids whose colour or events change.

    Only those get a transaction of their own, so a scan that finds nothing new is one read.
    """
    cases = list(db.scalars(select(Case).where(_CANDIDATE).order_by(Case.id)))
    recorded = _recorded(db, [c.id for c in cases])
    changed = []
    for case in cases:
        try:
            reading = _read(case, settings=settings, calendar=calendar, now=now)
        except Exception:  # let the case's own transaction fail and be reported with its key
            changed.append(case.id)
            continue
        if (
            reading.state != case.sla_state
            or reading.level != (case.escalation_level or 0)
            or _missing_levels(reading, recorded.get(case.id, set()))
        ):
            changed.append(case.id)
    return len(cases), changed


def _staff(db: Session, *, role: Role, department_id: int | None = None) -> list[User]:
    q = select(User).where(User.role == role, User.is_active.is_(True))
    if department_id is not None:
        q = q.where(User.department_id == department_id)
    return list(db.scalars(q.order_by(User.id)))


def recipients_for(db: Session, case: Case, level: int, settings: Settings) -> tuple[list[dict[str, Any]], list[str]]:
    """Return who is told of an escalation to `level`, and the names of those left out for want of an email."""
    people: list[tuple[User, str]] = []
    if case.department_id is not None:
        people += [(u, "desk") for u in _staff(db, role=Role.desk, department_id=case.department_id)]
    if level >= 2 or case.department_id is None:
        people += [(u, "supervisor") for u in _staff(db, role=Role.supervisor)]
    out: list[dict[str, Any]] = []
    missing: list[str] = []
    seen: set[str] = set()
    for user, role in people:
        address = (user.email or "").strip()
        if not address:
            missing.append(user.display_name)
            continue
        if address.lower() in seen:
            continue
        seen.add(address.lower())
        out.append({"to": address, "name": user.display_name, "user_id": user.id, "role": role})
    if level >= 3:
        for address in red_alert_addresses(settings):
            if address.lower() not in seen:
                seen.add(address.lower())
                out.append({"to": address, "name": address, "user_id": None, "role": "discipline"})
    return out, missing


def scan_case(
    db: Session, case: Case, *, settings: Settings, calendar: WorkCalendar, now: dt.datetime
) -> dict[str, Any]:
    """Store one case's SLA state and level; record (and address) each newly reached level once."""
    reading = _read(case, settings=settings, calendar=calendar, now=now)
    result: dict[str, Any] = {"changed": False, "new_levels": []}
    if case.sla_state != reading.state or (case.escalation_level or 0) != reading.level:
        case.sla_state = reading.state
        case.escalation_level = reading.level
        result["changed"] = True
    new = _missing_levels(reading, _recorded(db, [case.id]).get(case.id, set()))
    if not new:
        return result
    assert reading.stage is not None and reading.due_key is not None
    stage, due_key = reading.stage, reading.due_key
    due_at = dt.datetime.fromisoformat(due_key)
    overdue = round(calendar.working_days_between(due_at, now), 2)
    dept = db.get(Department, case.department_id) if case.department_id else None
    local_due = due_at.astimezone(calendar.tz)
    for lv in new:
        top = lv == new[-1]
        recipients, missing = recipients_for(db, case, lv, settings) if top else ([], [])
        note = (
            f"{LEVEL_LABELS[lv]}：{STAGE_LABELS[stage]}时限 {local_due:%Y-%m-%d %H:%M} 已超过 "
            f"{overdue:g} 个工作日，{LEVEL_CHASERS[lv]}"
        )
        if top and recipients:
            note += "；通知：" + "、".join(_who(r) for r in recipients)
        if top and missing:
            note += "；未设置邮箱、未能通知：" + "、".join(missing)
        add_event(
            db,
            case,
            EventKind.escalated,
            None,
            at=now,
            visible_to_firm=False,
            note=note,
            department_id=case.department_id,
            data={
                "reason": SLA_REASON,
                "level": lv,
                "state": LEVEL_STATES[lv],
                "stage": stage,
                "due_at": due_key,
                "overdue_working_days": overdue,
                "department": dept.code if dept else None,
                "recipients": recipients,
                "without_email": missing,
            },
        )
        result["new_levels"].append(lv)
    db.flush()
    return result


# ---------------------------------------------------------------- phase 2: send the notifications


def _message(
    case: Case, event: CaseEvent, index: int, *, department: str, settings: Settings, calendar: WorkCalendar
) -> Message:
    data = event.data
    level = int(data["level"])
    due = dt.datetime.fromisoformat(data["due_at"]).astimezone(calendar.tz)
    base = (settings.public_base_url or "").rstrip("/")
    lines = [
        f"工单编号：{case.number}",
        f"诉求类型：{KIND_LABELS.get(case.kind, case.kind)}",
        f"标题：{case.title}",
        f"承办部门：{department}",
        f"超期环节：{STAGE_LABELS.get(data['stage'], data['stage'])}，时限 {due:%Y-%m-%d %H:%M}",
        f"已超期：{data['overdue_working_days']:g} 个工作日",
        f"预警等级：{LEVEL_LABELS[level]}（{LEVEL_CHASERS[level]}）",
        "",
        "请尽快办理并在平台登记办理进展。",
    ]
    return Message(
        kind="desk_notice",
        title=f"【{LEVEL_LABELS[level]}】诉求工单 {case.number} 已超期",
        body_text="\n".join(lines),
        url=f"{base}/api/v1/desk/cases/{case.id}" if base else f"/api/v1/desk/cases/{case.id}",
        idempotency_key=f"desk-escalation-{event.id}-{index}",
        data={"case_id": case.id, "level": level, "state": STATE_LABELS[LEVEL_STATES[level]]},
    )


def _who(recipient: dict[str, Any]) -> str:
    return f"{recipient['name']}（{ROLE_LABELS.get(recipient['role'], recipient['role'])}）"


def _done(db: Session, event_id: int, case_id: int) -> set[str]:
    """Return the addresses with a recorded outcome for an escalated event."""
    done: set[str] = set()
    for data in db.scalars(
        select(CaseEvent.data).where(CaseEvent.case_id == case_id, CaseEvent.kind == EventKind.note)
    ):
        if isinstance(data, dict) and data.get("notification_for") == event_id:
            done.update(r["to"].lower() for r in data.get("results", []) if isinstance(r, dict) and r.get("to"))
    return done


def send_notifications(
    db: Session,
    event: CaseEvent,
    *,
    channel: Channel | None,
    settings: Settings,
    calendar: WorkCalendar,
    now: dt.datetime,
) -> dict[str, int]:
    """Email the recipients of one escalated event who have no recorded outcome; append the outcomes."""
    counts = {"sent": 0, "dead": 0, "pending": 0}
    recipients = (event.data or {}).get("recipients") or []
    if not recipients:
        return counts
    case = event.case
    done = _done(db, event.id, case.id)
    dept = db.get(Department, case.department_id) if case.department_id else None
    department = dept.name if dept else "统一分拨（待分配部门）"
    expired = now - event.at > dt.timedelta(hours=RETRY_HOURS)
    results = []
    for index, r in enumerate(recipients):
        if r["to"].lower() in done:
            continue
        if channel is None:
            results.append({**r, "status": "dead", "detail": "邮件服务器（SMTP）未配置，未能发送邮件通知"})
            counts["dead"] += 1
            continue
        message = _message(case, event, index, department=department, settings=settings, calendar=calendar)
        outcome = channel.send(message, EmailRecipient(r["to"], r["name"]))
        if outcome.ok:
            results.append({**r, "status": "sent", "detail": outcome.detail, "at": now.isoformat()})
            counts["sent"] += 1
        elif outcome.retryable and not expired:
            log.warning("escalation %s: mail to %s failed, retried next scan: %s", event.id, r["to"], outcome.detail)
            counts["pending"] += 1
        else:
            why = outcome.detail if not outcome.retryable else f"{RETRY_HOURS} 小时内重试均失败：{outcome.detail}"
            results.append({**r, "status": "dead", "detail": why})
            counts["dead"] += 1
    if results:
        sent = [_who(x) for x in results if x["status"] == "sent"]
        failed: dict[str, list[str]] = {}
        for x in results:
            if x["status"] != "sent":
                failed.setdefault(x["detail"], []).append(_who(x))
        parts = []
        if sent:
            parts.append("已邮件通知" + "、".join(sent))
        parts += [f"未能通知{'、'.join(names)}（{detail}）" for detail, names in failed.items()]
        add_event(
            db,
            case,
            EventKind.note,
            None,
            at=now,
            visible_to_firm=False,
            note=f"{LEVEL_LABELS[int(event.data['level'])]}通知：" + "；".join(parts),
            department_id=case.department_id,
            data={"notification_for": event.id, "results": results},
        )
        db.flush()
    return counts


def _unsent_event_ids(db: Session, now: dt.datetime) -> list[int]:
    """Return recent SLA escalated events that list recipients (some may be unsent)."""
    rows = db.execute(
        select(CaseEvent.id, CaseEvent.data)
        .where(CaseEvent.kind == EventKind.escalated, CaseEvent.at >= now - _LOOKBACK)
        .order_by(CaseEvent.id)
    ).all()
    return [
        i for i, data in rows if isinstance(data, dict) and data.get("reason") == SLA_REASON and data.get("recipients")
    ]


# ---------------------------------------------------------------- the scan


_Locked = TypeVar("_Locked", Case, CaseEvent)


def _locked(db: Session, model: type[_Locked], ident: int) -> _Locked | None:
    """Load a row, locked on PostgreSQL so overlapping scans take turns on it."""
    q = select(model).where(model.id == ident)
    if db.get_bind().dialect.name == "postgresql":
        q = q.with_for_update()
    return db.scalars(q.execution_options(populate_existing=True)).first()


def sla_scan(
    *,
    settings: Settings,
    database: Database | None = None,
    db: Session | None = None,
    now: dt.datetime | None = None,
    channel: Channel | None = None,
) -> ScanReport:
    """Scan every open case, escalate, then send the unsent notifications; each case and event independently.

    With `database` every case and every event gets its own committed transaction (the job); with
    `db` each runs in a savepoint of that session and the caller commits. `channel` defaults to the
    SMTP channel the settings configure.
    """
    if (database is None) == (db is None):
        raise ValueError("pass exactly one of database or db")
    now = now or utcnow()
    calendar = site_calendar(settings)
    channel = channel if channel is not None else build_email_channel(settings)
    report = ScanReport()

    def on_case(session: Session, case_id: int) -> None:
        case = _locked(session, Case, case_id)
        if case is None:
            return
        result = scan_case(session, case, settings=settings, calendar=calendar, now=now)
        report.changed += result["changed"]
        report.escalated_events += len(result["new_levels"])
        for lv in result["new_levels"]:
            report.levels[LEVEL_STATES[lv]] += 1

    def on_event(session: Session, event_id: int) -> None:
        event = _locked(session, CaseEvent, event_id)
        if event is None:
            return
        counts = send_notifications(session, event, channel=channel, settings=settings, calendar=calendar, now=now)
        report.sent += counts["sent"]
        report.dead += counts["dead"]
        report.pending += counts["pending"]

    if database is not None:
        with database.session() as session:
            report.cases, case_ids = _to_update(session, settings=settings, calendar=calendar, now=now)
        cases = run_items(case_ids, on_case, name="desk.sla_scan", key=str, database=database)
        with database.session() as session:
            event_ids = _unsent_event_ids(session, now)
        events = run_items(event_ids, on_event, name="desk.sla_notify", key=str, database=database)
    else:
        assert db is not None

        def in_savepoint(handler: Any) -> Any:
            def run(item: int) -> None:
                with db.begin_nested():
                    handler(db, item)

            return run

        report.cases, case_ids = _to_update(db, settings=settings, calendar=calendar, now=now)
        cases = run_items(case_ids, in_savepoint(on_case), name="desk.sla_scan", key=str)
        events = run_items(_unsent_event_ids(db, now), in_savepoint(on_event), name="desk.sla_notify", key=str)
    report.updated = cases.total
    report.failed_cases = cases.failed_keys
    report.failed_notifications = events.failed_keys
    return report


def sla_scan_job() -> dict[str, Any]:
    """The scheduled job: scan with the process settings and database."""
    settings = get_settings()
    report = sla_scan(settings=settings, database=get_database(settings))
    if report.escalated_events or report.sent or report.dead or report.failed_cases:
        log.info("desk.sla_scan: %s", report.to_dict())
    return report.to_dict()


# ---------------------------------------------------------------- intake left unfinished


def finish_intake_job() -> dict[str, Any]:
    """The scheduled job: record the outcome of cases acknowledged but left without one (desk.flows)."""
    settings = get_settings()
    database = get_database(settings)
    with database.session() as session:
        pending = intake.pending_intake_ids(db=session, received_before=utcnow() - flows.PENDING_GRACE, limit=1)
    if not pending:
        return {"total": 0}
    matcher = matcher_engine.Matcher(settings)
    try:
        report = flows.finish_pending(database=database, matcher=matcher, settings=settings)
    finally:
        matcher.close()
    return {"total": report.total, "succeeded": report.succeeded, "failed": report.failed_keys}
