"""News of a firm's own case (诉求): a reply, the resolution, a transfer or an approved extension reaches
the firm's inbox at once and its chosen channels through the outbox, once per timeline event and channel.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from core.config import Settings
from push.messages import CASE_PATH, link
from push.notices import firm_notice

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
    label, lead = CASE_NEWS[kind]
    url = link(base_url, CASE_PATH.format(id=case_id))
    lines = [f"{lead}。", f"工单号：{number}", f"诉求：{case_title}"]
    if department_name:
        lines.append(f"{'现承办部门' if kind == 'transferred' else '承办部门'}：{department_name}")
    if note:
        lines.append(f"{'办结答复' if kind == 'resolved' else '说明'}：{note}")
    lines.append(f"查看详情：{url}")
    return firm_notice(
        db=db,
        enterprise_id=enterprise_id,
        kind="case_update",
        dedupe_key=f"case-{case_id}-event-{event_id}",
        title=f"诉求{label}：{case_title}",
        body="\n".join(lines),
        url=url,
        payload={"case_id": case_id, "event_id": event_id, "event": kind, "number": number},
        now=now,
        settings=settings,
        at=at,
    )
