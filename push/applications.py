"""News of a firm's applications (申报进度) and 免申即享 payouts: the inbox at once and the firm's chosen
channels through the outbox, once per status change (or payout) and channel."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from core.config import Settings
from push.messages import APPLICATIONS_PATH, link
from push.notices import firm_notice

APPLICATION_KIND = "application"
EXEMPT_KIND = "exempt_payout"


def _wan(amount: float) -> str:
    """Format 万元 without trailing zeros: 12.5, 30."""
    return f"{amount:.2f}".rstrip("0").rstrip(".")


def application_notice(
    *,
    db: Session,
    enterprise_id: int,
    application_id: int,
    event_id: int,
    policy_id: int,
    policy_title: str,
    status: str,
    status_label: str,
    note: str | None,
    amount: float | None,
    paid_on: dt.date | None,
    now: dt.datetime,
    settings: Settings,
    base_url: str = "",
    at: dt.datetime | None = None,
) -> int:
    """Tell a firm its application moved to a new status (with the amount when paid, the reason when refused)."""
    url = link(base_url, f"{APPLICATIONS_PATH}/{application_id}")
    lines = [f"您申报的政策“{policy_title}”状态更新为：{status_label}。"]
    if status == "paid" and amount is not None:
        lines.append(f"兑现金额：{_wan(amount)} 万元" + (f"（{paid_on.isoformat()}）" if paid_on else ""))
    if note:
        lines.append(f"{'原因' if status == 'rejected' else '说明'}：{note}")
    lines.append(f"查看申报进度：{url}")
    title = (
        f"已为您兑现 {_wan(amount)} 万元：{policy_title}"
        if status == "paid" and amount is not None
        else f"申报{status_label}：{policy_title}"
    )
    return firm_notice(
        db=db,
        enterprise_id=enterprise_id,
        kind=APPLICATION_KIND,
        dedupe_key=f"application-{application_id}-event-{event_id}",
        title=title,
        body="\n".join(lines),
        url=url,
        payload={"application_id": application_id, "event_id": event_id, "policy_id": policy_id, "status": status},
        now=now,
        settings=settings,
        at=at,
    )


def exempt_payout_notice(
    *,
    db: Session,
    enterprise_id: int,
    entry_id: int,
    policy_id: int,
    policy_title: str,
    amount: float,
    paid_on: dt.date | None,
    now: dt.datetime,
    settings: Settings,
    base_url: str = "",
    at: dt.datetime | None = None,
) -> int:
    """Tell a firm a 免申即享 policy paid it: "已为您兑现 X 万元", no application needed."""
    url = link(base_url, APPLICATIONS_PATH)
    lines = [
        f"已为您兑现 {_wan(amount)} 万元。",
        f"政策：{policy_title}（免申即享，无需申报）",
    ]
    if paid_on:
        lines.append(f"兑现日期：{paid_on.isoformat()}")
    lines.append(f"查看详情：{url}")
    return firm_notice(
        db=db,
        enterprise_id=enterprise_id,
        kind=EXEMPT_KIND,
        dedupe_key=f"exempt-{entry_id}-paid",
        title=f"已为您兑现 {_wan(amount)} 万元：{policy_title}",
        body="\n".join(lines),
        url=url,
        payload={"exempt_entry_id": entry_id, "policy_id": policy_id, "amount": amount},
        now=now,
        settings=settings,
        at=at,
    )
