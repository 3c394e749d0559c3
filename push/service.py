"""Push operations: preferences, subscriptions, fan-out into the delivery outbox, the sender, the inbox
and signed one-click unsubscribe.

The outbox (`Delivery`) is written in the caller's transaction with INSERT … ON CONFLICT DO NOTHING
on its unique key (firm, policy, kind, version, dedupe key, channel), so deciding to push twice for
the same policy version creates nothing new and a crash before commit loses the decision and its
rows together. The sender picks due rows, calls a channel once per row and records the outcome;
retries follow `push.channels.backoff`.
"""

from __future__ import annotations

import datetime as dt
import hmac
import itertools
import json
import logging
import re
import secrets
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    func,
    literal,
    not_,
    null,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, selectinload

from catalog.models import Category, Policy, PolicyStatus
from core import security
from core.config import Settings
from core.db import rowcount, table_of, upsert_insert, utcnow
from core.errors import Conflict, FieldError, InvalidState, NotFound, ValidationFailed
from core.netguard import AddressGuard, Unresolvable, UnsafeAddress
from core.text import normalize
from matcher import batch as matcher_batch
from matcher import eligibility
from matcher import feedback as matcher_feedback
from matcher.eligibility import ELIGIBLE, LIKELY
from profiles.models import Enterprise
from push import events
from push.channels import (
    WEBHOOK_FORMATS,
    Channel,
    DeliveryResult,
    EmailRecipient,
    Message,
    SmsRecipient,
    WebhookRecipient,
    backoff,
    is_webhook_format,
    message_kind,
    normalize_phone,
)
from push.models import Delivery, PushPreference, Subscription
from push.schemas import PreferencesIn, SubscriptionIn

log = logging.getLogger(__name__)

CHANNELS = ("inbox", "email", "sms", "webhook")
FREQUENCIES = ("instant", "daily", "weekly")
DIGEST_FREQUENCIES = ("daily", "weekly")  # new matches beyond the inbox wait for the digest (push.notify)
DEFAULTS: dict[str, Any] = {
    "channels": ["inbox"],
    "frequency": "instant",
    "quiet_start": "22:00",
    "quiet_end": "08:00",
    "weekly_cap": 10,
    "webhook_format": "huiqi",
    "unsubscribed_all": False,
}
MAX_ATTEMPTS = 12
WEEKLY_CAP_MAX = 100
OVER_CAP = "超过每周推送上限"
DIGEST_HOUR = 9  # daily and weekly digests go out at 09:00 local time (weekly: on Mondays)
LOCAL_TZ = ZoneInfo("Asia/Shanghai")
TOKEN_VERSION = "v1"
# Why a row could not be handed to a channel; the job leaves unconfigured channels out of `channels`.
CHANNEL_NOT_CONFIGURED = {
    "email": "邮件服务器（SMTP）未配置，无法发送邮件",
    "sms": "短信网关未配置，无法发送短信",
    "webhook": "Webhook 通道未配置",
}

_HHMM = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")


# ---------------------------------------------------------------- preferences


def _default_preference(db: Session, enterprise_id: int) -> PushPreference:
    firm = db.get(Enterprise, enterprise_id)
    if firm is None:
        raise NotFound("企业不存在", code="enterprise_not_found")
    return PushPreference(
        enterprise_id=enterprise_id,
        channels=list(DEFAULTS["channels"]),
        frequency=DEFAULTS["frequency"],
        quiet_start=DEFAULTS["quiet_start"],
        quiet_end=DEFAULTS["quiet_end"],
        weekly_cap=DEFAULTS["weekly_cap"],
        webhook_format=DEFAULTS["webhook_format"],
        unsubscribed_all=False,
        email=firm.contact_email,
        phone=firm.contact_phone,
    )


def get_preferences(*, db: Session, enterprise_id: int) -> PushPreference:
    """Return a firm's preferences, or unsaved defaults (contacts from its profile) when it has none."""
    row = db.get(PushPreference, enterprise_id)
    return row if row is not None else _default_preference(db, enterprise_id)


def _preferences_for(db: Session, enterprise_ids: Sequence[int]) -> dict[int, PushPreference]:
    """Return preferences for many firms at once, defaults (not added to the session) for the rest."""
    out: dict[int, PushPreference] = {}
    for chunk in _chunks(list(enterprise_ids), 500):
        out.update(
            {
                p.enterprise_id: p
                for p in db.scalars(select(PushPreference).where(PushPreference.enterprise_id.in_(chunk)))
            }
        )
        missing = [eid for eid in chunk if eid not in out]
        if missing:
            for eid, email, phone in db.execute(
                select(Enterprise.id, Enterprise.contact_email, Enterprise.contact_phone).where(
                    Enterprise.id.in_(missing)
                )
            ):
                out[eid] = PushPreference(
                    enterprise_id=eid,
                    channels=list(DEFAULTS["channels"]),
                    frequency=DEFAULTS["frequency"],
                    quiet_start=DEFAULTS["quiet_start"],
                    quiet_end=DEFAULTS["quiet_end"],
                    weekly_cap=DEFAULTS["weekly_cap"],
                    webhook_format=DEFAULTS["webhook_format"],
                    unsubscribed_all=False,
                    email=email,
                    phone=phone,
                )
    return out


def _blank(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def address_guard(settings: Settings) -> AddressGuard:
    """Return the guard firm webhook URLs are checked with (public addresses plus HUIQI_WEBHOOK_ALLOW_HOSTS)."""
    return AddressGuard(settings.webhook_allow_hosts)


def update_preferences(
    *, db: Session, enterprise_id: int, prefs_in: PreferencesIn, guard: AddressGuard | None = None
) -> PushPreference:
    """Change a firm's preferences (only the fields given), checking channels against their contacts.

    A new webhook URL is resolved and refused when it points at a loopback, private, link-local, multicast,
    reserved or unspecified address (unless `guard`'s allow-list admits it); deliveries check it again.
    """
    current = get_preferences(db=db, enterprise_id=enterprise_id)
    data = prefs_in.model_dump(exclude_unset=True)
    merged = {
        name: data[name] if name in data else getattr(current, name)
        for name in (
            "channels",
            "frequency",
            "quiet_start",
            "quiet_end",
            "weekly_cap",
            "email",
            "phone",
            "webhook_url",
            "webhook_secret",
            "webhook_format",
            "unsubscribed_all",
        )
    }
    errors: list[FieldError] = []
    channels = merged["channels"] if merged["channels"] is not None else list(DEFAULTS["channels"])
    unknown = [c for c in channels if c not in CHANNELS]
    if unknown:
        errors.append(
            FieldError("channels", f"不支持的推送方式：{'、'.join(unknown)}（可选 inbox、email、sms、webhook）")
        )
    # The inbox is the record of every push; it cannot be switched off, only the other channels.
    channels = ["inbox", *[c for c in CHANNELS[1:] if c in channels]]
    if merged["frequency"] not in FREQUENCIES:
        errors.append(FieldError("frequency", "推送频率应为 instant（即时）、daily（每日汇总）或 weekly（每周汇总）"))
    for name in ("quiet_start", "quiet_end"):
        if merged[name] is None or not _HHMM.fullmatch(str(merged[name])):
            errors.append(FieldError(name, "时间格式应为 HH:MM（24 小时制），例如 22:00"))
    cap = merged["weekly_cap"]
    if cap is None or not 0 <= cap <= WEEKLY_CAP_MAX:
        errors.append(FieldError("weekly_cap", f"每周推送上限应为 0–{WEEKLY_CAP_MAX} 之间的整数"))
    email = _blank(merged["email"])
    if email is not None and not _EMAIL.fullmatch(email):
        errors.append(FieldError("email", "邮箱地址格式不正确"))
    elif email is None and "email" in channels:
        errors.append(FieldError("email", "选择邮件推送时必须填写接收邮箱", "required"))
    phone = _blank(merged["phone"])
    if phone is not None:
        normalised = normalize_phone(phone)
        if normalised is None:
            errors.append(FieldError("phone", "手机号格式不正确（应为 11 位大陆手机号）"))
        else:
            phone = normalised
    elif "sms" in channels:
        errors.append(FieldError("phone", "选择短信推送时必须填写手机号", "required"))
    webhook_url = _blank(merged["webhook_url"])
    if webhook_url is not None:
        parts = urllib.parse.urlsplit(webhook_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            errors.append(FieldError("webhook_url", "Webhook 地址须以 http:// 或 https:// 开头并包含主机名"))
        elif "webhook_url" in data:
            try:
                (guard or AddressGuard()).check_url(webhook_url)
            except UnsafeAddress as exc:
                errors.append(FieldError("webhook_url", f"Webhook {exc}", "unsafe_address"))
            except Unresolvable:
                pass  # a name that does not resolve yet; every delivery resolves and checks it again
            except ValueError:
                errors.append(FieldError("webhook_url", "Webhook 地址格式不正确"))
    elif "webhook" in channels:
        errors.append(FieldError("webhook_url", "选择 Webhook 推送时必须填写地址", "required"))
    fmt = merged["webhook_format"] or "huiqi"
    if fmt not in WEBHOOK_FORMATS:
        errors.append(FieldError("webhook_format", "Webhook 格式应为 huiqi、wecom、dingtalk 或 feishu"))
    if errors:
        raise ValidationFailed(errors=errors)
    secret = _blank(merged["webhook_secret"])
    if webhook_url is not None and secret is None and fmt == "huiqi":
        # Huiqi-format deliveries are always signed; a firm that gives no secret gets one.
        secret = "whsec_" + secrets.token_urlsafe(24)
    row = db.get(PushPreference, enterprise_id)
    if row is None:
        row = PushPreference(enterprise_id=enterprise_id)
        db.add(row)
    row.channels = channels
    row.frequency = merged["frequency"]
    row.quiet_start = merged["quiet_start"]
    row.quiet_end = merged["quiet_end"]
    row.weekly_cap = cap
    row.email = email
    row.phone = phone
    row.webhook_url = webhook_url
    row.webhook_secret = secret
    row.webhook_format = fmt
    row.unsubscribed_all = bool(merged["unsubscribed_all"])
    db.flush()
    return row


# ---------------------------------------------------------------- subscriptions


def list_subscriptions(*, db: Session, enterprise_id: int) -> list[Subscription]:
    """Return a firm's subscriptions, newest first."""
    return list(
        db.scalars(
            select(Subscription)
            .where(Subscription.enterprise_id == enterprise_id)
            .order_by(Subscription.created_at.desc(), Subscription.id.desc())
        )
    )


def create_subscription(*, db: Session, enterprise_id: int, subscription_in: SubscriptionIn) -> Subscription:
    """Follow a category (by code) or a keyword; following an unsubscribed one again reactivates it."""
    kind = subscription_in.kind
    value = normalize(subscription_in.value).strip()
    if kind == "category":
        if db.scalar(select(Category.id).where(Category.code == value)) is None:
            raise ValidationFailed(errors=[FieldError("value", f"政策分类不存在：{value}", "not_found")])
    elif kind == "keyword":
        if not 2 <= len(value) <= 20:
            raise ValidationFailed(errors=[FieldError("value", "关键词应为 2–20 个字", "length")])
    else:
        raise ValidationFailed(errors=[FieldError("kind", "订阅类型应为 category（政策分类）或 keyword（关键词）")])
    existing = db.scalar(
        select(Subscription).where(
            Subscription.enterprise_id == enterprise_id, Subscription.kind == kind, Subscription.value == value
        )
    )
    if existing is not None:
        if existing.active:
            raise Conflict(
                "已订阅该内容", code="subscription_exists", errors=[FieldError("value", "已订阅该内容", "taken")]
            )
        existing.active = True
        db.flush()
        return existing
    row = Subscription(enterprise_id=enterprise_id, kind=kind, value=value, active=True)
    db.add(row)
    db.flush()
    return row


def get_subscription(*, db: Session, enterprise_id: int, subscription_id: int) -> Subscription:
    """Return a firm's own subscription; another firm's is reported as absent."""
    row = db.get(Subscription, subscription_id)
    if row is None or row.enterprise_id != enterprise_id:
        raise NotFound("订阅不存在", code="subscription_not_found")
    return row


def delete_subscription(*, db: Session, enterprise_id: int, subscription_id: int) -> None:
    """Stop following a category or keyword."""
    db.delete(get_subscription(db=db, enterprise_id=enterprise_id, subscription_id=subscription_id))
    db.flush()


# ---------------------------------------------------------------- timing


def _hhmm(value: str) -> dt.time:
    hours, minutes = value.split(":")
    return dt.time(int(hours), int(minutes))


def quiet_until(when: dt.datetime, *, quiet_start: str, quiet_end: str, tz: dt.tzinfo = LOCAL_TZ) -> dt.datetime:
    """Return `when` if it is outside the quiet hours, else the end of the quiet period (in UTC)."""
    start, end = _hhmm(quiet_start), _hhmm(quiet_end)
    if start == end:
        return when
    local = when.astimezone(tz)
    t = local.time()
    if start > end:  # spans midnight, e.g. 22:00–08:00
        if t >= start:
            resume = dt.datetime.combine(local.date() + dt.timedelta(days=1), end, tzinfo=tz)
        elif t < end:
            resume = dt.datetime.combine(local.date(), end, tzinfo=tz)
        else:
            return when
    elif start <= t < end:
        resume = dt.datetime.combine(local.date(), end, tzinfo=tz)
    else:
        return when
    return resume.astimezone(dt.UTC)


def next_digest_at(when: dt.datetime, frequency: str, *, tz: dt.tzinfo = LOCAL_TZ) -> dt.datetime:
    """Return when a daily (next 09:00) or weekly (next Monday 09:00) digest goes out; `when` for instant."""
    if frequency not in ("daily", "weekly"):
        return when
    local = when.astimezone(tz)
    at = dt.datetime.combine(local.date(), dt.time(DIGEST_HOUR), tzinfo=tz)
    if frequency == "daily":
        if at <= local:
            at += dt.timedelta(days=1)
    else:
        at += dt.timedelta(days=(7 - local.weekday()) % 7)
        if at <= local:
            at += dt.timedelta(days=7)
    return at.astimezone(dt.UTC)


def _aware(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; every stored timestamp is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


# ---------------------------------------------------------------- outbox writes


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def insert_deliveries(*, db: Session, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert outbox rows, ignoring those whose unique key already exists; return how many were new.

    One executemany per set of keys the rows carry (the statement is compiled once, absent
    columns take their defaults); its rowcount is what was really inserted, on both drivers.
    """
    stmt = upsert_insert(db, table_of(Delivery)).on_conflict_do_nothing()
    by_keys: dict[frozenset[str], list[Mapping[str, Any]]] = {}
    for row in rows:
        by_keys.setdefault(frozenset(row), []).append(row)
    return sum(
        max(rowcount(db.execute(stmt.execution_options(preserve_rowcount=True), group)), 0)
        for group in by_keys.values()
    )


def _recent_push_counts(db: Session, enterprise_ids: Sequence[int], since: dt.datetime) -> dict[int, int]:
    """Count pushes beyond the inbox per firm since a moment (one push through two channels counts once)."""
    counts: dict[int, int] = {}
    for chunk in _chunks(list(enterprise_ids), 500):
        pushes = db.execute(
            select(
                Delivery.enterprise_id, Delivery.policy_id, Delivery.kind, Delivery.policy_version, Delivery.dedupe_key
            )
            .where(
                Delivery.enterprise_id.in_(list(chunk)),
                Delivery.channel != "inbox",
                Delivery.status != "skipped",
                Delivery.created_at >= since,
            )
            .distinct()
        )
        for eid, *_ in pushes:
            counts[eid] = counts.get(eid, 0) + 1
    return counts


def _subscribers(db: Session, policy: Policy) -> dict[int, int]:
    """Return firm → subscription id for firms following one of the policy's categories or keywords."""
    codes = set()
    for cat in policy.categories:
        codes.add(cat.code)
        if cat.parent is not None:
            codes.add(cat.parent.code)  # following a 大类 covers its 小类
    text = normalize(" ".join(filter(None, [policy.title, policy.summary, policy.search_text])))
    out: dict[int, int] = {}
    for sub in db.scalars(select(Subscription).where(Subscription.active.is_(True)).order_by(Subscription.id)):
        if (sub.kind == "category" and sub.value in codes) or (
            sub.kind == "keyword" and sub.value and sub.value in text
        ):
            out.setdefault(sub.enterprise_id, sub.id)
    return out


def _new_match_text(policy: Policy, status: str) -> tuple[str, str]:
    title = f"新政策匹配：{policy.title}"
    if status == ELIGIBLE:
        lines = [f"贵企业符合《{policy.title}》的申报条件。"]
    else:
        lines = [f"贵企业可能符合《{policy.title}》的申报条件（部分条件有待核实），该政策属于您订阅的内容。"]
    if policy.apply_end_on:
        end = policy.apply_end_on
        lines.append(f"申报截止：{end.year}年{end.month}月{end.day}日。")
    return title[:200], "\n".join(lines)


FAN_OUT_CHUNK = 20_000  # firms per unit of work when the caller commits between chunks (`checkpoint`)


def _id_array(db: Session, query: Any) -> np.ndarray:
    return np.fromiter(db.scalars(query), dtype=np.int64)


def _new_match_payload(policy: Policy, enterprise_id: int, status: str, subscription_id: int | None) -> dict[str, Any]:
    return {
        "policy_id": policy.id,
        "policy_title": policy.title,
        "deadline": policy.apply_end_on.isoformat() if policy.apply_end_on else None,
        "enterprise_id": enterprise_id,
        "match_status": status,
        # Pushed because of a subscription: its unsubscribe link stops that subscription only.
        "subscription_id": subscription_id,
    }


def _insert_inbox_rows(db: Session, *, policy: Policy, enterprise_ids: np.ndarray, now: dt.datetime, url: str) -> int:
    """Write eligible firms' inbox rows in one INSERT … SELECT … ON CONFLICT DO NOTHING; return how many were new.

    For firms on default preferences (inbox only, nothing to decide per firm). The ids travel as
    one parameter — a JSON array on SQLite, an integer array on PostgreSQL — and the database
    builds each row and its JSON payload, so a chunk of firms costs one statement.
    """
    if not len(enterprise_ids):
        return 0
    ids = [int(i) for i in enterprise_ids]
    if db.get_bind().dialect.name == "sqlite":
        source = func.json_each(json.dumps(ids)).table_valued("value")
        build_json = func.json_object
    else:
        ids_param = bindparam("firm_ids", ids, type_=postgresql.ARRAY(Integer))
        source = func.unnest(ids_param).table_valued("value").render_derived()
        build_json = func.json_build_object

    def text_(value: str | None) -> Any:
        # Typed binds (psycopg casts them), so PostgreSQL knows what json_build_object is given.
        return null() if value is None else literal(value, String)

    def number(value: int) -> Any:
        return literal(value, Integer)

    title, body = _new_match_text(policy, ELIGIBLE)
    stamp = literal(now, Delivery.created_at.type)
    # The keys and order of `_new_match_payload`, built by the database.
    parts = {
        "policy_id": number(policy.id),
        "policy_title": text_(policy.title),
        "deadline": text_(policy.apply_end_on.isoformat() if policy.apply_end_on else None),
        "enterprise_id": source.c.value,
        "match_status": text_(ELIGIBLE),
        "subscription_id": null(),
    }
    values = {
        "enterprise_id": source.c.value,
        "policy_id": number(policy.id),
        "policy_version": number(policy.version),
        "kind": text_("new_match"),
        "dedupe_key": text_(""),
        "channel": text_("inbox"),
        "status": text_("sent"),
        "attempts": number(0),
        "next_attempt_at": stamp,
        "last_error": null(),
        "title": text_(title),
        "body": text_(body),
        "url": text_(url),
        "payload": build_json(*itertools.chain.from_iterable((text_(k), v) for k, v in parts.items())),
        "created_at": stamp,
        "sent_at": stamp,
        "read_at": null(),
        "clicked_at": null(),
    }
    # WHERE true: without a WHERE, SQLite would read ON CONFLICT as the join constraint of the FROM.
    rows = select(*values.values()).select_from(source).where(true())
    stmt = upsert_insert(db, table_of(Delivery)).from_select(list(values), rows).on_conflict_do_nothing()
    # One statement's rowcount is the number of rows really inserted (conflicts are not counted).
    return max(rowcount(db.execute(stmt.execution_options(preserve_rowcount=True))), 0)


def _insert_personal_rows(
    db: Session,
    *,
    policy: Policy,
    targets: Sequence[tuple[int, str]],
    subscribers: Mapping[int, int],
    now: dt.datetime,
    url: str,
    counts: dict[str, int],
) -> int:
    """Write the rows of firms with preferences of their own or a likely match (subscribers): inbox
    plus a row per chosen channel, timed by frequency and quiet hours, capped per week."""
    if not targets:
        return 0
    firm_ids = [eid for eid, _ in targets]
    prefs = _preferences_for(db, firm_ids)
    beyond_inbox = [eid for eid in firm_ids if eid in prefs and any(c != "inbox" for c in prefs[eid].channels or [])]
    pushed_recently = _recent_push_counts(db, beyond_inbox, now - dt.timedelta(days=7))
    rows: list[dict[str, Any]] = []
    for eid, status in targets:
        pref = prefs.get(eid)
        if pref is None:
            continue
        title, body = _new_match_text(policy, status)
        base = {
            "enterprise_id": eid,
            "policy_id": policy.id,
            "policy_version": policy.version,
            "kind": "new_match",
            "dedupe_key": "",
            "attempts": 0,
            "last_error": None,
            "title": title,
            "body": body,
            "url": url,
            "payload": _new_match_payload(policy, eid, status, subscribers.get(eid) if status == LIKELY else None),
            "created_at": now,
            "read_at": None,
            "clicked_at": None,
        }
        rows.append(base | {"channel": "inbox", "status": "sent", "next_attempt_at": now, "sent_at": now})
        others = [c for c in pref.channels or [] if c in CHANNELS and c != "inbox"]
        over_cap = bool(others) and pushed_recently.get(eid, 0) >= pref.weekly_cap
        if others and not over_cap:
            pushed_recently[eid] = pushed_recently.get(eid, 0) + 1
        for channel in others:
            due = next_digest_at(now, pref.frequency)
            if channel == "sms":
                due = quiet_until(due, quiet_start=pref.quiet_start, quiet_end=pref.quiet_end)
            if over_cap:
                counts["over_cap"] += 1
                rows.append(
                    base
                    | {
                        "channel": channel,
                        "status": "skipped",
                        "next_attempt_at": now,
                        "sent_at": None,
                        "last_error": OVER_CAP,
                    }
                )
            else:
                rows.append(base | {"channel": channel, "status": "pending", "next_attempt_at": due, "sent_at": None})
    return insert_deliveries(db=db, rows=rows)


def fan_out_policy(
    *,
    db: Session,
    policy_id: int,
    matcher: object | None = None,
    now: dt.datetime | None = None,
    base_url: str = "",
    chunk_size: int = FAN_OUT_CHUNK,
    checkpoint: Callable[[], None] | None = None,
) -> dict[str, int]:
    """Decide who hears about a published policy's current version and write their outbox rows, exactly once.

    Eligible firms are pushed; likely ones only when they follow one of the policy's categories or
    keywords. Firms that called the policy "not relevant" or unsubscribed from everything are left
    out, and so are firms told about an earlier version. Each firm gets an inbox row (delivered at
    once) plus a pending row per other chosen channel.

    Set-based: eligibility is judged for all firms at once from the rules (`matcher.batch.judge_all`;
    `matcher` is not needed and only accepted for callers that pass one), the decision is array
    arithmetic, and firms on default preferences are written by one INSERT … SELECT per chunk.
    Firms are written in chunks of `chunk_size` in id order; `checkpoint`, when given, is called
    before each chunk is written, and the caller may commit there (the fan-out job does, then
    opens the chunk's transaction with a write of its own). A firm's rows go in one chunk, and
    firms whose inbox row for this version exists are skipped, so a run after a crash finishes
    what is left.
    """
    del matcher  # eligibility comes from the rules alone; stored match results are the matcher's concern
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    now = now or utcnow()
    policy = db.scalar(
        select(Policy).where(Policy.id == policy_id).options(selectinload(Policy.categories), selectinload(Policy.tags))
    )
    if policy is None:
        raise NotFound("政策不存在", code="policy_not_found")
    if policy.status != PolicyStatus.published:
        raise InvalidState("只有已发布的政策可以推送", code="policy_not_published")
    ids, status = matcher_batch.judge_all(db=db, rules=policy.rules, today=now.astimezone(LOCAL_TZ).date())
    subscribers = _subscribers(db, policy)
    inbox_rows = select(Delivery.enterprise_id).where(
        Delivery.policy_id == policy.id, Delivery.kind == "new_match", Delivery.channel == "inbox"
    )
    # A firm told about an earlier version already knows the policy; a later edit is a change, not news.
    told = _id_array(db, inbox_rows.where(Delivery.policy_version < policy.version))
    done = _id_array(db, inbox_rows.where(Delivery.policy_version == policy.version))  # an earlier run's work
    hidden = np.fromiter(matcher_feedback.not_relevant_firms(db=db, policy_id=policy.id), dtype=np.int64)
    unsubscribed = _id_array(db, select(PushPreference.enterprise_id).where(PushPreference.unsubscribed_all.is_(True)))
    personal = _id_array(db, select(PushPreference.enterprise_id))

    likely = status == eligibility.STATUS_CODES[LIKELY]
    chosen = (status == eligibility.STATUS_CODES[ELIGIBLE]) | (
        likely & np.isin(ids, np.fromiter(subscribers, dtype=np.int64))
    )
    firms, likely = ids[chosen], likely[chosen]
    counts = {
        "policy_id": policy.id,
        "policy_version": policy.version,
        "enterprises": 0,
        "created": 0,
        "skipped_feedback": 0,
        "skipped_unsubscribed": 0,
        "over_cap": 0,
        "skipped_already_told": 0,
    }
    keep = np.ones(len(firms), dtype=bool)
    for key, excluded in (
        ("skipped_feedback", hidden),
        ("skipped_already_told", told),
        ("skipped_unsubscribed", unsubscribed),
    ):
        drop = keep & np.isin(firms, excluded)
        counts[key] = int(drop.sum())
        keep &= ~drop
    counts["enterprises"] = int(keep.sum())
    keep &= ~np.isin(firms, done)
    firms, likely = firms[keep], likely[keep]
    # Firms with preferences of their own, or pushed as a subscriber's likely match, get rows one by one.
    one_by_one = likely | np.isin(firms, personal)
    url = f"{base_url.rstrip('/')}/policies/{policy.id}"
    for start in range(0, len(firms), chunk_size):
        part = slice(start, start + chunk_size)
        chunk, chunk_likely, chunk_personal = firms[part], likely[part], one_by_one[part]
        if checkpoint is not None:
            checkpoint()
        counts["created"] += _insert_inbox_rows(
            db, policy=policy, enterprise_ids=chunk[~chunk_personal], now=now, url=url
        )
        counts["created"] += _insert_personal_rows(
            db,
            policy=policy,
            targets=[
                (int(eid), LIKELY if is_likely else ELIGIBLE)
                for eid, is_likely in zip(chunk[chunk_personal], chunk_likely[chunk_personal], strict=True)
            ],
            subscribers=subscribers,
            now=now,
            url=url,
            counts=counts,
        )
    log.info("fan-out of policy %s v%s: %s", policy.id, policy.version, counts)
    return counts


# ---------------------------------------------------------------- the sender


def _recipient(channel: str, pref: PushPreference, firm_name: str) -> tuple[Any, str | None]:
    """Return the channel's recipient from a firm's preferences, or None and why not."""
    if channel == "email":
        return (
            (EmailRecipient(address=pref.email, name=firm_name), None) if pref.email else (None, "企业未设置接收邮箱")
        )
    if channel == "sms":
        return (SmsRecipient(phone=pref.phone), None) if pref.phone else (None, "企业未设置接收短信的手机号")
    if channel == "webhook":
        if not pref.webhook_url:
            return None, "企业未设置 Webhook 地址"
        stored, fmt = pref.webhook_format, None
        if stored:
            if not is_webhook_format(stored):
                return None, f"不支持的 Webhook 格式：{stored}"
            fmt = stored
        return WebhookRecipient(url=pref.webhook_url, secret=pref.webhook_secret or "", format=fmt), None
    return None, f"不支持的推送方式：{channel}"


def _record(row: Delivery, result: DeliveryResult, now: dt.datetime) -> str:
    """Apply one attempt's outcome to its row: sent, failed with a later retry, or dead."""
    row.attempts += 1
    row.last_error = None if result.ok else result.detail[:500]
    if result.ok:
        row.status, row.sent_at = "sent", now
    elif result.retryable and row.attempts < MAX_ATTEMPTS:
        wait = backoff(row.attempts)
        if result.retry_after is not None:
            wait = max(wait, result.retry_after)
        row.status, row.next_attempt_at = "failed", now + wait
    else:
        row.status = "dead"
    return row.status


def held_for_digest() -> ColumnElement[bool]:
    """SQL condition: a new-match row beyond the inbox of a firm on a daily or weekly digest.

    Such rows are not sent one by one: `push.notify.send_digest` folds them into the firm's next
    digest. A firm that switches back to instant gets its waiting rows sent individually.
    """
    return and_(
        Delivery.kind == "new_match",
        Delivery.channel != "inbox",
        Delivery.enterprise_id.in_(
            select(PushPreference.enterprise_id).where(PushPreference.frequency.in_(DIGEST_FREQUENCIES))
        ),
    )


def send_due(
    *,
    db: Session,
    channels: Mapping[str, Channel],
    settings: Settings,
    now: dt.datetime | None = None,
    limit: int = 500,
    base_url: str = "",
    before_sending: Callable[[], None] | None = None,
) -> dict[str, int]:
    """Send the outbox rows that are due through their channels and record each outcome; return counts.

    `before_sending`, when given, is called once everything is read and before the first send; the
    job commits there on SQLite, so the outcomes are written in a transaction that starts by writing
    (a SQLite transaction that read, then writes after another connection committed, fails).
    """
    now = now or utcnow()
    q = (
        select(Delivery)
        .where(
            Delivery.status.in_(["pending", "failed"]),
            Delivery.next_attempt_at <= now,
            Delivery.channel != "inbox",
            not_(held_for_digest()),
        )
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
    )
    if db.get_bind().dialect.name == "postgresql":
        # Two senders never pick the same row; each takes what the other has not locked.
        q = q.with_for_update(skip_locked=True)
    rows = list(db.scalars(q))
    counts = {"picked": len(rows), "sent": 0, "failed": 0, "dead": 0, "skipped": 0}
    if not rows:
        return counts
    firm_ids = sorted({r.enterprise_id for r in rows})
    prefs = _preferences_for(db, firm_ids)
    names = dict(db.execute(select(Enterprise.id, Enterprise.name).where(Enterprise.id.in_(firm_ids))).tuples().all())
    dropped = matcher_feedback.not_relevant_pairs(
        db=db, pairs=((r.enterprise_id, r.policy_id) for r in rows if r.policy_id is not None)
    )
    if before_sending is not None:
        before_sending()
    for row in rows:
        if (row.enterprise_id, row.policy_id) in dropped:
            # The firm called the policy "not relevant" after the decision to push it.
            row.status, row.last_error = "skipped", "企业已反馈该政策不相关"
            counts["skipped"] += 1
            continue
        try:
            status = _send_one(
                row, channels, prefs.get(row.enterprise_id), names.get(row.enterprise_id, ""), settings, now, base_url
            )
        except Exception as exc:  # a channel must not raise; if one does, the row is retried, not the batch lost
            log.exception("delivery %s raised", row.id)
            status = _record(row, DeliveryResult(ok=False, retryable=True, detail=f"发送时发生内部错误：{exc}"), now)
        counts[status] = counts.get(status, 0) + 1
    db.flush()
    return counts


def _send_one(
    row: Delivery,
    channels: Mapping[str, Channel],
    pref: PushPreference | None,
    firm_name: str,
    settings: Settings,
    now: dt.datetime,
    base_url: str,
) -> str:
    if pref is None or pref.unsubscribed_all or row.channel not in (pref.channels or []):
        # The firm changed its mind after the decision: record why the row was not sent.
        row.status, row.last_error = "skipped", "企业已退订或取消了该推送方式"
        return "skipped"
    channel = channels.get(row.channel)
    if channel is None:
        return _record(
            row,
            DeliveryResult(
                ok=False,
                retryable=False,
                detail=CHANNEL_NOT_CONFIGURED.get(row.channel, f"推送方式未配置：{row.channel}"),
            ),
            now,
        )
    recipient, why = _recipient(row.channel, pref, firm_name)
    if recipient is None:
        return _record(row, DeliveryResult(ok=False, retryable=False, detail=why or "接收方未设置"), now)
    sub_id = (row.payload or {}).get("subscription_id")
    scope = f"sub:{sub_id}" if sub_id else "all"
    message = Message(
        kind=message_kind(row.kind),
        title=row.title,
        body_text=row.body,
        # A tracked link: following it records the click (the funnel's "opened") and lands on row.url.
        url=events.click_url(settings=settings, delivery_id=row.id, base_url=base_url)
        if row.url or row.policy_id is not None
        else "",
        idempotency_key=f"d{row.id}",
        unsubscribe_url=unsubscribe_url(
            settings=settings, enterprise_id=row.enterprise_id, scope=scope, base_url=base_url
        ),
        data=dict(row.payload or {}),
    )
    return _record(row, channel.send(message, recipient), now)


# ---------------------------------------------------------------- one-click unsubscribe


def _token_message(enterprise_id: int, scope: str) -> str:
    return f"unsubscribe:{TOKEN_VERSION}:{enterprise_id}:{scope}"


def unsubscribe_token(*, settings: Settings, enterprise_id: int, scope: str) -> str:
    """Return a signed token that unsubscribes a firm from everything ("all") or one subscription ("sub:<id>")."""
    if scope != "all" and not re.fullmatch(r"sub:\d+", scope):
        raise ValueError(f"scope must be 'all' or 'sub:<id>', got {scope!r}")
    signature = security.sign(settings=settings, message=_token_message(enterprise_id, scope))
    return f"{TOKEN_VERSION}.{enterprise_id}.{scope}.{signature}"


def verify_unsubscribe_token(*, settings: Settings, token: str) -> tuple[int, str] | None:
    """Return (enterprise id, scope) of an authentic token, or None for a forged or malformed one."""
    parts = (token or "").strip().split(".")
    if len(parts) != 4 or parts[0] != TOKEN_VERSION or not parts[1].isdigit():
        return None
    _, firm, scope, signature = parts
    if scope != "all" and not re.fullmatch(r"sub:\d+", scope):
        return None
    expected = security.sign(settings=settings, message=_token_message(int(firm), scope))
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        return None
    return int(firm), scope


def unsubscribe_url(*, settings: Settings, enterprise_id: int, scope: str, base_url: str = "") -> str:
    """Return the one-click unsubscribe link for a firm and scope."""
    token = unsubscribe_token(settings=settings, enterprise_id=enterprise_id, scope=scope)
    return f"{base_url.rstrip('/')}/api/v1/push/unsubscribe?token={urllib.parse.quote(token, safe='')}"


def _verified(settings: Settings, token: str) -> tuple[int, str]:
    verified = verify_unsubscribe_token(settings=settings, token=token)
    if verified is None:
        raise ValidationFailed(
            "退订链接无效或已被篡改",
            code="invalid_unsubscribe_token",
            errors=[FieldError("token", "退订链接无效或已被篡改")],
        )
    return verified


def describe_unsubscribe(*, db: Session, settings: Settings, token: str) -> str:
    """Say in Chinese what a signed unsubscribe link would stop, changing nothing (the confirmation page)."""
    enterprise_id, scope = _verified(settings, token)
    if scope == "all":
        return "退订惠企的全部政策推送（站内信仍会保留）"
    sub = db.get(Subscription, int(scope.removeprefix("sub:")))
    if sub is None or sub.enterprise_id != enterprise_id:
        raise NotFound("订阅不存在或已删除", code="subscription_not_found")
    label = "政策分类" if sub.kind == "category" else "关键词"
    return f"退订{label}“{sub.value}”的推送"


def unsubscribe(*, db: Session, settings: Settings, token: str) -> dict[str, Any]:
    """Apply a signed unsubscribe link: stop one subscription or every push beyond the inbox; idempotent."""
    enterprise_id, scope = _verified(settings, token)
    if scope == "all":
        pref = db.get(PushPreference, enterprise_id)
        if pref is None:
            pref = _default_preference(db, enterprise_id)
            db.add(pref)
        pref.unsubscribed_all = True
        # What was decided but not yet sent is not sent either.
        db.execute(
            update(Delivery)
            .where(
                Delivery.enterprise_id == enterprise_id,
                Delivery.status.in_(["pending", "failed"]),
                Delivery.channel != "inbox",
            )
            .values(status="skipped", last_error="企业已退订")
        )
        message = "您已退订惠企的全部政策推送。如需恢复，请登录后在“推送设置”中重新开启。"
    else:
        sub = db.get(Subscription, int(scope.removeprefix("sub:")))
        if sub is None or sub.enterprise_id != enterprise_id:
            raise NotFound("订阅不存在或已删除", code="subscription_not_found")
        sub.active = False
        label = "政策分类" if sub.kind == "category" else "关键词"
        message = f"您已退订{label}“{sub.value}”的推送。"
    db.flush()
    return {"enterprise_id": enterprise_id, "scope": scope, "message": message}


# ---------------------------------------------------------------- inbox


def _inbox_query(enterprise_id: int) -> Select[tuple[Delivery]]:
    return select(Delivery).where(Delivery.enterprise_id == enterprise_id, Delivery.channel == "inbox")


def unread_count(*, db: Session, enterprise_id: int) -> int:
    """Return how many inbox messages a firm has not read."""
    q = _inbox_query(enterprise_id).where(Delivery.read_at.is_(None))
    return db.scalar(select(func.count()).select_from(q.subquery())) or 0


def list_inbox(
    *, db: Session, enterprise_id: int, unread_only: bool = False, offset: int = 0, limit: int = 20
) -> tuple[list[Delivery], int, int]:
    """Return a page of a firm's inbox, newest first, with the total and the unread count."""
    q = _inbox_query(enterprise_id)
    if unread_only:
        q = q.where(Delivery.read_at.is_(None))
    total = db.scalar(select(func.count()).select_from(q.subquery())) or 0
    rows = list(db.scalars(q.order_by(Delivery.created_at.desc(), Delivery.id.desc()).offset(offset).limit(limit)))
    return rows, total, unread_count(db=db, enterprise_id=enterprise_id)


def mark_read(
    *,
    db: Session,
    enterprise_id: int,
    delivery_ids: Sequence[int] = (),
    all: bool = False,
    now: dt.datetime | None = None,
) -> int:
    """Mark some (or all) of a firm's unread inbox messages read; return how many changed."""
    if not all and not delivery_ids:
        return 0
    stmt = update(Delivery).where(
        Delivery.enterprise_id == enterprise_id, Delivery.channel == "inbox", Delivery.read_at.is_(None)
    )
    if not all:
        stmt = stmt.where(Delivery.id.in_(list(delivery_ids)))
    result = db.execute(stmt.values(read_at=now or utcnow()).execution_options(synchronize_session="fetch"))
    return max(rowcount(result) or 0, 0)
