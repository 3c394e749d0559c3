"""A signed-in firm's pages: profile, recommendations with reasons, inbox, push preferences."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from applications import service as applications_service
from auth import phone as auth_phone
from core.deps import AppSettings, DbSession
from core.errors import HuiqiError
from core.ratelimit import client_key
from core.text import mask_phone
from matcher import feedback as matcher_feedback
from matcher import recommend as matcher_recommend
from matcher.deps import MatcherDep
from matcher.eligibility import ELIGIBLE, LIKELY
from profiles import service as profiles_service
from profiles.schemas import EnterpriseUpdate, QualificationIn
from push import inbox as push_inbox
from push import phone as push_phone
from push import preferences as push_preferences
from push.channels import normalize_phone
from push.schemas import PreferencesIn, SubscriptionIn
from web import choices, views
from web.deps import WebFirm
from web.forms import FormErrors, PageForm, form_list, form_values, keep
from web.templating import WebRoute, redirect, render

router = APIRouter(prefix="/me", route_class=WebRoute, include_in_schema=False)

RECOMMENDATIONS_SHOWN = 20
# Enough to find every policy a missing field leaves undecided on the profile page.
BLOCKING_WINDOW = 200
INBOX_PAGE_SIZE = 10

PROFILE_FIELDS = (
    "name",
    "region_code",
    "industry_code",
    "established_on",
    "registered_capital",
    "employees",
    "annual_revenue",
    "total_assets",
    "rd_expense",
    "export_revenue",
    "credit_standing",
    "tax_credit_level",
    "business_scope",
    "products",
    "needs",
    "contact_name",
    "contact_phone",
    "contact_email",
)
PREFERENCE_FIELDS = (
    "frequency",
    "quiet_start",
    "quiet_end",
    "weekly_cap",
    "email",
    "phone",
    "webhook_url",
    "webhook_format",
    "webhook_secret",
)


# ---------------------------------------------------------------- profile


def _profile_context(db: Any, matcher: Any, firm: Any, values: dict | None, errors: FormErrors) -> dict:
    ent = profiles_service.get_enterprise(db=db, enterprise_id=firm.own_enterprise_id)
    data = profiles_service.describe(ent)
    page = matcher_recommend.recommend(
        db=db,
        matcher=matcher,
        enterprise_id=ent.id,
        include=(ELIGIBLE, LIKELY),
        limit=BLOCKING_WINDOW,
        with_changes=False,
    )
    recs = page.items
    if values is None:
        values = {name: data.get(name) for name in PROFILE_FIELDS}
        held = {q["name"] for q in data["qualifications"]}
    else:
        held = set(values.pop("qualifications", []))
    return {
        "ent": data,
        "values": keep(values),
        "held": held,
        "errors": errors,
        "blocking": views.blocking_fields(recs),
        "eligible_count": sum(1 for r in recs if r.verdict.status == ELIGIBLE),
        "likely_count": sum(1 for r in recs if r.verdict.status == LIKELY),
        "match_state": page.state,
        "region_groups": choices.region_groups(matcher.settings.home_region, values.get("region_code")),
        "industries": choices.industry_divisions(),
        "qualifications": choices.qualifications(db=db),
        "credit": choices.CREDIT,
        "tax_levels": choices.TAX_LEVELS,
    }


@router.get("/profile")
def profile(request: Request, db: DbSession, matcher: MatcherDep, firm: WebFirm) -> Response:
    """The firm's profile form with its completeness and the fields that block policies."""
    context = _profile_context(db, matcher, firm, None, FormErrors())
    context["saved"] = request.query_params.get("saved") == "1"
    context["welcome"] = request.query_params.get("welcome") == "1"
    return render(request, "me_profile.html", context)


@router.post("/profile")
def save_profile(request: Request, db: DbSession, matcher: MatcherDep, firm: WebFirm, form: PageForm) -> Response:
    """Save the profile through the profile service; its Chinese messages are shown by each field."""
    values = form_values(form, PROFILE_FIELDS)
    picked = form_list(form, "qualifications")
    ent = profiles_service.get_enterprise(db=db, enterprise_id=firm.own_enterprise_id)
    # The form has no validity dates; a qualification kept keeps the date it had.
    until = {q.tag.name: q.valid_until_on for q in ent.qualifications}
    try:
        update = EnterpriseUpdate(
            **values, qualifications=[QualificationIn(name=n, valid_until_on=until.get(n)) for n in picked]
        )
        profiles_service.update_enterprise(db=db, enterprise_id=ent.id, enterprise_in=update, actor=firm)
    except ValidationError as exc:
        errors = FormErrors.from_validation(exc)
    except HuiqiError as exc:
        db.rollback()  # a refused change leaves the profile as it was
        errors = FormErrors.from_domain(exc)
    else:
        return redirect(request, "/me/profile?saved=1")
    context = _profile_context(db, matcher, firm, {**values, "qualifications": picked}, errors)
    return render(request, "me_profile.html", context, status_code=422)


# ---------------------------------------------------------------- recommendations


@router.get("/recommendations")
def recommendations(
    request: Request,
    db: DbSession,
    matcher: MatcherDep,
    firm: WebFirm,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    open_now: bool = False,
    category: Annotated[str | None, Query(max_length=20)] = None,
    min_amount: Annotated[str | None, Query(max_length=12)] = None,
) -> Response:
    """Recommended policies, best first, each with 为什么推荐 and feedback buttons; paged and filtered."""
    today = dt.date.today()
    amount = _amount(min_amount)
    filters = matcher_recommend.Filters(
        open_now=open_now, category=category if category and category.isdigit() else None, min_amount=amount
    )
    result = matcher_recommend.recommend(
        db=db,
        matcher=matcher,
        enterprise_id=firm.own_enterprise_id,
        include=(ELIGIBLE, LIKELY),
        limit=RECOMMENDATIONS_SHOWN,
        offset=(page - 1) * RECOMMENDATIONS_SHOWN,
        today=today,
        filters=filters,
    )
    pages = max(1, math.ceil(result.total / RECOMMENDATIONS_SHOWN))
    return render(
        request,
        "me_recommendations.html",
        {
            "ent": result.enterprise,
            "cards": [views.recommendation_card(r, today, result.feedback.get(r.policy.id)) for r in result.items],
            "changes": result.changes,
            "firm_tags": result.tags,
            "total": result.total,
            "state": result.state,
            "filters": {"open_now": open_now, "category": filters.category or "", "min_amount": min_amount or ""},
            "categories": choices.categories(db=db),
            "page_links": views.page_links(request, page, pages),
            "feedback_actions": matcher_feedback.FEEDBACK_ACTIONS,
            # A policy the firm applied for shows its application's status instead of the buttons.
            "applications": applications_service.statuses_for_firm(
                db=db, enterprise_id=result.enterprise.id, policy_ids=[r.policy.id for r in result.items]
            ),
            "unread": push_inbox.unread_count(db=db, enterprise_id=result.enterprise.id),
        },
    )


def _amount(text: str | None) -> float | None:
    try:
        value = float(text) if text else None
    except ValueError:
        return None
    return value if value is not None and 0 <= value < 1e9 else None


def feedback_response(
    request: Request,
    *,
    db: DbSession,
    matcher: Any,
    firm: Any,
    policy_id: int,
    source: str,
    back: str,
    form: Mapping[str, Any],
    post_to: str | None = None,
) -> Response:
    """Record a firm's 感兴趣 / 不相关 / 已申报 from a form; htmx gets the buttons back, a plain POST a redirect."""
    action = str(form.get("action") or "")
    matcher_feedback.record_feedback(
        db=db,
        enterprise_id=firm.own_enterprise_id,
        policy_id=policy_id,
        action=action,
        source=source,
        user_id=firm.user_id,
        weights=matcher.weights,
    )
    if request.headers.get("hx-request"):
        # 已申报 opened an application (a policy that takes one): its status replaces the buttons.
        status = applications_service.statuses_for_firm(
            db=db, enterprise_id=firm.own_enterprise_id, policy_ids=[policy_id]
        ).get(policy_id)
        if status is not None:
            return render(request, "_application_status.html", {"policy_id": policy_id, "app_status": status})
        context = {
            "policy_id": policy_id,
            "feedback": action,
            "feedback_actions": matcher_feedback.FEEDBACK_ACTIONS,
            "saved": True,
        }
        if post_to:
            context["post_to"] = post_to
        return render(request, "_feedback.html", context)
    return redirect(request, back)


@router.post("/recommendations/{policy_id}/feedback")
def recommendation_feedback(
    request: Request, db: DbSession, matcher: MatcherDep, firm: WebFirm, policy_id: int, form: PageForm
) -> Response:
    """Mark a recommended policy interesting, not relevant or applied (htmx swaps the card's buttons)."""
    return feedback_response(
        request,
        form=form,
        db=db,
        matcher=matcher,
        firm=firm,
        policy_id=policy_id,
        source="recommendation",
        back="/me/recommendations",
        post_to=f"/me/recommendations/{policy_id}/feedback",
    )


# ---------------------------------------------------------------- inbox


@router.get("/inbox")
def inbox(
    request: Request,
    db: DbSession,
    firm: WebFirm,
    unread: str | None = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    """The firm's messages, newest first; unread ones marked."""
    unread_only = unread == "1"
    rows, total, unread_total = push_inbox.list_inbox(
        db=db,
        enterprise_id=firm.own_enterprise_id,
        unread_only=unread_only,
        offset=(page - 1) * INBOX_PAGE_SIZE,
        limit=INBOX_PAGE_SIZE,
    )
    pages = max(1, math.ceil(total / INBOX_PAGE_SIZE))
    return render(
        request,
        "me_inbox.html",
        {
            "rows": rows,
            "total": total,
            "unread_total": unread_total,
            "unread_only": unread_only,
            "page_links": views.page_links(request, page, pages),
        },
    )


def _back_to_inbox(request: Request) -> str:
    referer = request.headers.get("referer") or ""
    marker = "/me/inbox"
    return referer[referer.index(marker) :] if marker in referer else marker


@router.post("/inbox/{delivery_id}/read")
def inbox_read(request: Request, db: DbSession, firm: WebFirm, delivery_id: int) -> Response:
    """Mark one message read (only the firm's own messages are touched)."""
    push_inbox.mark_read(db=db, enterprise_id=firm.own_enterprise_id, delivery_ids=[delivery_id])
    return redirect(request, _back_to_inbox(request))


@router.post("/inbox/read-all")
def inbox_read_all(request: Request, db: DbSession, firm: WebFirm) -> Response:
    """Mark every message read."""
    push_inbox.mark_read(db=db, enterprise_id=firm.own_enterprise_id, all=True)
    return redirect(request, "/me/inbox")


# ---------------------------------------------------------------- preferences and subscriptions


def _preferences_context(
    db: Any,
    firm: Any,
    values: dict | None,
    errors: FormErrors,
    sub_errors: FormErrors | None = None,
    phone_errors: FormErrors | None = None,
    phone_values: dict | None = None,
) -> dict:
    prefs = push_preferences.get_preferences(db=db, enterprise_id=firm.own_enterprise_id)
    phone_number = normalize_phone(prefs.phone or "")
    if values is None:
        values = {name: getattr(prefs, name) for name in PREFERENCE_FIELDS}
        values["channels"] = list(prefs.channels)
        # Until the firm saves its own, the phone is its profile's contact number, which may be a landline.
        if values["phone"] and normalize_phone(values["phone"]) is None:
            values["phone"] = None
    categories = choices.categories(db=db)
    names = {code: name for code, name, children in categories} | {
        code: name for _, _, children in categories for code, name in children
    }
    return {
        "prefs": prefs,
        "values": keep(values),
        "errors": errors,
        "sub_errors": sub_errors or FormErrors(),
        "subscriptions": push_preferences.list_subscriptions(db=db, enterprise_id=firm.own_enterprise_id),
        "category_names": names,
        "categories": categories,
        "channel_labels": choices.CHANNEL_LABELS,
        "frequency_labels": choices.FREQUENCY_LABELS,
        "webhook_formats": choices.WEBHOOK_FORMAT_LABELS,
        "phone_number": phone_number,
        "phone_verified": push_preferences.phone_verified(db=db, prefs=prefs),
        "phone_errors": phone_errors or FormErrors(),
        "phone_values": phone_values or {"phone": phone_number or ""},
    }


@router.get("/preferences")
def preferences(request: Request, db: DbSession, firm: WebFirm) -> Response:
    """Channels, frequency, quiet hours, subscriptions and unsubscribing."""
    context = _preferences_context(db, firm, None, FormErrors())
    context["saved"] = request.query_params.get("saved")
    return render(request, "me_preferences.html", context)


@router.post("/preferences")
def save_preferences(request: Request, db: DbSession, settings: AppSettings, firm: WebFirm, form: PageForm) -> Response:
    """Save push preferences through the push service; its Chinese messages are shown by each field."""
    values = form_values(form, PREFERENCE_FIELDS)
    values["channels"] = form_list(form, "channels")
    try:
        prefs_in = PreferencesIn(**values)
        push_preferences.update_preferences(
            db=db,
            enterprise_id=firm.own_enterprise_id,
            prefs_in=prefs_in,
            guard=push_preferences.address_guard(settings),
        )
    except ValidationError as exc:
        errors = FormErrors.from_validation(exc)
    except HuiqiError as exc:
        db.rollback()
        errors = FormErrors.from_domain(exc)
    else:
        return redirect(request, "/me/preferences?saved=prefs")
    return render(request, "me_preferences.html", _preferences_context(db, firm, values, errors), status_code=422)


@router.post("/preferences/phone-code")
def preferences_phone_code(
    request: Request, db: DbSession, settings: AppSettings, firm: WebFirm, form: PageForm
) -> Response:
    """Send a code by SMS to the number the firm wants its SMS pushes on."""
    values = form_values(form, ("phone",))
    try:
        number = push_phone.send_code(
            db=db,
            settings=settings,
            throttle=request.app.state.phone_code_throttle,
            phone=values["phone"],
            purpose=auth_phone.firm_purpose(firm.own_enterprise_id),
            client=client_key(request),
        )
    except HuiqiError as exc:
        db.rollback()
        phone_errors = FormErrors.from_domain(exc)
        phone_errors.fields.setdefault("phone", exc.message)
        context = _preferences_context(db, firm, None, FormErrors(), phone_errors=phone_errors, phone_values=values)
        response = render(request, "me_preferences.html", context, status_code=exc.status_code)
        response.headers.update(exc.headers or {})
        return response
    context = _preferences_context(db, firm, None, FormErrors(), phone_values={"phone": number})
    context["code_sent_to"] = mask_phone(number)
    context["code_minutes"] = settings.phone_code_minutes
    return render(request, "me_preferences.html", context)


@router.post("/preferences/phone-verification")
def preferences_phone_verify(
    request: Request, db: DbSession, settings: AppSettings, firm: WebFirm, form: PageForm
) -> Response:
    """Verify the number with the code it received; the number becomes the one SMS pushes go to."""
    values = form_values(form, ("phone", "code"))
    try:
        number = push_phone.verify_firm_phone(
            db=db,
            settings=settings,
            enterprise_id=firm.own_enterprise_id,
            phone=values["phone"],
            code=values["code"],
            user_id=firm.user_id,
        )
        current = push_preferences.get_preferences(db=db, enterprise_id=firm.own_enterprise_id)
        if normalize_phone(current.phone or "") != number:
            push_preferences.update_preferences(
                db=db, enterprise_id=firm.own_enterprise_id, prefs_in=PreferencesIn(phone=number)
            )
    except HuiqiError as exc:
        if isinstance(exc, auth_phone.PhoneCodeRejected):
            db.commit()  # the wrong guess counts
        else:
            db.rollback()
        phone_errors = FormErrors.from_domain(exc)
        context = _preferences_context(
            db, firm, None, FormErrors(), phone_errors=phone_errors, phone_values={"phone": values["phone"] or ""}
        )
        context["code_sent_to"] = mask_phone(values["phone"]) if values["phone"] else None
        return render(request, "me_preferences.html", context, status_code=exc.status_code)
    return redirect(request, "/me/preferences?saved=phone_verified#phone-verify")


@router.post("/preferences/unsubscribe-all")
def unsubscribe_all(request: Request, db: DbSession, firm: WebFirm) -> Response:
    """Stop every push beyond the inbox."""
    push_preferences.update_preferences(
        db=db, enterprise_id=firm.own_enterprise_id, prefs_in=PreferencesIn(unsubscribed_all=True)
    )
    return redirect(request, "/me/preferences?saved=unsubscribed")


@router.post("/preferences/resubscribe")
def resubscribe(request: Request, db: DbSession, firm: WebFirm) -> Response:
    """Turn pushes back on after unsubscribing from everything."""
    push_preferences.update_preferences(
        db=db, enterprise_id=firm.own_enterprise_id, prefs_in=PreferencesIn(unsubscribed_all=False)
    )
    return redirect(request, "/me/preferences?saved=resubscribed")


@router.post("/subscriptions")
def subscribe(request: Request, db: DbSession, firm: WebFirm, form: PageForm) -> Response:
    """Follow a policy category or a keyword."""
    values = form_values(form, ("kind", "value"))
    try:
        push_preferences.create_subscription(
            db=db,
            enterprise_id=firm.own_enterprise_id,
            subscription_in=SubscriptionIn(kind=values["kind"] or "", value=values["value"] or ""),
        )
    except HuiqiError as exc:
        db.rollback()
        context = _preferences_context(db, firm, None, FormErrors(), FormErrors.from_domain(exc))
        context["sub_values"] = keep(values)
        return render(request, "me_preferences.html", context, status_code=exc.status_code)
    return redirect(request, "/me/preferences?saved=subscribed#subscriptions")


@router.post("/subscriptions/{subscription_id}/delete")
def unsubscribe_one(request: Request, db: DbSession, firm: WebFirm, subscription_id: int) -> Response:
    """Stop following one category or keyword; another firm's subscription is not found."""
    push_preferences.delete_subscription(db=db, enterprise_id=firm.own_enterprise_id, subscription_id=subscription_id)
    return redirect(request, "/me/preferences?saved=unsubscribed_one#subscriptions")
