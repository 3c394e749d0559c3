"""Engagement events for the push funnel: a firm viewed a policy, saw it in the calculator, opened
or clicked a push about it.

Kept tiny and free of the rest of push (it imports only push.models), so catalog and matcher can
record events through a late import without pulling in channels, the sender or the matcher.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from core import security
from core.config import Settings
from core.db import utcnow
from core.errors import FieldError, NotFound
from push.models import Delivery, PolicyEvent

log = logging.getLogger(__name__)

EVENT_KINDS = ("viewed", "calculator", "opened", "clicked")
EVENT_LABELS = {"viewed": "查看政策", "calculator": "政策计算器", "opened": "打开推送", "clicked": "点击推送链接"}
# The same firm doing the same thing with the same policy again within this window is one event:
# reloading a page should not grow the table, and the funnel counts distinct firms anyway.
REPEAT_WINDOW = dt.timedelta(minutes=30)


def record_events(
    *,
    db: Session,
    enterprise_id: int,
    policy_ids: Iterable[int],
    kind: str,
    delivery_id: int | None = None,
    now: dt.datetime | None = None,
) -> int:
    """Record that a firm did `kind` with each policy; repeats within REPEAT_WINDOW are skipped.

    Returns how many events were written (one INSERT for all of them).
    """
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    now = now or utcnow()
    wanted = sorted(set(policy_ids))
    if not wanted:
        return 0
    recent = set(
        db.scalars(
            select(PolicyEvent.policy_id).where(
                PolicyEvent.policy_id.in_(wanted),
                PolicyEvent.kind == kind,
                PolicyEvent.enterprise_id == enterprise_id,
                PolicyEvent.at > now - REPEAT_WINDOW,
            )
        )
    )
    rows: list[dict[str, Any]] = [
        {"enterprise_id": enterprise_id, "policy_id": pid, "kind": kind, "delivery_id": delivery_id, "at": now}
        for pid in wanted
        if pid not in recent
    ]
    if rows:
        db.execute(insert(PolicyEvent), rows)
    return len(rows)


def record_seen(*, db: Session, enterprise_id: int, policy_ids: Iterable[int], kind: str) -> int:
    """Record that a firm saw policies (a page view, calculator results); never fails the request."""
    # Page views are counted on GET requests, whose SQLite transaction is a deferred reader: when a
    # background job commits between its read and this write, SQLite refuses the write. Counting a
    # view is not worth failing the page for, so the write is isolated in a savepoint and skipped.
    try:
        with db.begin_nested():
            return record_events(db=db, enterprise_id=enterprise_id, policy_ids=policy_ids, kind=kind)
    except OperationalError as exc:
        log.warning("%s event of firm %s not recorded: %s", kind, enterprise_id, exc.orig)
        return 0


# ---------------------------------------------------------------- tracked links


CLICK_VERSION = "c1"
_CLICK_SIGNATURE_CHARS = 20  # 80 bits: forging only fakes a click, and SMS links must stay short


def _click_signature(settings: Settings, delivery_id: int) -> str:
    return security.sign(settings=settings, message=f"click:{CLICK_VERSION}:{delivery_id}")[:_CLICK_SIGNATURE_CHARS]


def click_token(*, settings: Settings, delivery_id: int) -> str:
    """Return the signed token of a push's tracked link."""
    return f"{delivery_id}.{_click_signature(settings, delivery_id)}"


def click_url(*, settings: Settings, delivery_id: int, base_url: str = "") -> str:
    """Return a push's tracked link: following it records the click and lands on the policy page."""
    return f"{base_url.rstrip('/')}/api/v1/push/r/{click_token(settings=settings, delivery_id=delivery_id)}"


def verify_click_token(*, settings: Settings, token: str) -> int | None:
    """Return the delivery id of an authentic token, None for a forged or malformed one."""
    head, _, signature = (token or "").partition(".")
    if not head.isdigit() or len(head) > 18 or not signature:
        return None
    expected = _click_signature(settings, int(head))
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        return None
    return int(head)


def _landing(delivery: Delivery, base_url: str) -> str:
    url = (delivery.url or "").strip()
    # Only our own kinds of links: absolute http(s) or site-relative; anything else lands on the policy.
    if url.startswith(("http://", "https://")) or (url.startswith("/") and not url.startswith("//")):
        return url
    if delivery.policy_id is not None:
        return f"{base_url.rstrip('/')}/policies/{delivery.policy_id}"
    return base_url.rstrip("/") + "/"


def record_click(
    *, db: Session, settings: Settings, token: str, base_url: str = "", now: dt.datetime | None = None
) -> str:
    """Record that a push's link was followed (a click also counts as opening it); return where to go.

    The first click sets the row's clicked_at (and read_at when unset); every click is a "clicked"
    event for the funnel, repeats within REPEAT_WINDOW collapsed.
    """
    delivery_id = verify_click_token(settings=settings, token=token)
    delivery = db.get(Delivery, delivery_id) if delivery_id is not None else None
    if delivery is None:
        raise NotFound(
            "链接无效或已失效", code="push.invalid_link", errors=[FieldError("token", "链接无效或已被篡改", "invalid")]
        )
    now = now or utcnow()
    # Only a column still unset is written, so two simultaneous clicks keep the first moment.
    for column in (Delivery.clicked_at, Delivery.read_at):
        db.execute(
            update(Delivery)
            .where(Delivery.id == delivery.id, column.is_(None))
            .values({column: now})
            .execution_options(synchronize_session=False)
        )
    db.refresh(delivery, ["clicked_at", "read_at"])
    if delivery.policy_id is not None:
        record_events(
            db=db,
            enterprise_id=delivery.enterprise_id,
            policy_ids=[delivery.policy_id],
            kind="clicked",
            delivery_id=delivery.id,
            now=now,
        )
    return _landing(delivery, base_url)


# What counts as a firm having seen a policy: its page, or a push about it opened or followed.
SEEN_KINDS = ("viewed", "opened", "clicked")


def has_seen(*, db: Session, enterprise_id: int, policy_id: int) -> bool:
    """Tell whether a firm has viewed a policy's page or opened a push about it."""
    return (
        db.scalar(
            select(PolicyEvent.id)
            .where(
                PolicyEvent.enterprise_id == enterprise_id,
                PolicyEvent.policy_id == policy_id,
                PolicyEvent.kind.in_(SEEN_KINDS),
            )
            .limit(1)
        )
        is not None
    )
