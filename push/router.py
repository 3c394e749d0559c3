"""HTTP routes of push: the in-app inbox, preferences, subscriptions, one-click unsubscribe, fan-out now."""

from __future__ import annotations

import datetime as dt
import html
import urllib.parse
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from auth import phone as auth_phone
from auth.deps import CuratorUser, EnterpriseUser, FirmStaff, public
from core.deps import AppSettings, DbSession, Paging
from core.errors import HuiqiError
from core.ratelimit import client_key
from core.schemas import Id, Page
from core.text import mask_phone
from push import events, fanout, phone, preferences, stats, targeting, unsubscribe
from push import inbox as push_inbox
from push.models import PushPreference, Subscription
from push.schemas import (
    DeliveryLogOut,
    DeliveryStatsOut,
    FanOutOut,
    FunnelOut,
    InboxItemOut,
    InboxPage,
    ManualPushIn,
    ManualPushOut,
    ManualPushPreviewOut,
    MarkReadIn,
    MarkReadOut,
    PhoneCodeIn,
    PhoneCodeOut,
    PhoneVerifiedOut,
    PhoneVerifyIn,
    PreferencesIn,
    PreferencesOut,
    SubscriptionIn,
    SubscriptionOut,
    UnsubscribeOut,
)

router = APIRouter()


def _base_url(settings: AppSettings) -> str:
    return settings.public_base_url


@router.get("/inbox", response_model=InboxPage, tags=["推送"])
def inbox(
    db: DbSession,
    actor: EnterpriseUser,
    paging: Paging,
    unread_only: Annotated[bool, Query(description="只看未读")] = False,
) -> InboxPage:
    """List the firm's in-app messages, newest first, with the unread count."""
    rows, total, unread = push_inbox.list_inbox(
        db=db,
        enterprise_id=actor.own_enterprise_id,
        unread_only=unread_only,
        offset=paging.offset,
        limit=paging.page_size,
    )
    return InboxPage(
        items=[InboxItemOut.model_validate(r) for r in rows],
        total=total,
        unread=unread,
        page=paging.page,
        page_size=paging.page_size,
    )


@router.post("/inbox/read", response_model=MarkReadOut, tags=["推送"])
def inbox_mark_read(db: DbSession, actor: EnterpriseUser, body: MarkReadIn) -> MarkReadOut:
    """Mark the given messages (or all) read."""
    eid = actor.own_enterprise_id
    updated = push_inbox.mark_read(db=db, enterprise_id=eid, delivery_ids=body.ids, all=body.all)
    return MarkReadOut(updated=updated, unread=push_inbox.unread_count(db=db, enterprise_id=eid))


def _prefs_out(db: Session, row: PushPreference) -> PreferencesOut:
    out = PreferencesOut.model_validate(row)
    out.phone_verified = preferences.phone_verified(db=db, prefs=row)
    return out


@router.get("/push/preferences", response_model=PreferencesOut, tags=["推送"])
def read_preferences(db: DbSession, actor: EnterpriseUser) -> PreferencesOut:
    """Show how and how often the firm is pushed to (defaults until it saves its own)."""
    return _prefs_out(db, preferences.get_preferences(db=db, enterprise_id=actor.own_enterprise_id))


@router.put("/push/preferences", response_model=PreferencesOut, tags=["推送"])
def save_preferences(
    db: DbSession, settings: AppSettings, actor: EnterpriseUser, body: PreferencesIn
) -> PreferencesOut:
    """Change channels, frequency, quiet hours, weekly cap and contacts; fields left out are kept.

    A webhook URL must point at a public address (not loopback, private, link-local, multicast or reserved).
    SMS can be switched on only for a verified number (POST /push/preferences/phone-code, then
    /push/preferences/phone-verification); changing the number clears its verification.
    """
    row = preferences.update_preferences(
        db=db,
        enterprise_id=actor.own_enterprise_id,
        prefs_in=body,
        guard=preferences.address_guard(settings),
    )
    return _prefs_out(db, row)


PHONE_CODE_RESPONSES: dict[int | str, dict[str, Any]] = {
    429: {"description": "发送过于频繁（按手机号和客户端地址限流），见 Retry-After"},
    409: {"description": "短信服务未开通"},
    503: {"description": "短信网关未接受验证码短信"},
}


@router.post(
    "/auth/phone-codes",
    response_model=PhoneCodeOut,
    status_code=202,
    tags=["认证"],
    dependencies=[Depends(public)],
    responses=PHONE_CODE_RESPONSES,
)
def send_signup_code(request: Request, db: DbSession, settings: AppSettings, body: PhoneCodeIn) -> PhoneCodeOut:
    """Send a registration code by SMS to a mobile number (then register with it as `phone_code`)."""
    number = phone.send_code(
        db=db,
        settings=settings,
        throttle=request.app.state.phone_code_throttle,
        phone=body.phone,
        purpose=auth_phone.SIGNUP,
        client=client_key(request),
    )
    return PhoneCodeOut(phone=mask_phone(number) or "", expires_in_minutes=settings.phone_code_minutes)


@router.post(
    "/push/preferences/phone-code",
    response_model=PhoneCodeOut,
    status_code=202,
    tags=["推送"],
    responses=PHONE_CODE_RESPONSES,
)
def send_preferences_code(
    request: Request, db: DbSession, settings: AppSettings, actor: EnterpriseUser, body: PhoneCodeIn
) -> PhoneCodeOut:
    """Send a code by SMS to the number the firm wants its SMS pushes on."""
    number = phone.send_code(
        db=db,
        settings=settings,
        throttle=request.app.state.phone_code_throttle,
        phone=body.phone,
        purpose=auth_phone.firm_purpose(actor.own_enterprise_id),
        client=client_key(request),
    )
    return PhoneCodeOut(phone=mask_phone(number) or "", expires_in_minutes=settings.phone_code_minutes)


@router.post("/push/preferences/phone-verification", response_model=PhoneVerifiedOut, tags=["推送"])
def verify_preferences_phone(
    db: DbSession, settings: AppSettings, actor: EnterpriseUser, body: PhoneVerifyIn
) -> PhoneVerifiedOut:
    """Verify the number with the code it received (at most 5 tries per code); SMS may then be switched on."""
    try:
        number = phone.verify_firm_phone(
            db=db,
            settings=settings,
            enterprise_id=actor.own_enterprise_id,
            phone=body.phone,
            code=body.code,
            user_id=actor.user_id,
        )
    except auth_phone.PhoneCodeRejected as exc:
        auth_phone.commit_then_raise(db, exc)  # the wrong guess counts
    return PhoneVerifiedOut(phone=number, verified=True)


@router.get("/push/subscriptions", response_model=list[SubscriptionOut], tags=["推送"])
def subscriptions(db: DbSession, actor: EnterpriseUser) -> list[Subscription]:
    """List the categories and keywords the firm follows."""
    return preferences.list_subscriptions(db=db, enterprise_id=actor.own_enterprise_id)


@router.post("/push/subscriptions", response_model=SubscriptionOut, status_code=201, tags=["推送"])
def subscribe(db: DbSession, actor: EnterpriseUser, body: SubscriptionIn) -> Subscription:
    """Follow a policy category (by code) or a keyword."""
    return preferences.create_subscription(db=db, enterprise_id=actor.own_enterprise_id, subscription_in=body)


@router.delete("/push/subscriptions/{subscription_id}", status_code=204, tags=["推送"])
def unsubscribe_one(db: DbSession, actor: EnterpriseUser, subscription_id: Id) -> Response:
    """Stop following a category or keyword; another firm's subscription is not found."""
    preferences.delete_subscription(db=db, enterprise_id=actor.own_enterprise_id, subscription_id=subscription_id)
    return Response(status_code=204)


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    """A minimal standalone Chinese page (the unsubscribe link is opened from mail, outside the site's pages)."""
    return HTMLResponse(
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} · 惠企</title></head><body><main><h1>{html.escape(title)}</h1>{body}</main>"
        "</body></html>",
        status_code=status_code,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"},
    )


@router.get("/push/unsubscribe", response_class=HTMLResponse, tags=["推送"], dependencies=[Depends(public)])
def unsubscribe_link(
    db: DbSession, settings: AppSettings, token: Annotated[str, Query(max_length=300)]
) -> HTMLResponse:
    """Open a signed unsubscribe link: a confirmation page; nothing changes until its button is pressed.

    Mail scanners and link previews fetch links with GET; only the POST (the button, or a mail client's
    RFC 8058 one-click request) unsubscribes.
    """
    try:
        what = unsubscribe.describe_unsubscribe(db=db, settings=settings, token=token)
    except HuiqiError as exc:
        return _page("退订链接无效", f"<p>{html.escape(exc.message)}</p>", status_code=exc.status_code)
    action = "/api/v1/push/unsubscribe?token=" + urllib.parse.quote(token, safe="")
    return _page(
        "确认退订",
        f"<p>您将{html.escape(what)}。</p>"
        f'<form method="post" action="{html.escape(action, quote=True)}">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">确认退订</button></form>'
        "<p>如果不想退订，关闭本页即可，不会有任何改变。</p>",
    )


@router.post("/push/unsubscribe", response_model=UnsubscribeOut, tags=["推送"], dependencies=[Depends(public)])
def unsubscribe_one_click(
    request: Request, db: DbSession, settings: AppSettings, token: Annotated[str, Query(max_length=300)]
) -> Any:
    """Unsubscribe: RFC 8058 one-click (List-Unsubscribe-Post) by a mail client, or the confirmation page's button.

    A browser (asking for HTML) gets a Chinese page; programs get JSON.
    """
    wants_html = "text/html" in request.headers.get("accept", "")
    try:
        result = unsubscribe.unsubscribe(db=db, settings=settings, token=token)
    except HuiqiError as exc:
        if wants_html:
            return _page("退订链接无效", f"<p>{html.escape(exc.message)}</p>", status_code=exc.status_code)
        raise
    if wants_html:
        return _page("已退订", f"<p>{html.escape(result['message'])}</p>")
    return result


@router.post("/policies/{policy_id}/push", response_model=FanOutOut, tags=["推送"])
def push_policy_now(
    request: Request, db: DbSession, settings: AppSettings, actor: CuratorUser, policy_id: Id
) -> dict[str, int]:
    """Fan a published policy out to its matching firms now; running it again for the same version adds nothing."""
    return fanout.fan_out_policy(
        db=db, matcher=request.app.state.matcher, policy_id=policy_id, base_url=_base_url(settings), settings=settings
    )


# ---------------------------------------------------------------- staff: targeted push (人工定向)


@router.post("/push/manual/preview", response_model=ManualPushPreviewOut, tags=["推送管理"])
def manual_push_preview(
    request: Request, db: DbSession, settings: AppSettings, actor: CuratorUser, body: ManualPushIn
) -> dict[str, Any]:
    """Show how many firms a targeted push would reach, per channel, with a masked sample; nothing is sent."""
    return targeting.preview(db=db, push_in=body, matcher=request.app.state.matcher, settings=settings)


@router.post("/push/manual", response_model=ManualPushOut, status_code=201, tags=["推送管理"])
def manual_push_send(
    request: Request, db: DbSession, settings: AppSettings, actor: CuratorUser, body: ManualPushIn
) -> ManualPushOut:
    """Send a published policy to the firms the filter selects, recorded with who sent it."""
    row, counts = targeting.send(
        db=db,
        push_in=body,
        created_by_id=actor.user_id,
        matcher=request.app.state.matcher,
        base_url=_base_url(settings),
        settings=settings,
    )
    items, _ = targeting.list_manual_pushes(db=db, manual_push_id=row.id)
    return ManualPushOut(**items[0], created=counts["created"])


@router.get("/push/manual", response_model=Page[ManualPushOut], tags=["推送管理"])
def manual_push_list(
    db: DbSession,
    actor: CuratorUser,
    paging: Paging,
    policy_id: Annotated[Id | None, Query(description="只看该政策的定向推送")] = None,
) -> Page[Any]:
    """List targeted pushes, newest first, with who sent them and how their messages fared."""
    items, total = targeting.list_manual_pushes(
        db=db, policy_id=policy_id, offset=paging.offset, limit=paging.page_size
    )
    return Page(items=items, total=total, page=paging.page, page_size=paging.page_size)


# ---------------------------------------------------------------- staff: delivery log, stats, funnel


def _delivery_filters(
    policy_id: Annotated[Id | None, Query(description="政策编号")] = None,
    enterprise_id: Annotated[Id | None, Query(description="企业编号")] = None,
    channel: Annotated[str | None, Query(description="推送方式：inbox、email、sms、webhook")] = None,
    status: Annotated[str | None, Query(description="状态：pending、sent、failed、dead、skipped")] = None,
    kind: Annotated[str | None, Query(description="推送类型：new_match、digest、deadline_reminder、manual …")] = None,
    date_from: Annotated[dt.date | None, Query(description="开始日期（含，北京时间）")] = None,
    date_to: Annotated[dt.date | None, Query(description="结束日期（含，北京时间）")] = None,
) -> stats.DeliveryFilters:
    return stats.DeliveryFilters(
        policy_id=policy_id,
        enterprise_id=enterprise_id,
        channel=channel,
        status=status,
        kind=kind,
        date_from=date_from,
        date_to=date_to,
    )


DeliveryFiltersDep = Annotated[stats.DeliveryFilters, Depends(_delivery_filters)]


@router.get("/push/deliveries", response_model=Page[DeliveryLogOut], tags=["推送管理"])
def delivery_log(
    db: DbSession, settings: AppSettings, actor: FirmStaff, paging: Paging, filters: DeliveryFiltersDep
) -> Page[Any]:
    """List push records newest first, filtered by policy, firm, channel, status, kind and date."""
    items, total = stats.list_deliveries(
        db=db, filters=filters, offset=paging.offset, limit=paging.page_size, settings=settings
    )
    return Page(items=items, total=total, page=paging.page, page_size=paging.page_size)


@router.get("/push/stats", response_model=DeliveryStatsOut, tags=["推送管理"])
def delivery_stats(
    db: DbSession,
    settings: AppSettings,
    actor: FirmStaff,
    filters: DeliveryFiltersDep,
    group_by: Annotated[str, Query(description="day 按日、channel 按推送方式、policy 按政策")] = "day",
) -> dict[str, Any]:
    """Count pushes sent, failed, dead, opened and clicked per day, channel or policy."""
    return stats.delivery_stats(db=db, filters=filters, group_by=group_by, settings=settings)


@router.get("/policies/{policy_id}/push-funnel", response_model=FunnelOut, tags=["推送管理"])
def policy_funnel(db: DbSession, actor: FirmStaff, policy_id: Id) -> dict[str, Any]:
    """A policy's funnel in distinct firms: pushed → opened → viewed → calculator → marked applied."""
    return stats.funnel(db=db, policy_id=policy_id)


@router.get("/push/r/{token}", tags=["推送"], dependencies=[Depends(public)], response_class=RedirectResponse)
def follow_tracked_link(
    db: DbSession, settings: AppSettings, token: Annotated[str, Path(max_length=60)]
) -> RedirectResponse:
    """Follow a push's tracked link: the click is recorded, then the browser goes to the policy page."""
    url = events.record_click(db=db, settings=settings, token=token, base_url=_base_url(settings))
    return RedirectResponse(url, status_code=302)
