"""Who is calling: the principal from a bearer token or an API key, and role guards.

Every route declares who may call it, either with an `Allow(...)` dependency (possibly through
one of the Annotated aliases below) or with `public`. tests/api/test_roles.py walks every route
and fails when one declares neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from auth import scopes
from auth import service as auth_service
from auth.models import Role
from auth.service import Principal
from core import security
from core.config import Settings
from core.deps import AppSettings, DbSession
from core.errors import NotAuthenticated, PermissionDenied

_bearer = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="系统对接密钥")


async def optional_principal(
    db: DbSession,
    settings: AppSettings,
    token: Annotated[str | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal | None:
    """Return the caller from a bearer token or an API key; None when anonymous.

    Every authenticated request runs this. The token's signature is checked here, on the event loop
    (a token already seen is only compared with the clock: `security.decode_access_token`); its user
    (active, same token version: a revoked token fails at once, in every process) is one prepared
    select by primary key on the request's session, on a worker thread: its first statement checks a
    connection out of the pool, which may wait, and a wait on the event loop would stop the requests
    that are to give connections back (a deadlock once the pool is exhausted).
    """
    if token:
        claims = _claims(settings, token)
        return await run_in_threadpool(_token_principal, db, claims)
    if api_key:
        return await run_in_threadpool(_key_principal, db, api_key)
    return None


def _claims(settings: Settings, token: str) -> dict[str, Any]:
    """A bearer token's claims when its signature and expiry hold (no I/O); refuse it otherwise."""
    claims = security.decode_access_token(settings=settings, token=token)
    if not claims:
        raise NotAuthenticated("登录已失效，请重新登录", code="auth.invalid_token")
    return claims


def _token_principal(db: Session, claims: dict[str, Any]) -> Principal:
    """The token's user, if still active and at the token's version (one select; on a worker thread)."""
    principal = auth_service.principal_for_token(db=db, claims=claims)
    if principal is None:
        raise NotAuthenticated("登录已失效，请重新登录", code="auth.invalid_token")
    return principal


def _key_principal(db: Session, api_key: str) -> Principal:
    """The API key's principal, if the key is valid and not revoked (on a worker thread)."""
    principal = auth_service.principal_for_api_key(db=db, plain=api_key)
    if principal is None:
        raise NotAuthenticated("API 密钥无效或已吊销", code="auth.invalid_api_key")
    return principal


class Allow:
    """A dependency that admits only callers with one of the given roles.

    API keys must also hold a scope the route admits (`scopes`), or `read` for a GET, or `full`.
    """

    def __init__(self, *roles: Role, scopes: tuple[str, ...] = ()) -> None:
        self.roles = frozenset(roles)
        self.scopes = frozenset(scopes)

    # async: the check does no I/O, and as a plain def it would wait for a worker thread while the
    # request's session may hold the connection that signing in used (a deadlock when threads run out).
    async def __call__(
        self, request: Request, principal: Annotated[Principal | None, Depends(optional_principal)]
    ) -> Principal:
        return self.admit(principal, request.method)

    def admit(self, principal: Principal | None, method: str) -> Principal:
        """Return the principal when its role (and an API key's scopes) may call the route; refuse it otherwise."""
        if principal is None:
            raise NotAuthenticated()
        if principal.role not in self.roles:
            raise PermissionDenied()
        if principal.via_api_key and not scopes.allows(principal.scopes, method=method, route_scopes=self.scopes):
            raise PermissionDenied("API 密钥的权限范围不包含此操作", code="auth.scope_denied")
        return principal

    def __repr__(self) -> str:
        return f"Allow({', '.join(sorted(self.roles))})"


@dataclass(frozen=True)
class Caller:
    """Credentials read on the event loop, not yet checked against the database: `verify` does that.

    Given by `AllowInRoute` to a hot route that does all its database work in one hop to a worker
    thread (`core.deps.on_one_thread`): the route calls `verify` first thing on that thread, and
    gets the principal only from it.
    """

    guard: Allow
    method: str
    claims: dict[str, Any] | None = None  # a bearer token's claims (signature and expiry checked)
    api_key: str | None = None

    def verify(self, db: Session) -> Principal:
        """Return the caller, checked exactly as `optional_principal` and `Allow` check it (the user
        still active and at the token's version, read now; then role and scopes); refuse it otherwise."""
        if self.claims is not None:
            principal = _token_principal(db, self.claims)
        elif self.api_key is not None:
            principal = _key_principal(db, self.api_key)
        else:
            principal = None
        return self.guard.admit(principal, self.method)


class AllowInRoute(Allow):
    """`Allow`, with the database check moved onto the route's own worker thread (`Caller.verify`).

    `Allow` reads the caller's user on a worker thread of its own before the route runs on another:
    a hot read route declared with this one takes one hop to a worker thread instead of two (three
    with ending its session), which is what its cost per request is made of under load. Anonymous
    callers and bad signatures are refused here, on the event loop.
    """

    async def __call__(  # type: ignore[override]
        self,
        request: Request,
        settings: AppSettings,
        token: Annotated[str | None, Depends(_bearer)],
        api_key: Annotated[str | None, Depends(_api_key)],
    ) -> Caller:
        if token:
            return Caller(self, request.method, claims=_claims(settings, token))
        if api_key:
            return Caller(self, request.method, api_key=api_key)
        raise NotAuthenticated()


async def public(principal: Annotated[Principal | None, Depends(optional_principal)]) -> Principal | None:
    """Admit anyone; return the caller when signed in so responses can differ."""
    return principal


STAFF_ROLES = (Role.admin, Role.curator, Role.supervisor, Role.desk)

AnyUser = Annotated[Principal, Depends(Allow(*Role))]
AdminUser = Annotated[Principal, Depends(Allow(Role.admin))]
CuratorUser = Annotated[Principal, Depends(Allow(Role.admin, Role.curator))]
StaffUser = Annotated[Principal, Depends(Allow(*STAFF_ROLES))]
EnterpriseUser = Annotated[Principal, Depends(Allow(Role.enterprise))]
# Staff who look after firms (desk officers see firms only through their cases).
FirmStaff = Annotated[Principal, Depends(Allow(Role.admin, Role.curator, Role.supervisor))]
# ... and the firm itself, for its own profile.
FirmReader = Annotated[Principal, Depends(Allow(Role.admin, Role.curator, Role.supervisor, Role.enterprise))]
FirmEditor = Annotated[Principal, Depends(Allow(Role.admin, Role.curator, Role.enterprise))]
PublicUser = Annotated[Principal | None, Depends(public)]
# The same roles, checked by the route itself on its one worker thread (`Caller.verify`).
EnterpriseCaller = Annotated[Caller, Depends(AllowInRoute(Role.enterprise))]
FirmReaderCaller = Annotated[Caller, Depends(AllowInRoute(Role.admin, Role.curator, Role.supervisor, Role.enterprise))]
