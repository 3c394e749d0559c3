"""Request dependencies: the database session, the caller and role checks.

Every route declares who may call it, either with an `Allow(...)` dependency (possibly through
one of the Annotated aliases below) or with `public`. tests/api/test_roles.py walks every route
and fails when one declares neither.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from sqlalchemy.orm import Session

from auth import service as auth_service
from auth.models import Role
from auth.service import Principal
from core import security
from core.config import Settings
from core.errors import NotAuthenticated, PermissionDenied


def get_settings_dep(request: Request) -> Settings:
    """Return the settings the app was built with."""
    return request.app.state.settings


def get_db(request: Request) -> Iterator[Session]:
    """Yield a session for one request: commit on success, roll back on any error."""
    # Requests that change things take SQLite's write lock up front (waiting for it rather than
    # failing when a background job commits between their read and their write).
    db = request.app.state.db
    session: Session = (db.sessionmaker if request.method in ("GET", "HEAD", "OPTIONS") else db.writer)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# scope="function": commit before the response is sent, so a client that gets 200 sees its write
# and its next request cannot race the commit (the default scope would commit after sending).
DbSession = Annotated[Session, Depends(get_db, scope="function")]
AppSettings = Annotated[Settings, Depends(get_settings_dep)]

_bearer = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="系统对接密钥")


def optional_principal(
    db: DbSession,
    settings: AppSettings,
    token: Annotated[str | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal | None:
    """Return the caller from a bearer token or an API key; None when anonymous."""
    if token:
        claims = security.decode_access_token(settings=settings, token=token)
        principal = auth_service.principal_for_token(db=db, claims=claims) if claims else None
        if principal is None:
            raise NotAuthenticated("登录已失效，请重新登录", code="invalid_token")
        return principal
    if api_key:
        principal = auth_service.principal_for_api_key(db=db, plain=api_key)
        if principal is None:
            raise NotAuthenticated("API 密钥无效或已吊销", code="invalid_api_key")
        return principal
    return None


class Allow:
    """A dependency that admits only callers with one of the given roles."""

    def __init__(self, *roles: Role) -> None:
        self.roles = frozenset(roles)

    def __call__(self, principal: Annotated[Principal | None, Depends(optional_principal)]) -> Principal:
        if principal is None:
            raise NotAuthenticated()
        if principal.role not in self.roles:
            raise PermissionDenied()
        return principal

    def __repr__(self) -> str:
        return f"Allow({', '.join(sorted(self.roles))})"


def public(principal: Annotated[Principal | None, Depends(optional_principal)]) -> Principal | None:
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


class PageParams:
    """Page number and size from the query string, with a ceiling from settings."""

    def __init__(
        self,
        settings: AppSettings,
        page: Annotated[int, Query(ge=1, description="页码，从1开始")] = 1,
        page_size: Annotated[int, Query(ge=1, le=1000, description="每页条数")] = 20,
    ) -> None:
        self.page = page
        self.page_size = min(page_size, settings.page_size_max)

    @property
    def offset(self) -> int:
        """Return the row offset of this page."""
        return (self.page - 1) * self.page_size


Paging = Annotated[PageParams, Depends()]
