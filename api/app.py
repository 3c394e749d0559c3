"""The FastAPI application factory."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.datastructures import State

from api.guards import BodyLimit, RefuseNul, SecurityHeaders
from api.io_router import router as io_router
from applications.router import router as applications_router
from auth.router import router as auth_router
from auth.throttle import PhoneCodeThrottle, SignInThrottle
from catalog.router import router as catalog_router
from core import heap
from core.config import Settings, get_settings
from core.db import Database
from core.errors import install_error_handlers
from core.ratelimit import RateLimiter, make_storage
from core.scheduler import start_in_process, stop_in_process
from desk.ratings_router import router as desk_ratings_router
from desk.router import router as desk_router
from desk.stats_router import router as desk_stats_router
from matcher.engine import Matcher
from matcher.intake import router as intake_router
from matcher.router import router as matcher_router
from profiles.router import router as profiles_router
from push.router import router as push_router
from web import install as install_web

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
# Every router of the versioned API; tests/api/test_roles.py walks these. io_router comes first
# and matcher_router come first so /policies/export and /policies/search are not taken for
# /policies/{policy_id}.
ROUTERS = (
    io_router,
    matcher_router,
    auth_router,
    catalog_router,
    profiles_router,
    push_router,
    applications_router,
    desk_router,
    desk_stats_router,
    desk_ratings_router,
    intake_router,
)


def warm_up(state: State) -> None:
    """Load the policy set, the embedder, the policy index and the desk's knowledge base before the first user needs them.

    Vectors come from (and go to) the on-disk embedding cache, so after the first start this takes seconds.
    """
    import datetime as dt
    import time

    from desk import answer
    from matcher import search as matcher_search
    from matcher import wordbatch

    started, cpu = time.perf_counter(), time.process_time()
    try:
        # On a first start the worker's catch-up embeds every firm meanwhile: the warm-up waits for it
        # rather than halve its cores. It waits holding nothing, so a request meanwhile embeds what it needs.
        state.matcher.cache.wait_for_batches()
        with state.db.session() as db:
            # The policy set every recommendation page reads (1–3 CPU s at 10k policies): built here, not
            # by the first request that reaches this process, which would wait for it with every
            # request queued behind it (seen as 7 s stalls at 32 clients in bench.serving).
            policies = state.matcher.policy_sets.get(db, today=dt.date.today())
            # Stored verdicts are worded from their policy's compiled rules (`matcher.wordbatch.read`).
            for policy in policies.policies:
                if policy.rules is not None:
                    wordbatch.template(policy.rules)
            answer.retrieve(db=db, matcher=state.matcher, question="小微企业房租补贴怎么申请")
            matcher_search.search(db=db, matcher=state.matcher, q="研发费用加计扣除", limit=1)
        heap.settle()  # what warm-up loaded stays for the life of the process (core.heap)
        # Process CPU (every thread's, requests meanwhile included): what warming cost this worker.
        log.info(
            "warm-up done in %.1f s (%.1f CPU s): embedder, policy index and desk knowledge base ready",
            time.perf_counter() - started,
            time.process_time() - cpu,
        )
    except Exception:  # noqa: BLE001 - warming is an optimisation; requests build what they need anyway
        log.exception("warm-up failed; the first requests will build what they need")


def create_app(
    settings: Settings | None = None, *, database: Database | None = None, matcher: Matcher | None = None
) -> FastAPI:
    """Build the app with its settings and database held on app.state."""
    settings = settings or get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Jobs run in `huiqi worker`; the API only enqueues, unless HUIQI_SCHEDULER_ENABLED asks it to run them too.
        start_in_process(app.state)
        if settings.warm_up:
            threading.Thread(target=warm_up, args=(app.state,), name="huiqi-warm-up", daemon=True).start()
        try:
            yield
        finally:
            stop_in_process(app.state)

    app = FastAPI(
        lifespan=lifespan,
        title="惠企 Huiqi",
        version="0.1.0",
        description="惠企政策目录、企业画像、政策匹配、精准推送与企业诉求服务台的接口。",
        docs_url=None,  # served below from the local Swagger UI package, its inline script carrying the CSP nonce
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.db = database or Database(settings.resolved_database_url)
    # The embedder and indexes load on first use and stay for the life of the process.
    if matcher is None:
        matcher = Matcher(settings)
        # With a warm-up, the model loads in the background and no request waits for it.
        matcher.wait_for_model = not settings.warm_up
    app.state.matcher = matcher
    limit_storage = make_storage(settings.rate_limit_storage)
    app.state.calculator_limiter = RateLimiter(settings.calculator_per_minute, storage=limit_storage, namespace="calc")
    app.state.search_limiter = RateLimiter(settings.search_per_minute, storage=limit_storage, namespace="search")
    app.state.sign_in_throttle = SignInThrottle.from_settings(settings, limit_storage)
    app.state.phone_code_throttle = PhoneCodeThrottle.from_settings(settings, limit_storage)
    install_error_handlers(app)

    for router in ROUTERS:
        app.include_router(router, prefix=API_PREFIX)
    # The browser pages (web/): not part of ROUTERS or the OpenAPI schema; tests/web/test_web_roles.py walks them.
    install_web(app)

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        """Swagger UI from npm (node_modules/swagger-ui-dist, so it works offline); its one inline script
        is allowed by this response's CSP nonce."""
        page = get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} · 接口文档",
            swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
        )
        nonce = request.state.csp_nonce
        body = bytes(page.body).decode().replace("<script>", f'<script nonce="{nonce}">')
        return HTMLResponse(body)

    app.add_middleware(RefuseNul)
    app.add_middleware(BodyLimit, settings=settings)
    app.add_middleware(SecurityHeaders)

    @app.get("/healthz", tags=["运维"], include_in_schema=False)
    def healthz() -> dict:
        """Answer liveness probes."""
        return {"status": "ok"}

    return app
