"""Fan-out: when a policy is published (or edited), decide which firms hear about it and write their
new-match rows into the outbox, exactly once per policy version.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Integer, String, bindparam, func, literal, null, select, true
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, selectinload

from catalog.models import Policy, PolicyStatus
from core.config import Settings, get_settings
from core.db import rowcount, table_of, upsert_insert, utcnow
from core.errors import InvalidState, NotFound
from matcher import batch as matcher_batch
from matcher import eligibility
from matcher import feedback as matcher_feedback
from matcher.eligibility import ELIGIBLE, LIKELY
from push.models import Delivery, PushPreference
from push.outbox import channel_row, insert_deliveries, recent_push_counts
from push.preferences import CHANNELS, policy_subscribers, preferences_for
from push.rules import due_at, over_weekly_cap, to_local

log = logging.getLogger(__name__)


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
    settings: Settings,
) -> int:
    """Write the rows of firms with preferences of their own or a likely match (subscribers): inbox
    plus a row per chosen channel, timed by frequency and quiet hours, capped per week."""
    if not targets:
        return 0
    firm_ids = [eid for eid, _ in targets]
    prefs = preferences_for(db, firm_ids)
    beyond_inbox = [eid for eid in firm_ids if eid in prefs and any(c != "inbox" for c in prefs[eid].channels or [])]
    pushed_recently = recent_push_counts(db, beyond_inbox, now)
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
        over_cap = bool(others) and over_weekly_cap(pushed_recently, eid, pref.weekly_cap)
        for channel in others:
            due = due_at(now, channel=channel, timing=pref, settings=settings)
            if over_cap:
                counts["over_cap"] += 1
            rows.append(channel_row(base, channel, now=now, due=due, over_cap=over_cap))
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
    settings: Settings | None = None,
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

    Times (the policy's "today", digest and quiet hours) follow `settings` (the app's when not given).
    """
    del matcher  # eligibility comes from the rules alone; stored match results are the matcher's concern
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    now = now or utcnow()
    settings = settings or get_settings()
    policy = db.scalar(
        select(Policy).where(Policy.id == policy_id).options(selectinload(Policy.categories), selectinload(Policy.tags))
    )
    if policy is None:
        raise NotFound("政策不存在", code="catalog.policy_not_found")
    if policy.status != PolicyStatus.published:
        raise InvalidState("只有已发布的政策可以推送", code="catalog.policy_not_published")
    ids, status = matcher_batch.judge_all(db=db, rules=policy.rules, today=to_local(now, settings).date())
    subscribers = policy_subscribers(db, policy)
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
            settings=settings,
        )
    log.info("fan-out of policy %s v%s: %s", policy.id, policy.version, counts)
    return counts
