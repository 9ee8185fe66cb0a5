"""A CSV export whose ingest fails mid-stream: never mistaken for a complete file.

A small local HTTP server stands in for ingest: it answers the site and the first readings
windows, then 503 (as ingest does when its database goes away).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import uvicorn
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from services.common.stack import free_port
from services.gateway.config import GatewaySettings
from services.gateway.main import build_app
from tests.conftest import serve_app, use_session

Headers = Callable[[str], dict[str, str]]
SITE = {"code": "FLAKY", "name": "Flaky", "timezone": "UTC"}


async def _site(_: Request) -> JSONResponse:
    return JSONResponse(SITE)


async def _readings(request: Request) -> JSONResponse:
    start = request.query_params["start"]
    if start >= "2026-01-02":  # from the second window on, ingest has gone
        return JSONResponse({"error": "NotReady", "detail": "database unavailable"}, 503)
    items = [
        {"ts": f"{start[:10]}T{h:02d}:00:00+00:00", "consumption_kwh": 1.0,
         "production_kwh": 0.5, "balance_kwh": -0.5, "n_readings": 1}
        for h in range(24)
    ]  # fmt: skip
    return JSONResponse({"items": items})


@pytest.fixture(scope="module")
def flaky_ingest() -> Iterator[str]:
    app = Starlette(
        routes=[Route("/v1/sites/FLAKY", _site), Route("/v1/sites/FLAKY/readings", _readings)]
    )
    with serve_app(app) as url:
        yield url


def _serve(app: ASGIApp, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return server, thread


def test_csv_export_interrupted_upstream_is_cut_without_checksum(
    session: Session, gateway_settings: GatewaySettings, headers_for: Headers, flaky_ingest: str
) -> None:
    # Arrange: the gateway under uvicorn (what clients really talk to), on the test's session.
    app = build_app(gateway_settings.model_copy(update={"ingest_url": flaky_ingest}))
    use_session(app, session)
    port = free_port()
    server, thread = _serve(app, port)
    params = {"site": "FLAKY", "start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z",
              "resolution": "raw"}  # fmt: skip
    chunks: list[bytes] = []
    try:
        # Act
        with httpx.stream(
            "GET", f"http://127.0.0.1:{port}/api/v1/exports/readings.csv", params=params,
            headers=headers_for("viewer"), timeout=10,
        ) as r:  # fmt: skip
            status = r.status_code
            with pytest.raises(httpx.RemoteProtocolError):  # the transfer is cut, not ended
                for chunk in r.iter_raw():
                    chunks.append(chunk)
    finally:
        server.should_exit = True
        thread.join(5)
    text = b"".join(chunks).decode()

    # Assert
    assert status == 200
    assert "# ERROR: export incomplete after 24 rows" in text
    assert "# sha256:" not in text
