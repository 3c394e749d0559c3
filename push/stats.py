"""Delivery log and statistics for staff: the outbox as a filtered list, counts per day / channel /
policy, and a policy's funnel pushed → opened → viewed → calculator → applied.

Everything is one grouped SQL query per question (no row is loaded to be counted in Python). Days
are local days in the configured time zone (HUIQI_TIMEZONE, `push.rules.local_tz`): PostgreSQL
converts with the zone itself, SQLite shifts by the zone's current UTC offset, so the two agree for
zones without daylight saving such as the default Asia/Shanghai.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, case, func, literal, select, union
from sqlalchemy.orm import Session

from catalog.models import Policy
from core.config import Settings, get_settings
from core.errors import FieldError, NotFound, ValidationFailed
from matcher import feedback as matcher_feedback
from profiles.models import Enterprise
from push.models import Delivery, PolicyEvent
from push.preferences import CHANNELS
from push.rules import local_day_start, local_tz

STATUSES = ("pending", "sent", "failed", "dead", "skipped")
GROUPS = ("day", "channel", "policy")
CHANNEL_LABELS = {"inbox": "站内信", "email": "邮件", "sms": "短信", "webhook": "Webhook"}
FUNNEL_STAGES = (
    ("pushed", "收到推送"),
    ("opened", "打开推送"),
    ("viewed", "查看政策"),
    ("calculator", "使用政策计算器"),
    ("applied", "标记已申报"),
)
MAX_KIND_LENGTH = 20


@dataclass(frozen=True)
class DeliveryFilters:
    """Which outbox rows a log or statistic covers; dates are local calendar days, both inclusive."""

    policy_id: int | None = None
    enterprise_id: int | None = None
    channel: str | None = None
    status: str | None = None
    kind: str | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None

    def validate(self) -> None:
        """Raise ValidationFailed naming each bad field."""
        errors = []
        if self.channel is not None and self.channel not in CHANNELS:
            errors.append(FieldError("channel", "推送方式应为 inbox、email、sms 或 webhook"))
        if self.status is not None and self.status not in STATUSES:
            errors.append(FieldError("status", "状态应为 pending、sent、failed、dead 或 skipped"))
        if self.kind is not None and (not self.kind.strip() or len(self.kind) > MAX_KIND_LENGTH):
            errors.append(FieldError("kind", f"推送类型应为 1–{MAX_KIND_LENGTH} 个字符"))
        if self.date_from and self.date_to and self.date_from > self.date_to:
            errors.append(FieldError("date_from", "开始日期不能晚于结束日期"))
        if errors:
            raise ValidationFailed(errors=errors)


def _where(q: Select[Any], f: DeliveryFilters, settings: Settings) -> Select[Any]:
    f.validate()
    if f.policy_id is not None:
        q = q.where(Delivery.policy_id == f.policy_id)
    if f.enterprise_id is not None:
        q = q.where(Delivery.enterprise_id == f.enterprise_id)
    if f.channel is not None:
        q = q.where(Delivery.channel == f.channel)
    if f.status is not None:
        q = q.where(Delivery.status == f.status)
    if f.kind is not None:
        q = q.where(Delivery.kind == f.kind.strip())
    if f.date_from is not None:
        q = q.where(Delivery.created_at >= local_day_start(f.date_from, settings))
    if f.date_to is not None:
        q = q.where(Delivery.created_at < local_day_start(f.date_to + dt.timedelta(days=1), settings))
    return q


def list_deliveries(
    *, db: Session, filters: DeliveryFilters, offset: int = 0, limit: int = 20, settings: Settings | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Return a page of outbox rows, newest first, with firm name and policy title, and the total."""
    settings = settings or get_settings()
    total = db.scalar(_where(select(func.count()).select_from(Delivery), filters, settings)) or 0
    q = (
        select(Delivery, Enterprise.name, Policy.title)
        .join(Enterprise, Enterprise.id == Delivery.enterprise_id)
        .outerjoin(Policy, Policy.id == Delivery.policy_id)
    )
    q = (
        _where(q, filters, settings)
        .order_by(Delivery.created_at.desc(), Delivery.id.desc())
        .offset(offset)
        .limit(limit)
    )
    items = []
    for d, name, title in db.execute(q):
        items.append(
            {
                "id": d.id,
                "enterprise_id": d.enterprise_id,
                "enterprise_name": name,
                "policy_id": d.policy_id,
                "policy_title": title,
                "policy_version": d.policy_version,
                "kind": d.kind,
                "dedupe_key": d.dedupe_key,
                "channel": d.channel,
                "status": d.status,
                "attempts": d.attempts,
                "last_error": d.last_error,
                "title": d.title,
                "created_at": d.created_at,
                "sent_at": d.sent_at,
                "read_at": d.read_at,
                "clicked_at": d.clicked_at,
            }
        )
    return items, total


def _local_day(db: Session, settings: Settings) -> Any:
    """SQL expression of a delivery's local calendar day as YYYY-MM-DD."""
    tz = local_tz(settings)
    if db.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone(str(tz), Delivery.created_at), "YYYY-MM-DD")
    offset = dt.datetime.now(tz).utcoffset() or dt.timedelta()
    hours = int(offset.total_seconds() // 3600)
    return func.strftime("%Y-%m-%d", Delivery.created_at, f"{hours:+d} hours")


def _counts() -> list[Any]:
    def status(name: str) -> Any:
        return func.sum(case((Delivery.status == name, 1), else_=0))

    return [
        func.count().label("total"),
        *[status(s).label(s) for s in STATUSES],
        func.count(Delivery.read_at).label("opened"),
        func.count(Delivery.clicked_at).label("clicked"),
    ]


def _row(key: str, label: str, values: Any) -> dict[str, Any]:
    return {
        "key": key,
        "label": label,
        **{name: int(getattr(values, name) or 0) for name in ("total", *STATUSES, "opened", "clicked")},
    }


def delivery_stats(
    *, db: Session, filters: DeliveryFilters, group_by: str = "day", settings: Settings | None = None
) -> dict[str, Any]:
    """Count outbox rows by status, opened and clicked, per local day, channel or policy, plus totals."""
    settings = settings or get_settings()
    errors = []
    if group_by not in GROUPS:
        errors.append(FieldError("group_by", "分组方式应为 day（按日）、channel（按推送方式）或 policy（按政策）"))
    try:
        filters.validate()
    except ValidationFailed as exc:
        errors.extend(exc.errors)
    if errors:
        raise ValidationFailed(errors=errors)
    if group_by == "day":
        key = _local_day(db, settings)
    elif group_by == "channel":
        key = Delivery.channel
    else:
        key = Delivery.policy_id
    q = (
        _where(select(key.label("key"), *_counts()).select_from(Delivery), filters, settings)
        .group_by(key)
        .order_by(key)
    )
    grouped = db.execute(q).all()
    titles: dict[int, str] = {}
    if group_by == "policy":
        ids = [r.key for r in grouped if r.key is not None]
        if ids:
            titles = dict(db.execute(select(Policy.id, Policy.title).where(Policy.id.in_(ids))).tuples().all())
    rows = []
    for r in grouped:
        if group_by == "day":
            label = str(r.key)
        elif group_by == "channel":
            label = CHANNEL_LABELS.get(r.key, r.key)
        else:
            label = titles.get(r.key, "（与具体政策无关）") if r.key is not None else "（与具体政策无关）"
        rows.append(_row("" if r.key is None else str(r.key), label, r))
    totals = db.execute(_where(select(*_counts()).select_from(Delivery), filters, settings)).one()
    return {"group_by": group_by, "rows": rows, "totals": _row("total", "合计", totals)}


def funnel(*, db: Session, policy_id: int) -> dict[str, Any]:
    """Return a policy's funnel in distinct firms: pushed, opened, viewed, ran the calculator, marked applied.

    Each stage counts every firm that reached it, and separately those of them that were pushed the
    policy (`after_push`, whose share of the pushed firms is `rate`).

    - pushed: a push about the policy was delivered (status sent, any channel or kind);
    - opened: a push about it was read or its link followed (read_at / clicked_at, or an opened /
      clicked event);
    - viewed: the firm's user opened the policy page; calculator: the policy came up for the firm
      in the policy calculator;
    - applied: the firm marked the policy applied (any time; feedback is append-only).
    """
    policy = db.get(Policy, policy_id)
    if policy is None:
        raise NotFound("政策不存在", code="catalog.policy_not_found")
    firm = Delivery.enterprise_id
    stages: dict[str, Any] = {
        "pushed": select(firm).where(Delivery.policy_id == policy_id, Delivery.status == "sent"),
        "opened": union(
            select(firm).where(
                Delivery.policy_id == policy_id, (Delivery.read_at.is_not(None)) | (Delivery.clicked_at.is_not(None))
            ),
            select(PolicyEvent.enterprise_id).where(
                PolicyEvent.policy_id == policy_id, PolicyEvent.kind.in_(["opened", "clicked"])
            ),
        ),
        "viewed": select(PolicyEvent.enterprise_id).where(
            PolicyEvent.policy_id == policy_id, PolicyEvent.kind == "viewed"
        ),
        "calculator": select(PolicyEvent.enterprise_id).where(
            PolicyEvent.policy_id == policy_id, PolicyEvent.kind == "calculator"
        ),
        "applied": matcher_feedback.firms_with_action_query(policy_id=policy_id, action="applied"),
    }
    pushed_ids = stages["pushed"]
    columns = []
    for name, _ in FUNNEL_STAGES:
        sub = stages[name].subquery()
        col = sub.c[0]
        columns.append(select(func.count(func.distinct(col))).scalar_subquery().label(name))
        reached = select(func.count(func.distinct(col))).where(col.in_(pushed_ids)).scalar_subquery()
        columns.append(reached.label(f"{name}_after"))
    values = db.execute(select(literal(1), *columns)).one()
    pushed = int(values.pushed or 0)
    out = []
    for name, label in FUNNEL_STAGES:
        after = int(getattr(values, f"{name}_after") or 0)
        out.append(
            {
                "stage": name,
                "label": label,
                "enterprises": int(getattr(values, name) or 0),
                "after_push": after,
                "rate": round(after / pushed, 4) if pushed else None,
            }
        )
    return {"policy_id": policy.id, "policy_title": policy.title, "stages": out}


def seen_counts(*, db: Session, policy_ids: list[int], kind: str = "viewed") -> dict[int, int]:
    """Return policy → number of distinct firms with an engagement event of `kind` (viewed, calculator…)."""
    if not policy_ids:
        return {}
    rows = db.execute(
        select(PolicyEvent.policy_id, func.count(func.distinct(PolicyEvent.enterprise_id)))
        .where(PolicyEvent.policy_id.in_(sorted(set(policy_ids))), PolicyEvent.kind == kind)
        .group_by(PolicyEvent.policy_id)
    )
    return {int(pid): int(n) for pid, n in rows}
