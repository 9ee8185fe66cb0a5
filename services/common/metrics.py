"""Prometheus metrics: request count and latency labelled by route template, never raw path.

With several uvicorn workers (``<SERVICE>_WORKERS`` > 1) ``services.common.serve`` sets
``PROMETHEUS_MULTIPROC_DIR`` before the workers start: prometheus_client then keeps every
worker's values in files there, and ``/metrics`` (answered by any one worker) adds them up.
Gauges say how (``multiprocess_mode``); the per-process ``process_*`` / ``python_*`` series are
not exported in that mode.
"""

from __future__ import annotations

import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests handled, by route template and status code",
    ["service", "method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency, by route template",
    ["service", "method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

UNMATCHED_ROUTE = "<unmatched>"


class MetricsMiddleware:
    """Pure ASGI middleware (no per-request task overhead) timing every HTTP request."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            template = route_template(scope)
            method = scope["method"]
            HTTP_REQUESTS.labels(self.service, method, template, str(status)).inc()
            HTTP_LATENCY.labels(self.service, method, template).observe(time.perf_counter() - start)


def route_template(scope: Scope) -> str:
    """The matched route's full path template (``/v1/sites/{code}``), or ``<unmatched>``."""
    # FastAPI >= 0.160 keeps included routers nested: the route's own ``path`` lacks the
    # include prefixes, and the full template lives on the effective route context.
    effective = (scope.get("fastapi") or {}).get("effective_route_context")
    template = getattr(effective, "path_format", None)
    if template is None:
        template = getattr(scope.get("route"), "path", None)
    return template or UNMATCHED_ROUTE


def multiprocess_dir() -> str | None:
    """The shared metrics folder when workers run in multiprocess mode, else None."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition() -> bytes:
    """Every metric in the Prometheus text format: all workers' when several share the port."""
    if multiprocess_dir() is None:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)


async def metrics_endpoint(_: Request) -> Response:
    """Expose the metrics in the Prometheus text format."""
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
