"""HTTP routes for sign-in, registration, users and API keys."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm

from auth import service
from auth.deps import AdminUser, AnyUser, public
from auth.models import ApiKey, Role, User
from auth.schemas import (
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyOut,
    PasswordChangeIn,
    Token,
    UserIn,
    UserOut,
    UserUpdate,
)
from core.deps import AppSettings, DbSession, Paging
from core.errors import NotAuthenticated
from core.schemas import Id, Page

router = APIRouter()


@router.post("/auth/token", response_model=Token, tags=["认证"], dependencies=[Depends(public)])
def login(
    request: Request, db: DbSession, settings: AppSettings, form: Annotated[OAuth2PasswordRequestForm, Depends()]
) -> Token:
    """Exchange a username and password for a bearer token (OAuth2 password flow); attempts are throttled."""
    throttle = request.app.state.sign_in_throttle
    throttle.attempt(username=form.username, client=request.client.host if request.client else "unknown")
    user = service.authenticate(db=db, username=form.username, password=form.password)
    if user is None:
        raise NotAuthenticated("用户名或密码错误", code="auth.bad_credentials")
    throttle.succeeded(username=form.username)
    return service.issue_token(settings=settings, user=user)


@router.get("/auth/me", response_model=UserOut, tags=["认证"])
def me(db: DbSession, actor: AnyUser) -> User:
    """Show the signed-in user."""
    if actor.via_api_key:
        raise NotAuthenticated("API 密钥没有用户信息", code="auth.not_a_user")
    return service.get_user(db=db, user_id=actor.id)


def _own_account(actor: service.Principal) -> int:
    if actor.via_api_key:
        raise NotAuthenticated("API 密钥没有用户信息", code="auth.not_a_user")
    return actor.id


@router.post("/auth/logout", status_code=204, tags=["认证"])
def logout_everywhere(db: DbSession, actor: AnyUser) -> None:
    """Sign out everywhere: every token issued to the caller so far stops working."""
    service.revoke_tokens(service.get_user(db=db, user_id=_own_account(actor)))


@router.post("/auth/password", response_model=Token, tags=["认证"])
def change_password(
    request: Request, db: DbSession, settings: AppSettings, actor: AnyUser, body: PasswordChangeIn
) -> Token:
    """Change one's own password; other sessions end and a fresh token is returned.

    Checking the current password counts as a sign-in attempt (throttled the same way).
    """
    user = service.get_user(db=db, user_id=_own_account(actor))
    throttle = request.app.state.sign_in_throttle
    throttle.attempt(username=user.username, client=request.client.host if request.client else "unknown")
    user = service.change_own_password(
        db=db, user_id=user.id, current_password=body.current_password, new_password=body.new_password
    )
    throttle.succeeded(username=user.username)
    return service.issue_token(settings=settings, user=user)


@router.get("/users", response_model=Page[UserOut], tags=["用户"])
def list_users(db: DbSession, actor: AdminUser, paging: Paging, role: Role | None = None) -> Page[Any]:
    """List users."""
    items, total = service.list_users(db=db, role=role, offset=paging.offset, limit=paging.page_size)
    return Page(items=items, total=total, page=paging.page, page_size=paging.page_size)


@router.post("/users", response_model=UserOut, status_code=201, tags=["用户"])
def create_user(db: DbSession, actor: AdminUser, user_in: UserIn) -> User:
    """Create a user of any role."""
    return service.create_user(db=db, user_in=user_in)


@router.get("/users/{user_id}", response_model=UserOut, tags=["用户"])
def get_user(db: DbSession, actor: AdminUser, user_id: Id) -> User:
    """Show a user."""
    return service.get_user(db=db, user_id=user_id)


@router.patch("/users/{user_id}", response_model=UserOut, tags=["用户"])
def update_user(db: DbSession, actor: AdminUser, user_id: Id, user_in: UserUpdate) -> User:
    """Change a user's name, password, role, status or department; a new password or role ends their sessions."""
    return service.update_user(db=db, user_id=user_id, user_in=user_in)


@router.get("/api-keys", response_model=list[ApiKeyOut], tags=["用户"])
def list_api_keys(db: DbSession, actor: AdminUser) -> list[ApiKey]:
    """List API keys (never their secrets)."""
    return service.list_api_keys(db=db)


@router.post("/api-keys", response_model=ApiKeyCreated, status_code=201, tags=["用户"])
def create_api_key(db: DbSession, actor: AdminUser, key_in: ApiKeyIn) -> ApiKeyCreated:
    """Create an API key for a system integration; the key is shown once."""
    key, plain = service.create_api_key(db=db, key_in=key_in, actor=actor)
    return ApiKeyCreated(**ApiKeyOut.model_validate(key).model_dump(), key=plain)


@router.post("/api-keys/{key_id}/revoke", response_model=ApiKeyOut, tags=["用户"])
def revoke_api_key(db: DbSession, actor: AdminUser, key_id: Id) -> ApiKey:
    """Revoke an API key."""
    return service.revoke_api_key(db=db, key_id=key_id)
