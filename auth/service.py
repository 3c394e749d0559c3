"""User accounts, sign-in and API keys."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from auth.models import ApiKey, Role, User
from auth.passwords import check_password_policy
from auth.schemas import ApiKeyIn, Token, UserIn, UserUpdate
from core import security
from core.config import Settings
from core.db import utcnow
from core.errors import Conflict, FieldError, NotFound, PermissionDenied, ValidationFailed


@dataclass(frozen=True)
class Principal:
    """Who is calling: a signed-in user or a system integration's API key."""

    id: int
    role: Role
    name: str
    department_id: int | None = None
    enterprise_id: int | None = None
    via_api_key: bool = False
    scopes: frozenset[str] = frozenset()  # an API key's scopes (auth.scopes); people are limited by role alone

    @property
    def is_staff(self) -> bool:
        """Tell whether the caller works for the platform (any role but enterprise)."""
        return self.role != Role.enterprise

    @property
    def own_enterprise_id(self) -> int:
        """Return the firm an enterprise user acts for; refuse a caller bound to none."""
        if self.enterprise_id is None:
            raise PermissionDenied("当前账号未绑定企业", code="auth.no_enterprise")
        return self.enterprise_id

    @property
    def user_id(self) -> int | None:
        """Return the user id, or None for an API key."""
        return None if self.via_api_key else self.id


def principal_for_user(user: User) -> Principal:
    """Wrap a user as the calling principal."""
    return Principal(
        id=user.id,
        role=user.role,
        name=user.display_name,
        department_id=user.department_id,
        enterprise_id=user.enterprise_id,
    )


def _check_binding(role: Role, department_id: int | None, enterprise_id: int | None) -> None:
    errors = []
    if role == Role.desk and department_id is None:
        errors.append(FieldError("department_id", "业务专员必须指定所属部门", "required"))
    if role == Role.enterprise and enterprise_id is None:
        errors.append(FieldError("enterprise_id", "企业用户必须绑定企业", "required"))
    if role != Role.enterprise and enterprise_id is not None:
        errors.append(FieldError("enterprise_id", "只有企业用户可以绑定企业", "not_allowed"))
    if errors:
        raise ValidationFailed(errors=errors)


def get_user(*, db: Session, user_id: int) -> User:
    """Return a user or raise NotFound."""
    user = db.get(User, user_id)
    if user is None:
        raise NotFound("用户不存在", code="auth.user_not_found")
    return user


def get_user_by_username(*, db: Session, username: str) -> User | None:
    """Return the user with this login name, if any."""
    return db.scalar(select(User).where(func.lower(User.username) == username.lower()))


def list_users(*, db: Session, role: Role | None = None, offset: int = 0, limit: int = 50) -> tuple[list[User], int]:
    """Return a page of users and the total count."""
    q = select(User)
    if role:
        q = q.where(User.role == role)
    total = db.scalar(select(func.count()).select_from(q.subquery())) or 0
    return list(db.scalars(q.order_by(User.id).offset(offset).limit(limit))), total


def create_user(*, db: Session, user_in: UserIn) -> User:
    """Create a user with a hashed password."""
    _check_binding(user_in.role, user_in.department_id, user_in.enterprise_id)
    if get_user_by_username(db=db, username=user_in.username):
        raise Conflict(
            "登录名已被使用", code="auth.username_taken", errors=[FieldError("username", "登录名已被使用", "taken")]
        )
    check_password_policy(user_in.password, username=user_in.username)
    user = User(
        username=user_in.username,
        password_hash=security.hash_password(user_in.password),
        display_name=user_in.display_name,
        role=user_in.role,
        department_id=user_in.department_id if user_in.role == Role.desk else None,
        enterprise_id=user_in.enterprise_id,
        email=user_in.email,
        phone=user_in.phone,
    )
    db.add(user)
    db.flush()
    return user


def update_user(*, db: Session, user_id: int, user_in: UserUpdate) -> User:
    """Change a user's name, password, role, status or contact.

    A new password, another role or deactivation ends every session the user has (their tokens stop working).
    """
    user = get_user(db=db, user_id=user_id)
    data = user_in.model_dump(exclude_unset=True)
    revoke = False
    if "password" in data:
        password = data.pop("password")
        check_password_policy(password, username=user.username)
        user.password_hash = security.hash_password(password)
        revoke = True
    if "role" in data and data["role"] != user.role:
        revoke = True
        if data["role"] != Role.desk and "department_id" not in data:
            data["department_id"] = None
    if data.get("is_active") is False and user.is_active:
        revoke = True
    for key, value in data.items():
        setattr(user, key, value)
    _check_binding(user.role, user.department_id, user.enterprise_id)
    if revoke:
        revoke_tokens(user)
    db.flush()
    return user


def revoke_tokens(user: User) -> None:
    """End every session of a user: tokens issued before this call no longer pass `principal_for_token`."""
    user.token_version = (user.token_version or 0) + 1


def change_own_password(*, db: Session, user_id: int, current_password: str, new_password: str) -> User:
    """Let a user replace their password after proving the current one; their other sessions end."""
    user = get_user(db=db, user_id=user_id)
    if not security.verify_password(current_password, user.password_hash):
        raise ValidationFailed(
            "当前密码不正确",
            code="auth.bad_current_password",
            errors=[FieldError("current_password", "当前密码不正确", "mismatch")],
        )
    check_password_policy(new_password, username=user.username, field="new_password")
    user.password_hash = security.hash_password(new_password)
    revoke_tokens(user)
    db.flush()
    return user


def authenticate(*, db: Session, username: str, password: str) -> User | None:
    """Return the active user whose password matches, recording the sign-in."""
    user = get_user_by_username(db=db, username=username)
    if user is None:
        # Hash anyway so a missing user takes as long as a wrong password.
        security.verify_password(
            password, "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$invalidinvalidinvalidinvalidinva"
        )
        return None
    if not user.is_active or not security.verify_password(password, user.password_hash):
        return None
    user.last_login_at = utcnow()
    return user


def create_api_key(*, db: Session, key_in: ApiKeyIn, actor: Principal) -> tuple[ApiKey, str]:
    """Create an API key; return it and the plain key, which is never stored."""
    _check_binding(key_in.role, key_in.department_id, None)
    if key_in.role == Role.enterprise:
        raise ValidationFailed(errors=[FieldError("role", "API 密钥不能使用企业角色", "not_allowed")])
    plain, prefix, digest = security.new_api_key()
    key = ApiKey(
        name=key_in.name,
        prefix=prefix,
        key_hash=digest,
        role=key_in.role,
        scopes=",".join(dict.fromkeys(key_in.scopes)),
        department_id=key_in.department_id,
        created_by_id=actor.user_id,
    )
    db.add(key)
    db.flush()
    return key, plain


def list_api_keys(*, db: Session) -> list[ApiKey]:
    """Return every API key, newest first."""
    return list(db.scalars(select(ApiKey).order_by(ApiKey.id.desc())))


def revoke_api_key(*, db: Session, key_id: int) -> ApiKey:
    """Revoke an API key; it stops working at once."""
    key = db.get(ApiKey, key_id)
    if key is None:
        raise NotFound("API 密钥不存在", code="auth.api_key_not_found")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    db.flush()
    return key


def principal_for_api_key(*, db: Session, plain: str) -> Principal | None:
    """Return the principal of a valid, unrevoked API key."""
    key = db.scalar(select(ApiKey).where(ApiKey.key_hash == security.hash_api_key(plain)))
    if key is None or key.revoked_at is not None:
        return None
    key.last_used_at = utcnow()
    return Principal(
        id=key.id,
        role=key.role,
        name=key.name,
        department_id=key.department_id,
        via_api_key=True,
        scopes=frozenset(key.scope_list),
    )


def principal_for_token(*, db: Session, claims: dict) -> Principal | None:
    """Return the principal of a decoded token, if its user still exists and is active."""
    try:
        user_id = int(claims["sub"])
    except (KeyError, ValueError):
        return None
    # Every authenticated request runs this: one prepared Core select, no ORM identity load.
    user = db.connection().execute(_TOKEN_USER, {"user_id": user_id}).first()
    if user is None or not user.is_active:
        return None
    # A token without "tv" was issued at version 0; any bump (sign-out everywhere, new password, new role) ends it.
    version = claims.get("tv", 0)
    if not isinstance(version, int) or version != (user.token_version or 0):
        return None
    return Principal(
        id=user.id,
        role=user.role,
        name=user.display_name,
        department_id=user.department_id,
        enterprise_id=user.enterprise_id,
    )


_TOKEN_USER = select(
    User.id,
    User.is_active,
    User.token_version,
    User.role,
    User.display_name,
    User.department_id,
    User.enterprise_id,
).where(User.id == bindparam("user_id"))


def access_token_for(*, settings: Settings, user: User) -> str:
    """Return a signed token for a user, carrying the user's current token version."""
    return security.create_access_token(
        settings=settings, subject=str(user.id), claims={"role": user.role, "tv": user.token_version or 0}
    )


def issue_token(*, settings: Settings, user: User) -> Token:
    """Return a signed bearer token for a user who just proved who they are."""
    return Token(
        access_token=access_token_for(settings=settings, user=user),
        expires_in=settings.access_token_minutes * 60,
        role=user.role,
    )
