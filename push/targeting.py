"""Targeted push (人工定向): staff pick firms by filter, preview the reach, and send one policy to them.

The selection is a SQL query over enterprises (region with sub-regions, industry code prefix, size
class, tags, valid qualifications, a policy's eligible list, hand-picked ids). It is walked in
keyset-paginated chunks of firm ids with their preferences joined in, so a selection of a million
firms never becomes a million ORM objects. Preview and send share that walk: the preview counts the
rows the send would write, the send writes them (per chunk, through `push.outbox.insert_deliveries`)
in the same transaction as the `ManualPush` record. Outbox rows of a targeted push carry kind
"manual" and dedupe key "manual-<id>", so delivering the same targeted push again creates nothing.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session

from auth.models import User
from catalog import service as catalog_service
from catalog.fields import SIZE_CLASSES
from catalog.models import Policy, PolicyStatus
from core import codes
from core.config import Settings, get_settings
from core.db import utcnow
from core.errors import FieldError, InvalidState, NotFound, ValidationFailed
from matcher import batch as matcher_batch
from matcher import feedback as matcher_feedback
from matcher.eligibility import ELIGIBLE, LIKELY
from profiles.models import Enterprise, EnterpriseQualification
from push.models import Delivery, ManualPush, PushPreference
from push.outbox import channel_row, insert_deliveries, recent_push_counts
from push.preferences import CHANNELS, DEFAULTS
from push.rules import due_at, next_digest_at, over_weekly_cap
from push.schemas import ManualPushIn, TargetFilters

CHUNK = 1000  # firms per step of the walk (one SELECT with preferences, one INSERT batch series)
SAMPLE_SIZE = 10
MAX_ENTERPRISE_IDS = 5000
KIND = "manual"


def dedupe_key(manual_push_id: int) -> str:
    """Return the outbox dedupe key of a targeted push's rows."""
    return f"manual-{manual_push_id}"


def mask_firm_name(name: str) -> str:
    """Mask the middle of a firm's name (中山**有限公司12): enough to recognise a sample, not to copy a list."""
    name = name or ""
    if len(name) <= 2:
        return name[:1] + "*"
    if len(name) <= 6:
        return name[0] + "**" + name[-1]
    return name[:2] + "**" + name[-6:]


# ---------------------------------------------------------------- the selection


@dataclass
class Selection:
    """A validated filter: the SQL clauses over `Enterprise` and the normalised values to store."""

    clauses: list[Any]
    normalized: dict[str, Any]


def _region_clause(code: str) -> Any:
    if code == codes.NATIONAL_REGION:
        return Enterprise.region_code.is_not(None)
    if code.endswith("0000"):
        return Enterprise.region_code.startswith(code[:2])
    if code.endswith("00"):
        return Enterprise.region_code.startswith(code[:4])
    return Enterprise.region_code == code


def build_selection(*, db: Session, filters: TargetFilters, today: dt.date | None = None) -> Selection:
    """Validate a filter and turn it into SQL clauses; every problem is reported with its field."""
    today = today or dt.date.today()
    errors: list[FieldError] = []
    clauses: list[Any] = []
    out: dict[str, Any] = {}

    regions = []
    for i, raw in enumerate(filters.region_codes):
        try:
            regions.append(codes.normalize_region_code(raw))
        except ValueError as exc:
            errors.append(FieldError(f"filters.region_codes[{i}]", str(exc)))
    if regions:
        regions = sorted(set(regions))
        clauses.append(or_(*[_region_clause(c) for c in regions]))
        out["region_codes"] = regions

    industries = []
    for i, raw in enumerate(filters.industry_codes):
        try:
            industries.append(codes.normalize_industry_code(raw))
        except ValueError as exc:
            errors.append(FieldError(f"filters.industry_codes[{i}]", str(exc)))
    if industries:
        industries = sorted(set(industries))
        clauses.append(or_(*[Enterprise.industry_code.startswith(c) for c in industries]))
        out["industry_codes"] = industries

    sizes = [s.strip().lower() for s in filters.size_classes if s.strip()]
    known_sizes = [code for code, _ in SIZE_CLASSES]
    for i, s in enumerate(sizes):
        if s not in known_sizes:
            errors.append(FieldError(f"filters.size_classes[{i}]", "企业规模应为 large、medium、small 或 micro"))
    if sizes:
        sizes = sorted(set(sizes) & set(known_sizes))
        clauses.append(Enterprise.size_class.in_(sizes))
        out["size_classes"] = sizes

    for name, values in (("tags", filters.tags), ("qualifications", filters.qualifications)):
        if not values:
            continue
        try:
            tags = catalog_service.resolve_tags(db=db, names=list(values), field=f"filters.{name}")
        except ValidationFailed as exc:
            errors.extend(exc.errors)
            continue
        for tag in tags:
            if name == "tags":
                clauses.append(Enterprise.id.in_(matcher_batch.tagged_firms_query(tag_id=tag.id)))
            else:
                clauses.append(
                    exists().where(
                        EnterpriseQualification.enterprise_id == Enterprise.id,
                        EnterpriseQualification.tag_id == tag.id,
                        or_(
                            EnterpriseQualification.valid_until_on.is_(None),
                            EnterpriseQualification.valid_until_on >= today,
                        ),
                    )
                )
        out[name] = [t.name for t in tags]

    if filters.eligible_for_policy_id is not None:
        statuses = sorted({s.strip() for s in filters.eligible_statuses if s.strip()})
        if not statuses or any(s not in (ELIGIBLE, LIKELY) for s in statuses):
            errors.append(FieldError("filters.eligible_statuses", "取值应为 eligible、likely 或二者"))
        elif db.get(Policy, filters.eligible_for_policy_id) is None:
            errors.append(FieldError("filters.eligible_for_policy_id", "政策不存在", "not_found"))
        elif not matcher_batch.policy_listed(db=db, policy_id=filters.eligible_for_policy_id):
            errors.append(
                FieldError(
                    "filters.eligible_for_policy_id", "该政策的符合条件企业名单正在生成，请稍后再试", "list_pending"
                )
            )
        else:
            clauses.append(
                Enterprise.id.in_(
                    matcher_batch.matched_firms_query(policy_id=filters.eligible_for_policy_id, statuses=statuses)
                )
            )
            out["eligible_for_policy_id"] = filters.eligible_for_policy_id
            out["eligible_statuses"] = statuses

    if filters.enterprise_ids:
        ids = sorted(set(filters.enterprise_ids))
        if len(ids) > MAX_ENTERPRISE_IDS:
            errors.append(FieldError("filters.enterprise_ids", f"人工勾选的企业最多 {MAX_ENTERPRISE_IDS} 家"))
        else:
            clauses.append(Enterprise.id.in_(ids))
            out["enterprise_ids"] = ids

    if errors:
        raise ValidationFailed(errors=errors)
    if not clauses:
        raise ValidationFailed(
            "请至少设置一个筛选条件",
            code="push.filters_required",
            errors=[
                FieldError(
                    "filters", "请至少设置一个筛选条件（地区、行业、规模、标签、资质、政策名单或企业）", "required"
                )
            ],
        )
    return Selection(clauses=clauses, normalized=out)


# ---------------------------------------------------------------- the walk


@dataclass
class Firm:
    """One selected firm with what its preferences say (defaults when it saved none)."""

    id: int
    name: str
    region_code: str | None
    industry_code: str | None
    size_class: str | None
    channels: list[str]
    frequency: str
    quiet_start: str
    quiet_end: str
    weekly_cap: int
    unsubscribed_all: bool
    addressed: frozenset[str] = frozenset()  # channels the firm gave an address for (email, phone, webhook URL)


def _walk(db: Session, selection: Selection, chunk: int | None = None) -> Iterator[list[Firm]]:
    """Yield the selected firms in id order, `chunk` (default CHUNK) at a time, preferences joined in.

    Keyset pagination on the firm id: each step is one SELECT, memory stays bounded by the chunk.
    """
    chunk = chunk or CHUNK
    cols = (
        Enterprise.id,
        Enterprise.name,
        Enterprise.region_code,
        Enterprise.industry_code,
        Enterprise.size_class,
        PushPreference.enterprise_id,
        PushPreference.channels,
        PushPreference.frequency,
        PushPreference.quiet_start,
        PushPreference.quiet_end,
        PushPreference.weekly_cap,
        PushPreference.unsubscribed_all,
        PushPreference.email,
        PushPreference.phone,
        PushPreference.webhook_url,
    )
    base = (
        select(*cols)
        .outerjoin(PushPreference, PushPreference.enterprise_id == Enterprise.id)
        .where(*selection.clauses)
        .order_by(Enterprise.id)
        .limit(chunk)
    )
    last = 0
    while True:
        rows = db.execute(base.where(Enterprise.id > last)).all()
        if not rows:
            return
        firms = []
        for eid, name, region, industry, size, pref_id, chans, freq, qs, qe, cap, unsub, mail, phone, hook in rows:
            has = pref_id is not None
            addressed = frozenset(c for c, a in (("email", mail), ("sms", phone), ("webhook", hook)) if a)
            firms.append(
                Firm(
                    id=eid,
                    name=name,
                    region_code=region,
                    industry_code=industry,
                    size_class=size,
                    channels=list(chans or []) if has else list(DEFAULTS["channels"]),
                    frequency=freq if has else DEFAULTS["frequency"],
                    quiet_start=qs if has else DEFAULTS["quiet_start"],
                    quiet_end=qe if has else DEFAULTS["quiet_end"],
                    weekly_cap=cap if has else DEFAULTS["weekly_cap"],
                    unsubscribed_all=bool(unsub) if has else False,
                    addressed=addressed,
                )
            )
        yield firms
        last = rows[-1][0]
        if len(rows) < chunk:
            return


def _already_pushed(db: Session, policy_id: int, firms: Sequence[Firm]) -> int:
    """Count firms of a chunk that already have an inbox message about the policy."""
    return (
        db.scalar(
            select(func.count(func.distinct(Delivery.enterprise_id))).where(
                Delivery.policy_id == policy_id,
                Delivery.channel == "inbox",
                Delivery.enterprise_id.in_([f.id for f in firms]),
            )
        )
        or 0
    )


def _text(policy: Policy, message: str | None) -> tuple[str, str]:
    title = f"政策推荐：{policy.title}"[:200]
    lines = [f"惠企服务平台向贵企业推荐政策《{policy.title}》。"]
    if message and message.strip():
        lines.append(message.strip())
    if policy.summary:
        lines.append(f"政策摘要：{policy.summary}")
    if policy.apply_end_on:
        end = policy.apply_end_on
        lines.append(f"申报截止：{end.year}年{end.month}月{end.day}日。")
    return title, "\n".join(lines)


@dataclass
class Plan:
    """What a targeted push does: counts, and (when sending) the rows written."""

    matched: int = 0
    enterprises: int = 0
    excluded_unsubscribed: int = 0
    excluded_not_relevant: int = 0
    already_pushed: int = 0
    over_cap: int = 0
    channels: Counter[str] = field(default_factory=Counter)
    # Why a channel reaches fewer firms, per channel: firms that did not choose it, chose it without an
    # address, are over their weekly cap, or get it only after their quiet hours (SMS).
    not_chosen: Counter[str] = field(default_factory=Counter)
    no_address: Counter[str] = field(default_factory=Counter)
    capped: Counter[str] = field(default_factory=Counter)
    quiet_hours: Counter[str] = field(default_factory=Counter)
    deliveries: int = 0
    created: int = 0
    sample: list[Firm] = field(default_factory=list)


def _published_policy(db: Session, policy_id: int) -> Policy:
    policy = db.get(Policy, policy_id)
    if policy is None:
        raise NotFound(
            "政策不存在", code="catalog.policy_not_found", errors=[FieldError("policy_id", "政策不存在", "not_found")]
        )
    if policy.status != PolicyStatus.published:
        raise InvalidState(
            "只有已发布的政策可以推送",
            code="catalog.policy_not_published",
            errors=[FieldError("policy_id", "只有已发布的政策可以推送", "invalid_state")],
        )
    return policy


def _channels(requested: Sequence[str]) -> list[str]:
    unknown = [c for c in requested if c not in CHANNELS]
    if unknown:
        raise ValidationFailed(
            errors=[
                FieldError("channels", f"不支持的推送方式：{'、'.join(unknown)}（可选 inbox、email、sms、webhook）")
            ]
        )
    # The inbox is the record of every push: always included.
    return ["inbox", *[c for c in CHANNELS[1:] if c in requested]]


def _run(
    db: Session,
    *,
    policy: Policy,
    selection: Selection,
    channels: Sequence[str],
    message: str | None,
    now: dt.datetime,
    base_url: str,
    manual_push_id: int | None,
    settings: Settings,
) -> Plan:
    """Walk the selection once; count what would be written, and write it when a push id is given."""
    plan = Plan()
    title, body = _text(policy, message)
    url = f"{base_url.rstrip('/')}/policies/{policy.id}"
    for firms in _walk(db, selection):
        plan.matched += len(firms)
        hidden = matcher_feedback.not_relevant_firms(
            db=db, policy_id=policy.id, enterprise_range=(firms[0].id, firms[-1].id)
        )
        targets = []
        for f in firms:
            if f.id in hidden:
                plan.excluded_not_relevant += 1
            elif f.unsubscribed_all:
                plan.excluded_unsubscribed += 1
            else:
                targets.append(f)
        if not targets:
            continue
        plan.enterprises += len(targets)
        plan.already_pushed += _already_pushed(db, policy.id, targets)
        if len(plan.sample) < SAMPLE_SIZE:
            plan.sample.extend(targets[: SAMPLE_SIZE - len(plan.sample)])
        wanted = {f.id: [c for c in channels if c != "inbox" and c in f.channels] for f in targets}
        recent = recent_push_counts(db, [eid for eid, chans in wanted.items() if chans], now)
        rows: list[dict[str, Any]] = []
        for f in targets:
            others = wanted[f.id]
            over_cap = bool(others) and over_weekly_cap(recent, f.id, f.weekly_cap)
            plan.channels["inbox"] += 1
            plan.deliveries += 1 + len(others)
            for channel in channels:
                if channel != "inbox" and channel not in f.channels:
                    plan.not_chosen[channel] += 1
            for channel in others:
                if channel not in f.addressed:
                    plan.no_address[channel] += 1
                if over_cap:
                    plan.over_cap += 1
                    plan.capped[channel] += 1
                else:
                    plan.channels[channel] += 1
                    if channel == "sms" and due_at(now, channel=channel, timing=f, settings=settings) > next_digest_at(
                        now, f.frequency, settings=settings
                    ):
                        plan.quiet_hours[channel] += 1
            if manual_push_id is None:
                continue
            base = {
                "enterprise_id": f.id,
                "policy_id": policy.id,
                # The dedupe key names the targeted push; version 0 keeps a re-delivery after an
                # edit of the policy from pushing the same firms twice.
                "policy_version": 0,
                "kind": KIND,
                "dedupe_key": dedupe_key(manual_push_id),
                "attempts": 0,
                "last_error": None,
                "title": title,
                "body": body,
                "url": url,
                "payload": {
                    "policy_id": policy.id,
                    "policy_title": policy.title,
                    "policy_version": policy.version,
                    "deadline": policy.apply_end_on.isoformat() if policy.apply_end_on else None,
                    "enterprise_id": f.id,
                    "manual_push_id": manual_push_id,
                },
                "created_at": now,
                "read_at": None,
                "clicked_at": None,
            }
            rows.append(base | {"channel": "inbox", "status": "sent", "next_attempt_at": now, "sent_at": now})
            for channel in others:
                due = now if over_cap else due_at(now, channel=channel, timing=f, settings=settings)
                rows.append(channel_row(base, channel, now=now, due=due, over_cap=over_cap))
        if rows:
            plan.created += insert_deliveries(db=db, rows=rows)
    return plan


def preview(
    *,
    db: Session,
    push_in: ManualPushIn,
    matcher: object | None = None,
    now: dt.datetime | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Count the firms and per-channel messages a targeted push would reach, writing no push records.

    With a matcher, a policy's eligible list used as a filter is first brought up to date (the same
    refresh the 免申即享 list does); without one the stored list is used.
    """
    now = now or utcnow()
    policy = _published_policy(db, push_in.policy_id)
    channels = _channels(push_in.channels)
    selection = build_selection(db=db, filters=push_in.filters, today=now.date())
    plan = _run(
        db,
        policy=policy,
        selection=selection,
        channels=channels,
        message=push_in.message,
        now=now,
        base_url="",
        manual_push_id=None,
        settings=settings or get_settings(),
    )
    return _preview_out(policy, channels, plan)


def _preview_out(policy: Policy, channels: Sequence[str], plan: Plan) -> dict[str, Any]:
    return {
        "policy_id": policy.id,
        "policy_title": policy.title,
        "matched": plan.matched,
        "enterprises": plan.enterprises,
        "excluded_unsubscribed": plan.excluded_unsubscribed,
        "excluded_not_relevant": plan.excluded_not_relevant,
        "already_pushed": plan.already_pushed,
        "channels": {c: plan.channels.get(c, 0) for c in channels},
        "over_cap": plan.over_cap,
        "reasons": {
            c: {
                "not_chosen": plan.not_chosen.get(c, 0),
                "no_address": plan.no_address.get(c, 0),
                "over_cap": plan.capped.get(c, 0),
                "quiet_hours": plan.quiet_hours.get(c, 0),
            }
            for c in channels
            if c != "inbox"
        },
        "deliveries": plan.deliveries,
        "sample": [
            {
                "name": mask_firm_name(f.name),
                "region_code": f.region_code,
                "industry_code": f.industry_code,
                "size_class": f.size_class,
            }
            for f in plan.sample
        ],
    }


def send(
    *,
    db: Session,
    push_in: ManualPushIn,
    created_by_id: int | None,
    matcher: object | None = None,
    now: dt.datetime | None = None,
    base_url: str = "",
    settings: Settings | None = None,
) -> tuple[ManualPush, dict[str, Any]]:
    """Record a targeted push and write its outbox rows in the caller's transaction.

    Returns the record and the counts (the preview's, plus `created`: rows really inserted).
    """
    now = now or utcnow()
    policy = _published_policy(db, push_in.policy_id)
    channels = _channels(push_in.channels)
    selection = build_selection(db=db, filters=push_in.filters, today=now.date())
    row = ManualPush(
        policy_id=policy.id,
        filters=selection.normalized,
        channels=channels,
        enterprise_count=0,
        note=(push_in.note or "").strip() or None,
        message=(push_in.message or "").strip() or None,
        created_by_id=created_by_id,
        created_at=now,
    )
    db.add(row)
    db.flush()
    plan = _run(
        db,
        policy=policy,
        selection=selection,
        channels=channels,
        message=push_in.message,
        now=now,
        base_url=base_url,
        manual_push_id=row.id,
        settings=settings or get_settings(),
    )
    row.enterprise_count = plan.enterprises
    db.flush()
    return row, _preview_out(policy, channels, plan) | {"created": plan.created}


def redeliver(
    *,
    db: Session,
    manual_push_id: int,
    now: dt.datetime | None = None,
    base_url: str = "",
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Deliver a recorded targeted push again from its stored filter; rows that exist are not written twice.

    Firms that newly match the filter get it; firms already pushed get nothing new. Returns the counts.
    """
    now = now or utcnow()
    row = db.get(ManualPush, manual_push_id)
    if row is None:
        raise NotFound("定向推送记录不存在", code="push.manual_push_not_found")
    policy = _published_policy(db, row.policy_id)
    selection = build_selection(db=db, filters=TargetFilters(**(row.filters or {})), today=now.date())
    plan = _run(
        db,
        policy=policy,
        selection=selection,
        channels=list(row.channels or ["inbox"]),
        message=row.message,
        now=now,
        base_url=base_url,
        manual_push_id=row.id,
        settings=settings or get_settings(),
    )
    db.flush()
    return _preview_out(policy, list(row.channels or ["inbox"]), plan) | {"created": plan.created}


def list_manual_pushes(
    *,
    db: Session,
    policy_id: int | None = None,
    manual_push_id: int | None = None,
    offset: int = 0,
    limit: int = 20,
) -> tuple[list[dict[str, Any]], int]:
    """Return targeted pushes newest first, with who sent them and how their rows fared."""
    q = select(ManualPush, Policy.title, User.display_name).join(Policy, Policy.id == ManualPush.policy_id)
    q = q.outerjoin(User, User.id == ManualPush.created_by_id)
    count_q = select(func.count()).select_from(ManualPush)
    for column, value in ((ManualPush.policy_id, policy_id), (ManualPush.id, manual_push_id)):
        if value is not None:
            q = q.where(column == value)
            count_q = count_q.where(column == value)
    total = db.scalar(count_q) or 0
    rows = db.execute(q.order_by(ManualPush.created_at.desc(), ManualPush.id.desc()).offset(offset).limit(limit)).all()
    keys = [dedupe_key(mp.id) for mp, _, _ in rows]
    stats: dict[str, dict[str, int]] = {k: {} for k in keys}
    if keys:
        for key, status, n, opened, clicked in db.execute(
            select(
                Delivery.dedupe_key,
                Delivery.status,
                func.count(),
                func.count(Delivery.read_at),
                func.count(Delivery.clicked_at),
            )
            .where(Delivery.kind == KIND, Delivery.dedupe_key.in_(keys))
            .group_by(Delivery.dedupe_key, Delivery.status)
        ):
            s = stats[key]
            s[status] = s.get(status, 0) + n
            s["opened"] = s.get("opened", 0) + opened
            s["clicked"] = s.get("clicked", 0) + clicked
    out = []
    for mp, title, creator in rows:
        out.append(
            {
                "id": mp.id,
                "policy_id": mp.policy_id,
                "policy_title": title,
                "filters": mp.filters or {},
                "channels": mp.channels,
                "enterprise_count": mp.enterprise_count,
                "note": mp.note,
                "message": mp.message,
                "created_by_id": mp.created_by_id,
                "created_by_name": creator,
                "created_at": mp.created_at,
                "deliveries": stats.get(dedupe_key(mp.id), {}),
            }
        )
    return out, total
