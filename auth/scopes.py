"""What an API key may do: scopes narrow a key's role to the routes an integration needs.

A signed-in person is limited by their role alone. An API key is limited by its role AND its scopes:
- `desk:intake` (the 12345 hotline and similar): file cases and read the cases this key filed; nothing else.
- `read`: every GET its role allows.
- `full`: everything its role allows (what keys could do before scopes; keys made before them keep it).
Routes name the specific scopes they admit in `Allow(..., scopes=(...))`.
"""

from __future__ import annotations

DESK_INTAKE = "desk:intake"
READ = "read"
FULL = "full"

SCOPES = {
    DESK_INTAKE: "诉求对接：提交诉求、查看本密钥提交的诉求（如 12345 热线）",
    READ: "只读：按角色读取数据",
    FULL: "全部：按角色的全部权限",
}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def allows(key_scopes: frozenset[str], *, method: str, route_scopes: frozenset[str]) -> bool:
    """Tell whether a key with these scopes may call a route (method, and the scopes the route admits)."""
    if FULL in key_scopes:
        return True
    if READ in key_scopes and method.upper() in SAFE_METHODS:
        return True
    return bool(key_scopes & route_scopes)


def label(scope: str) -> str:
    """Return a scope's Chinese description."""
    return SCOPES.get(scope, scope)
