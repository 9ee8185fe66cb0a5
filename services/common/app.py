"""``create_app``: the one place that switches on every service-wide concern."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from services.common.body_limit import BodyLimitMiddleware
from services.common.db import Database
from services.common.errors import error_body, install_error_handlers
from services.common.inputs import install_data_error_handler
from services.common.logs import configure_logging
from services.common.methods import install_method_not_allowed
from services.common.metrics import MetricsMiddleware, metrics_endpoint
from services.common.migrations import is_up_to_date
from services.common.openapi import install_openapi
from services.common.query_params import RepeatedQueryMiddleware
from services.common.settings import ServiceSettings

log = logging.getLogger("spe.app")
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_app(
    service: str,
    settings: ServiceSettings,
    *,
    routers: Sequence[APIRouter] = (),
    lifespan: Lifespan | None = None,
    description: str = "",
    upload_limit: tuple[int, str] | None = None,
) -> FastAPI:
    """Build a service's FastAPI app with DB, errors, metrics, logging and probes.

    ``upload_limit``: (bytes, setting name) for the routes ending in ``/import``, which take
    files larger than MAX_BODY_MB.
    """
    configure_logging(service, settings.log_level, settings.log_json)

    @asynccontextmanager
    async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("starting", extra={"port": getattr(settings, f"{service}_port", None)})
        if lifespan is None:
            yield
        else:
            async with lifespan(app):
                yield
        app.state.db.engine.dispose()
        log.info("stopped")

    app = FastAPI(
        title=f"SP-E {service}",
        description=description,
        version="1.0.0",
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.service = service
    app.state.db = Database(
        settings.database_url,
        settings.db_pool_size,
        settings.db_connect_timeout_s,
        settings.db_read_pool_size,
    )
    app.state.migrations_ok = False
    install_error_handlers(app)
    install_method_not_allowed(app)
    install_data_error_handler(app)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=int(settings.max_body_mb * 2**20),
        upload_bytes=upload_limit[0] if upload_limit else None,
        upload_setting=upload_limit[1] if upload_limit else "MAX_BODY_MB",
    )
    app.add_middleware(RepeatedQueryMiddleware, fastapi_app=app)
    app.add_middleware(MetricsMiddleware, service=service)

    @app.get("/health", tags=["probes"], summary="Liveness: the process answers")
    async def health() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/ready", tags=["probes"], summary="Readiness: database reachable, migrations applied")
    async def ready(request: Request) -> JSONResponse:
        try:
            await run_in_threadpool(_check_ready, request.app)
        except Exception as exc:  # any failure means "not ready", with the reason
            return JSONResponse(
                error_body("NotReady", str(exc).splitlines()[0] if str(exc) else repr(exc)),
                status_code=503,
                headers={"Retry-After": "5"},
            )
        return JSONResponse({"status": "ready", "service": service})

    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    for router in routers:
        app.include_router(router)
    install_openapi(app)
    return app


def _check_ready(app: FastAPI) -> None:
    app.state.db.ping()
    if not app.state.migrations_ok:
        if not is_up_to_date(app.state.service, app.state.settings.database_url):
            raise RuntimeError("database migrations are not at head; run the migrations")
        app.state.migrations_ok = True
