"""News of a firm's own case (诉求): a reply, the resolution, a transfer or an approved extension reaches
the firm's inbox at once and its chosen channels through the outbox, once per timeline event and channel.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from core.config import Settings
from push import outbox, preferences, rules
from push.messages import CASE_PATH, link
from push.outbox import insert_deliveries
from push.scheduled import base_row, channel_rows

CASE_NEWS = {
    "replied": ("收到答复", "承办部门答复了您的诉求"),
    "resolved": ("已办结", "您的诉求已办结，请查看办结答复并评价"),
    "transferred": ("已转办", "您的诉求已转交其他部门办理"),
    "extension_approved": ("办理延期", "您的诉求办理时限已延长"),
}


def case_update_notice(
    *,
    db: Session,
    enterprise_id: int,
    case_id: int,
    event_id: int,
    kind: str,
    number: str,
    case_title: str,
    note: str | None,
    department_name: str | None,
    now: dt.datetime,
    settings: Settings,
    base_url: str = "",
    at: dt.datetime | None = None,
) -> int:
    """Tell a firm of news of its case (reply, resolution, transfer, delay): its inbox at once and its
    chosen channels through the outbox, linking to the case; once per timeline event and channel.

    Returns the rows written (0 when the firm unsubscribed from everything or was told already).
    """
    if kind not in CASE_NEWS:
        return 0
    pref = preferences.get_preferences(db=db, enterprise_id=enterprise_id)
    if pref.unsubscribed_all:
        return 0
    label, lead = CASE_NEWS[kind]
    url = link(base_url, CASE_PATH.format(id=case_id))
    lines = [f"{lead}。", f"工单号：{number}", f"诉求：{case_title}"]
    if department_name:
        lines.append(f"{'现承办部门' if kind == 'transferred' else '承办部门'}：{department_name}")
    if note:
        lines.append(f"{'办结答复' if kind == 'resolved' else '说明'}：{note}")
    lines.append(f"查看详情：{url}")
    # Something long past (an import, the demo's history) is recorded in the inbox at its time, not sent out.
    when = rules.aware(at) if at is not None else now
    past = now - when > dt.timedelta(days=1)
    base = base_row(
        enterprise_id=enterprise_id,
        policy_id=None,
        policy_version=0,
        kind="case_update",
        dedupe_key=f"case-{case_id}-event-{event_id}",
        title=f"诉求{label}：{case_title}"[:200],
        body="\n".join(lines),
        url=url,
        payload={"case_id": case_id, "event_id": event_id, "event": kind, "number": number},
        now=when if past else now,
    )
    if past:
        rows = channel_rows(base=base, pref=pref, now=when, pushed_recently={}, settings=settings)[:1]
        return insert_deliveries(db=db, rows=rows)
    pushed = outbox.recent_push_counts(db, [enterprise_id], now)
    return insert_deliveries(
        db=db, rows=channel_rows(base=base, pref=pref, now=now, pushed_recently=pushed, settings=settings)
    )
