"""HTTP routes of push: the in-app inbox, preferences, subscriptions, one-click unsubscribe, fan-out now."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from api.deps import AppSettings, CuratorUser, DbSession, EnterpriseUser, Paging, public
from push import service
from push.schemas import (
    FanOutOut,
    InboxItemOut,
    InboxPage,
    MarkReadIn,
    MarkReadOut,
    PreferencesIn,
    PreferencesOut,
    SubscriptionIn,
    SubscriptionOut,
    UnsubscribeOut,
)

router = APIRouter()


def _base_url(settings: AppSettings) -> str:
    # HUIQI_PUBLIC_BASE_URL, once the lead adds it to Settings; relative links until then.
    return getattr(settings, "public_base_url", "") or ""


@router.get("/inbox", response_model=InboxPage, tags=["推送"])
def inbox(
    db: DbSession,
    actor: EnterpriseUser,
    paging: Paging,
    unread_only: Annotated[bool, Query(description="只看未读")] = False,
):
    """List the firm's in-app messages, newest first, with the unread count."""
    rows, total, unread = service.list_inbox(
        db=db,
        enterprise_id=actor.enterprise_id,  # type: ignore[arg-type]
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
def inbox_mark_read(db: DbSession, actor: EnterpriseUser, body: MarkReadIn):
    """Mark the given messages (or all) read."""
    eid = actor.enterprise_id
    updated = service.mark_read(db=db, enterprise_id=eid, delivery_ids=body.ids, all=body.all)  # type: ignore[arg-type]
    return MarkReadOut(updated=updated, unread=service.unread_count(db=db, enterprise_id=eid))  # type: ignore[arg-type]


@router.get("/push/preferences", response_model=PreferencesOut, tags=["推送"])
def read_preferences(db: DbSession, actor: EnterpriseUser):
    """Show how and how often the firm is pushed to (defaults until it saves its own)."""
    return service.get_preferences(db=db, enterprise_id=actor.enterprise_id)  # type: ignore[arg-type]


@router.put("/push/preferences", response_model=PreferencesOut, tags=["推送"])
def save_preferences(db: DbSession, actor: EnterpriseUser, body: PreferencesIn):
    """Change channels, frequency, quiet hours, weekly cap and contacts; fields left out are kept."""
    return service.update_preferences(db=db, enterprise_id=actor.enterprise_id, prefs_in=body)  # type: ignore[arg-type]


@router.get("/push/subscriptions", response_model=list[SubscriptionOut], tags=["推送"])
def subscriptions(db: DbSession, actor: EnterpriseUser):
    """List the categories and keywords the firm follows."""
    return service.list_subscriptions(db=db, enterprise_id=actor.enterprise_id)  # type: ignore[arg-type]


@router.post("/push/subscriptions", response_model=SubscriptionOut, status_code=201, tags=["推送"])
def subscribe(db: DbSession, actor: EnterpriseUser, body: SubscriptionIn):
    """Follow a policy category (by code) or a keyword."""
    return service.create_subscription(db=db, enterprise_id=actor.enterprise_id, subscription_in=body)  # type: ignore[arg-type]


@router.delete("/push/subscriptions/{subscription_id}", status_code=204, tags=["推送"])
def unsubscribe_one(db: DbSession, actor: EnterpriseUser, subscription_id: int) -> Response:
    """Stop following a category or keyword; another firm's subscription is not found."""
    service.delete_subscription(db=db, enterprise_id=actor.enterprise_id, subscription_id=subscription_id)  # type: ignore[arg-type]
    return Response(status_code=204)


@router.get("/push/unsubscribe", response_model=UnsubscribeOut, tags=["推送"], dependencies=[Depends(public)])
def unsubscribe_link(db: DbSession, settings: AppSettings, token: Annotated[str, Query(max_length=300)]):
    """Follow a signed unsubscribe link from an email or SMS and confirm in Chinese; no sign-in needed."""
    return service.unsubscribe(db=db, settings=settings, token=token)


@router.post("/push/unsubscribe", response_model=UnsubscribeOut, tags=["推送"], dependencies=[Depends(public)])
def unsubscribe_one_click(db: DbSession, settings: AppSettings, token: Annotated[str, Query(max_length=300)]):
    """RFC 8058 one-click unsubscribe (List-Unsubscribe-Post) by a mail client."""
    return service.unsubscribe(db=db, settings=settings, token=token)


@router.post("/policies/{policy_id}/push", response_model=FanOutOut, tags=["推送"])
def push_policy_now(request: Request, db: DbSession, settings: AppSettings, actor: CuratorUser, policy_id: int):
    """Fan a published policy out to its matching firms now; running it again for the same version adds nothing."""
    return service.fan_out_policy(
        db=db, matcher=request.app.state.matcher, policy_id=policy_id, base_url=_base_url(settings)
    )
