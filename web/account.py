"""Sign-in, sign-out and firm registration in the browser."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from auth import phone as auth_phone
from auth import service as auth_service
from auth.models import User
from auth.service import principal_for_user
from core.deps import AppSettings, DbSession
from core.errors import HuiqiError, TooManyRequests
from core.ratelimit import client_key
from core.text import mask_phone
from profiles import service as profiles_service
from profiles.schemas import RegisterIn
from push import phone as push_phone
from web import choices
from web.deps import WebVisitor, clear_session_cookie, rotate_csrf, safe_next, set_session_cookie
from web.forms import FormErrors, PageForm, form_values, keep
from web.templating import WebRoute, home_for, redirect, render

router = APIRouter(route_class=WebRoute, include_in_schema=False)

SIGNUP_FIELDS = (
    "username",
    "password",
    "password2",
    "display_name",
    "name",
    "credit_code",
    "region_code",
    "industry_code",
    "contact_phone",
    "phone_code",
    "contact_email",
)
ENTERPRISE_FIELDS = ("name", "credit_code", "region_code", "industry_code", "contact_phone", "contact_email")


def _signed_in(request: Request, settings: AppSettings, user: User, target: str) -> Response:
    token = auth_service.access_token_for(settings=settings, user=user)
    rotate_csrf(request)
    response = redirect(request, target)
    set_session_cookie(response, request=request, settings=settings, token=token)
    return response


@router.get("/login")
def login_form(
    request: Request, visitor: WebVisitor, next: Annotated[str | None, Query(max_length=500)] = None
) -> Response:
    """The sign-in form."""
    if visitor is not None:
        return redirect(request, safe_next(next, home_for(visitor)))
    return render(request, "login.html", {"next": safe_next(next, ""), "username": "", "error": None})


@router.post("/login")
def login(request: Request, db: DbSession, settings: AppSettings, visitor: WebVisitor, form: PageForm) -> Response:
    """Check the password and set the session cookie."""
    values = form_values(form, ("username", "password", "next"))
    user = None
    if values["username"] and values["password"]:
        throttle = request.app.state.sign_in_throttle
        try:
            throttle.attempt(username=values["username"], client=request.client.host if request.client else "unknown")
        except TooManyRequests as exc:
            context = {"next": safe_next(values["next"], ""), "username": values["username"], "error": exc.message}
            response = render(request, "login.html", context, status_code=429)
            response.headers.update(exc.headers or {})
            return response
        user = auth_service.authenticate(db=db, username=values["username"], password=values["password"])
        if user is not None:
            throttle.succeeded(username=values["username"])
    if user is None:
        complete = bool(values["username"] and values["password"])
        return render(
            request,
            "login.html",
            {
                "next": safe_next(values["next"], ""),
                "username": values["username"] or "",
                "error": "用户名或密码错误" if complete else "请输入用户名和密码",
            },
            status_code=401 if complete else 422,
        )
    return _signed_in(request, settings, user, safe_next(values["next"], home_for(principal_for_user(user))))


@router.post("/logout")
def logout(request: Request, db: DbSession, visitor: WebVisitor) -> Response:
    """Sign out everywhere: every token the user holds (this cookie, other browsers, API tokens) stops working."""
    if visitor is not None and not visitor.via_api_key:
        auth_service.revoke_tokens(auth_service.get_user(db=db, user_id=visitor.id))
    rotate_csrf(request)
    response = redirect(request, "/")
    clear_session_cookie(response)
    return response


def _signup_context(
    request: Request,
    values: dict,
    errors: FormErrors,
    code_sent_to: str | None = None,
    code_minutes: int | None = None,
) -> dict:
    shown = keep(values)
    shown.pop("password", None)
    shown.pop("password2", None)
    shown.pop("phone_code", None)
    return {
        "values": shown,
        "errors": errors,
        "code_sent_to": code_sent_to,
        "code_minutes": code_minutes,
        "region_groups": choices.region_groups(request.app.state.settings.home_region, shown.get("region_code")),
        "industries": choices.industry_divisions(),
    }


@router.get("/signup")
def signup_form(request: Request, visitor: WebVisitor) -> Response:
    """The firm registration form."""
    if visitor is not None:
        return redirect(request, home_for(visitor))
    return render(request, "signup.html", _signup_context(request, {}, FormErrors()))


@router.post("/signup")
def signup(request: Request, db: DbSession, settings: AppSettings, visitor: WebVisitor, form: PageForm) -> Response:
    """Register a firm and its first user, then sign in and go to the profile."""
    values = form_values(form, SIGNUP_FIELDS)
    if (values["password"] or "") != (values["password2"] or ""):
        errors = FormErrors("填写有误，请按提示修改", {"password2": "两次输入的密码不一致"})
        return render(request, "signup.html", _signup_context(request, values, errors), status_code=422)
    enterprise = {k: values[k] for k in ENTERPRISE_FIELDS if values[k] is not None}
    try:
        register_in = RegisterIn.model_validate(
            {
                "username": values["username"] or "",
                "password": values["password"] or "",
                "display_name": values["display_name"] or "",
                "enterprise": enterprise,
                "phone_code": values["phone_code"],
            }
        )
        user, _ = profiles_service.register(db=db, register_in=register_in, settings=settings)
    except auth_phone.PhoneCodeRejected as exc:
        db.commit()  # the wrong guess counts; nothing else was written
        errors = FormErrors.from_domain(exc, prefix="enterprise.")
        return render(request, "signup.html", _signup_context(request, values, errors), status_code=exc.status_code)
    except ValidationError as exc:
        errors = FormErrors.from_validation(exc, prefix="enterprise.")
        return render(request, "signup.html", _signup_context(request, values, errors), status_code=422)
    except HuiqiError as exc:
        db.rollback()  # nothing of a refused registration is kept
        errors = FormErrors.from_domain(exc, prefix="enterprise.")
        return render(request, "signup.html", _signup_context(request, values, errors), status_code=exc.status_code)
    return _signed_in(request, settings, user, "/me/profile?welcome=1")


@router.post("/signup/phone-code")
def signup_phone_code(
    request: Request, db: DbSession, settings: AppSettings, visitor: WebVisitor, form: PageForm
) -> Response:
    """Send a registration code by SMS to the contact phone; the form comes back filled in (passwords excepted)."""
    values = form_values(form, SIGNUP_FIELDS)
    try:
        number = push_phone.send_code(
            db=db,
            settings=settings,
            throttle=request.app.state.phone_code_throttle,
            phone=values["contact_phone"],
            purpose=auth_phone.SIGNUP,
            client=client_key(request),
            field="contact_phone",
        )
    except HuiqiError as exc:
        db.rollback()
        errors = FormErrors.from_domain(exc)
        if not errors.fields:
            errors.fields["contact_phone"] = exc.message
        response = render(request, "signup.html", _signup_context(request, values, errors), status_code=exc.status_code)
        response.headers.update(exc.headers or {})
        return response
    return render(
        request,
        "signup.html",
        _signup_context(request, values, FormErrors(), mask_phone(number), settings.phone_code_minutes),
    )
