"""Gateway: the only public entry point (auth, public API, exports, the web UI).

Run with ``uvicorn --factory services.gateway.main:build_app``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware

from services.common.app import create_app
from services.gateway import (
    admin_api,
    auth_api,
    exports,
    public_api,
    static,
    status,
    subscriptions,
)
from services.gateway.authn import AuthCache
from services.gateway.config import GatewaySettings
from services.gateway.fastread import CachedReadMiddleware
from services.gateway.headers import SecurityHeadersMiddleware
from services.gateway.proxy import close_upstreams, open_upstreams
from services.gateway.readcache import ReadCache
from services.gateway.service import ensure_first_admin

log = logging.getLogger("spe.gateway")

DESCRIPTION = """SP-E public API for operators and integrators.

Authenticate with `POST /api/v1/auth/login` (an access JWT, sent as
`Authorization: Bearer <token>`) or with an API token created by an admin
(`Authorization: Bearer spe_…` or `X-API-Key: spe_…`). Errors always have the shape
`{"error": "Name", "detail": "what to do"}`. See docs/integrations.md.
"""


def _bootstrap_admin(app: FastAPI) -> None:
    settings: GatewaySettings = app.state.settings
    with app.state.db.sessionmaker() as session:
        created = ensure_first_admin(session, settings)
        session.commit()
    if created:
        log.info("created the first admin user", extra={"username": created})


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Create the first admin if no user exists; open one HTTP client per internal service."""
    try:
        await run_in_threadpool(_bootstrap_admin, app)
    except Exception:  # the database may be late: /ready reports it, no crash loop here
        log.exception("could not check for / create the first admin user")
    app.state.upstreams = open_upstreams(app.state.settings)
    try:
        yield
    finally:
        await app.state.read_cache.stop_refreshing()
        await close_upstreams(app)


def build_app(settings: GatewaySettings | None = None) -> FastAPI:
    """The gateway app, configured from the environment unless settings are given."""
    settings = settings or GatewaySettings()
    app = create_app(
        "gateway",
        settings,
        routers=[
            auth_api.router,
            admin_api.router,
            status.router,
            public_api.build_router(),
            exports.router,
            subscriptions.router,
        ],
        lifespan=lifespan,
        description=DESCRIPTION,
        # Imports are streamed on to ingest: refused here already past ingest's own limit.
        upload_limit=(settings.ingest_max_upload_mb * 2**20, "INGEST_MAX_UPLOAD_MB"),
    )
    app.state.auth_cache = AuthCache(ttl_s=settings.auth_cache_s)
    app.state.read_cache = ReadCache(ttl_s=settings.gateway_read_cache_s)
    status.replace_ready_probe(app)
    static.mount_ui(app, settings)  # the router's fallback: every route above keeps priority
    # Innermost of the middlewares: the common checks and the metrics see its answers too.
    app.user_middleware.append(Middleware(CachedReadMiddleware, fastapi_app=app))
    app.add_middleware(SecurityHeadersMiddleware, hsts=settings.environment == "production")
    return app
