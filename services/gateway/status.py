"""Readiness of the gateway and of the services behind it.

The gateway is ready when its own database is (so an orchestrator never restarts it because
ingest is down); the services' state is reported alongside, and in ``/api/v1/status``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from services.common.errors import error_body
from services.common.migrations import is_up_to_date
from services.gateway.authn import ViewerDep
from services.gateway.config import GatewaySettings

router = APIRouter(prefix="/api/v1", tags=["status"])
_READY_PROBE_TIMEOUT_S = 0.5


async def _probe(name: str, client: httpx.AsyncClient, timeout_s: float) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        answer = await client.get("/ready", timeout=timeout_s)
    except httpx.TimeoutException:
        return {"service": name, "status": "unavailable", "detail": f"no answer in {timeout_s:g} s"}
    except httpx.TransportError:
        return {"service": name, "status": "unavailable", "detail": "not answering"}
    latency_ms = round((time.perf_counter() - start) * 1000, 1)
    if answer.status_code == 200:
        return {"service": name, "status": "ready", "latency_ms": latency_ms}
    try:
        detail = str(answer.json().get("detail", ""))
    except ValueError:
        detail = answer.text[:200]
    return {"service": name, "status": "not_ready", "detail": detail, "latency_ms": latency_ms}


async def upstream_status(app: FastAPI, timeout_s: float | None = None) -> list[dict[str, Any]]:
    """Each internal service's /ready, probed concurrently with a short timeout."""
    settings: GatewaySettings = app.state.settings
    clients = {name: upstream.client() for name, upstream in app.state.upstreams.items()}
    timeout_s = timeout_s or settings.status_timeout_s
    return list(
        await asyncio.gather(*(_probe(name, client, timeout_s) for name, client in clients.items()))
    )


def _check_own_database(app: FastAPI) -> None:
    app.state.db.ping()
    if not app.state.migrations_ok:
        if not is_up_to_date("gateway", app.state.settings.database_url):
            raise RuntimeError("database migrations are not at head; run the migrations")
        app.state.migrations_ok = True


async def ready(request: Request) -> JSONResponse:
    """Readiness: the gateway's database and migrations; internal services reported only."""
    # A hung service must not make this probe slower than an orchestrator's probe timeout.
    probes = asyncio.ensure_future(upstream_status(request.app, _READY_PROBE_TIMEOUT_S))
    try:
        await run_in_threadpool(_check_own_database, request.app)
    except Exception as exc:  # any failure means "not ready", with the reason
        reason = str(exc).splitlines()[0] if str(exc) else repr(exc)
        services = await probes
        return JSONResponse(
            error_body("NotReady", reason, services=services),
            status_code=503,
            headers={"Retry-After": "5"},
        )
    return JSONResponse({"status": "ready", "service": "gateway", "services": await probes})


@router.get("/status", summary="State of the gateway and of each internal service")
async def status(request: Request, _: ViewerDep) -> dict[str, Any]:
    """Each internal service's readiness (ready / not_ready / unavailable) and latency."""
    return {"gateway": "ready", "services": await upstream_status(request.app)}


def replace_ready_probe(app: FastAPI) -> None:
    """Swap create_app's /ready for the gateway's, which also reports downstream services."""
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) != "/ready"]
    app.add_api_route(
        "/ready",
        ready,
        methods=["GET"],
        tags=["probes"],
        summary="Readiness: own database and migrations; internal services reported, not required",
    )
