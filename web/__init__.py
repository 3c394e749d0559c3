"""The web UI: server-rendered Chinese pages over the same services as the API.

`install(app)` mounts the page routers, the static files (our own under /static, the npm packages
from node_modules under /static/vendor) and the HTML 404 page for paths outside the API.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from web.account import router as account_router
from web.admin import router as admin_router
from web.applications import firm_router as applications_firm_router
from web.applications import staff_router as applications_staff_router
from web.dashboard import router as dashboard_router
from web.desk import router as desk_router
from web.firm import router as firm_router
from web.firm_desk import router as firm_desk_router
from web.public import router as public_router
from web.staff import router as staff_router
from web.templating import STATIC_DIR, error_page

NODE_MODULES = Path(__file__).resolve().parent.parent / "node_modules"
# Served from the packages npm installed (package.json, `make` runs `npm ci`); nothing third-party is copied.
VENDOR = {
    "htmx": NODE_MODULES / "htmx.org" / "dist",
    "echarts": NODE_MODULES / "echarts" / "dist",
    "pico": NODE_MODULES / "@picocss" / "pico" / "css",
    # Swagger UI for /docs (api.app), so the API docs open without internet.
    "swagger-ui": NODE_MODULES / "swagger-ui-dist",
}
# Page routers; tests/web/test_web_roles.py walks every route of these. Account before public so
# /login and /signup are plain paths; firm pages live under /me.
WEB_ROUTERS = (account_router, public_router, firm_router, applications_firm_router)
# Staff pages (curator, desk officer, supervisor, dashboard) and the firm's enquiry pages;
# tests/web/test_web_staff_roles.py walks every route of these the same way.
STAFF_ROUTERS = (
    staff_router,
    applications_staff_router,
    desk_router,
    firm_desk_router,
    dashboard_router,
    admin_router,
)
_NOT_PAGES = ("/api/", "/static/", "/docs", "/openapi.json", "/healthz")


def install(app: FastAPI) -> None:
    """Add the web pages and their static files to the app."""
    for name, directory in VENDOR.items():
        # check_dir=False: the API still starts where `npm ci` has not run; pages then lack styling.
        app.mount(f"/static/vendor/{name}", StaticFiles(directory=directory, check_dir=False), name=f"vendor-{name}")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for router in (*WEB_ROUTERS, *STAFF_ROUTERS):
        app.include_router(router)

    json_handler = app.exception_handlers[StarletteHTTPException]

    async def not_found_page(request: Request, exc: Exception) -> Response:
        """Answer a browser asking for an unknown page with the Chinese 404 page; the API keeps JSON."""
        if not isinstance(exc, StarletteHTTPException):  # registered for HTTPException only
            raise exc
        wants_html = "text/html" in request.headers.get("accept", "")
        if exc.status_code == 404 and wants_html and not request.url.path.startswith(_NOT_PAGES):
            return error_page(request, 404, "页面不存在", "您访问的页面不存在或已被移除。")
        answer = json_handler(request, exc)
        return await answer if inspect.isawaitable(answer) else answer

    app.add_exception_handler(StarletteHTTPException, not_found_page)
