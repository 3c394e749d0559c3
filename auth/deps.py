"""Who is calling: the principal from a bearer token or an API key, and role guards.

Every route declares who may call it, either with an `Allow(...)` dependency (possibly through
one of the Annotated aliases below) or with `public`. tests/api/test_roles.py walks every route
and fails when one declares neither.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from starlette.concurrency import run_in_threadpool

from auth import scopes
from auth import service as auth_service
from auth.models import Role
from auth.service import Principal
from core import security
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
        claims = security.decode_access_token(settings=settings, token=token)
        principal = None
        if claims:
            principal = await run_in_threadpool(lambda: auth_service.principal_for_token(db=db, claims=claims))
        if principal is None:
            raise NotAuthenticated("登录已失效，请重新登录", code="auth.invalid_token")
        return principal
    if api_key:
        principal = await run_in_threadpool(lambda: auth_service.principal_for_api_key(db=db, plain=api_key))
        if principal is None:
            raise NotAuthenticated("API 密钥无效或已吊销", code="auth.invalid_api_key")
        return principal
    return None


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
        if principal is None:
            raise NotAuthenticated()
        if principal.role not in self.roles:
            raise PermissionDenied()
        if principal.via_api_key and not scopes.allows(
            principal.scopes, method=request.method, route_scopes=self.scopes
        ):
            raise PermissionDenied("API 密钥的权限范围不包含此操作", code="auth.scope_denied")
        return principal

    def __repr__(self) -> str:
        return f"Allow({', '.join(sorted(self.roles))})"


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
