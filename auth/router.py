"""HTTP routes for sign-in, registration, users and API keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import OAuth2PasswordRequestForm

from auth import service
from auth.deps import AdminUser, AnyUser, public
from auth.models import Role
from auth.schemas import ApiKeyCreated, ApiKeyIn, ApiKeyOut, Token, UserIn, UserOut, UserUpdate
from core.deps import AppSettings, DbSession, Paging
from core.errors import NotAuthenticated
from core.schemas import Id, Page

router = APIRouter()


@router.post("/auth/token", response_model=Token, tags=["认证"], dependencies=[Depends(public)])
def login(db: DbSession, settings: AppSettings, form: Annotated[OAuth2PasswordRequestForm, Depends()]):
    """Exchange a username and password for a bearer token (OAuth2 password flow)."""
    user = service.authenticate(db=db, username=form.username, password=form.password)
    if user is None:
        raise NotAuthenticated("用户名或密码错误", code="bad_credentials")
    return service.issue_token(settings=settings, user=user)


@router.get("/auth/me", response_model=UserOut, tags=["认证"])
def me(db: DbSession, actor: AnyUser):
    """Show the signed-in user."""
    if actor.via_api_key:
        raise NotAuthenticated("API 密钥没有用户信息", code="not_a_user")
    return service.get_user(db=db, user_id=actor.id)


@router.get("/users", response_model=Page[UserOut], tags=["用户"])
def list_users(db: DbSession, actor: AdminUser, paging: Paging, role: Role | None = None):
    """List users."""
    items, total = service.list_users(db=db, role=role, offset=paging.offset, limit=paging.page_size)
    return Page(items=items, total=total, page=paging.page, page_size=paging.page_size)


@router.post("/users", response_model=UserOut, status_code=201, tags=["用户"])
def create_user(db: DbSession, actor: AdminUser, user_in: UserIn):
    """Create a user of any role."""
    return service.create_user(db=db, user_in=user_in)


@router.get("/users/{user_id}", response_model=UserOut, tags=["用户"])
def get_user(db: DbSession, actor: AdminUser, user_id: Id):
    """Show a user."""
    return service.get_user(db=db, user_id=user_id)


@router.patch("/users/{user_id}", response_model=UserOut, tags=["用户"])
def update_user(db: DbSession, actor: AdminUser, user_id: Id, user_in: UserUpdate):
    """Change a user's name, password, status or department."""
    return service.update_user(db=db, user_id=user_id, user_in=user_in)


@router.get("/api-keys", response_model=list[ApiKeyOut], tags=["用户"])
def list_api_keys(db: DbSession, actor: AdminUser):
    """List API keys (never their secrets)."""
    return service.list_api_keys(db=db)


@router.post("/api-keys", response_model=ApiKeyCreated, status_code=201, tags=["用户"])
def create_api_key(db: DbSession, actor: AdminUser, key_in: ApiKeyIn):
    """Create an API key for a system integration; the key is shown once."""
    key, plain = service.create_api_key(db=db, key_in=key_in, actor=actor)
    return ApiKeyCreated(**ApiKeyOut.model_validate(key).model_dump(), key=plain)


@router.post("/api-keys/{key_id}/revoke", response_model=ApiKeyOut, tags=["用户"])
def revoke_api_key(db: DbSession, actor: AdminUser, key_id: Id):
    """Revoke an API key."""
    return service.revoke_api_key(db=db, key_id=key_id)
