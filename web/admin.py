"""Security pages: the administrator's API keys (role, scopes, use; created with the key shown once, revoked),
and the firm-claim queue where staff confirm or refuse registrations against firms already on the platform.

Both go through the services the API uses (auth.service, profiles.service).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from auth import scopes as auth_scopes
from auth import service as auth_service
from auth.models import ROLE_LABELS, Role
from auth.schemas import ApiKeyIn
from auth.service import Principal
from catalog import service as catalog_service
from core.deps import DbSession
from core.errors import HuiqiError
from profiles import service as profiles_service
from profiles.router import claim_out
from web.deps import WebAllow
from web.forms import FormErrors, PageForm, form_list, form_values, keep
from web.templating import WebRoute, redirect, register_nav, render

router = APIRouter(route_class=WebRoute, include_in_schema=False)
Admin = Annotated[Principal, Depends(WebAllow(Role.admin))]
FirmStaff = Annotated[Principal, Depends(WebAllow(Role.admin, Role.curator, Role.supervisor))]

register_nav("API 密钥", "/admin/api-keys", (Role.admin,), order=170)
register_nav("企业认领", "/staff/claims", (Role.admin, Role.curator, Role.supervisor), order=135)

KEY_ROLES = (Role.desk, Role.supervisor, Role.curator, Role.admin)


def _context(
    db: Session, values: dict[str, Any], errors: FormErrors, created: dict[str, Any] | None = None
) -> dict[str, Any]:
    departments = {d.id: d.name for d in catalog_service.list_departments(db=db)}
    return {
        "keys": auth_service.list_api_keys(db=db),
        "departments": departments,
        "department_options": [(str(i), name) for i, name in departments.items()],
        "role_labels": ROLE_LABELS,
        "roles": [(r.value, ROLE_LABELS[r.value]) for r in KEY_ROLES],
        "scope_labels": auth_scopes.SCOPES,
        "values": keep(values),
        "chosen_scopes": values.get("scopes") or [auth_scopes.DESK_INTAKE],
        "errors": errors,
        "created": created,
    }


@router.get("/admin/api-keys")
def api_keys(request: Request, db: DbSession, admin: Admin) -> Response:
    """List API keys with their scopes; the form makes a new one."""
    return render(request, "admin_api_keys.html", _context(db, {}, FormErrors()))


@router.post("/admin/api-keys")
def create_api_key(request: Request, db: DbSession, admin: Admin, form: PageForm) -> Response:
    """Make a key; its secret is shown on this page once."""
    values = form_values(form, ("name", "role", "department_id"))
    values["scopes"] = form_list(form, "scopes")
    try:
        key_in = ApiKeyIn(
            name=values["name"] or "",
            role=values["role"] or Role.desk,
            department_id=values["department_id"],
            scopes=values["scopes"],
        )
        key, plain = auth_service.create_api_key(db=db, key_in=key_in, actor=admin)
    except ValidationError as exc:
        errors = FormErrors.from_validation(exc)
    except HuiqiError as exc:
        db.rollback()
        errors = FormErrors.from_domain(exc)
    else:
        created = {"name": key.name, "key": plain, "scopes": key.scope_list}
        return render(request, "admin_api_keys.html", _context(db, {}, FormErrors(), created), status_code=201)
    return render(request, "admin_api_keys.html", _context(db, values, errors), status_code=422)


@router.post("/admin/api-keys/revoke")
def revoke_api_key(request: Request, db: DbSession, admin: Admin, form: PageForm) -> Response:
    """Revoke a key (its id in the form); it stops working at once."""
    raw = form_values(form, ("key_id",))["key_id"] or ""
    if raw.isdigit():
        auth_service.revoke_api_key(db=db, key_id=int(raw))
    return redirect(request, "/admin/api-keys")


# ---------------------------------------------------------------- firm claims


def _claims_context(db: Session, status: str) -> dict[str, Any]:
    items, total = profiles_service.list_claims(db=db, status=status or None, limit=200)
    return {
        "claims": [claim_out(db, c) for c in items],
        "total": total,
        "status": status,
        "statuses": profiles_service.CLAIM_STATUS_LABELS,
    }


@router.get("/staff/claims")
def claims(request: Request, db: DbSession, staff: FirmStaff, status: str = "pending") -> Response:
    """Registrations against firms already on the platform: confirm (the account becomes active) or refuse."""
    status = status if status in profiles_service.CLAIM_STATUS_LABELS else "pending"
    return render(request, "staff_claims.html", _claims_context(db, status))


@router.post("/staff/claims/decide")
def decide_claim(request: Request, db: DbSession, staff: FirmStaff, form: PageForm) -> Response:
    """Approve or reject one claim (its id and the decision in the form)."""
    values = form_values(form, ("claim_id", "decision", "note"))
    raw = values["claim_id"] or ""
    if raw.isdigit() and values["decision"] in ("approve", "reject"):
        try:
            profiles_service.decide_claim(
                db=db,
                claim_id=int(raw),
                approve=values["decision"] == "approve",
                actor=staff,
                note=(values["note"] or "")[:200] or None,
            )
        except HuiqiError as exc:
            db.rollback()
            context = _claims_context(db, "pending") | {"error": exc.message}
            return render(request, "staff_claims.html", context, status_code=exc.status_code)
    return redirect(request, "/staff/claims")
