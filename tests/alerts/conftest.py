"""Alerts fixtures: a real ingest process with simulated data, and local peers.

* ``ingest``: ingest as a uvicorn process on a database of its own, loaded once per session
  through its API by the simulator (3 sites, 42 days, labelled anomalies); tests add their
  own hand-made sites through the same API (``ingest.site(...)``, ``ingest.readings(...)``).
* ``forecast``: a local HTTP server answering the forecast service's documented contract
  (the forecast service is not built yet), with per-test answers.
* ``webhook`` / ``smtp``: a local webhook receiver (optionally failing its first N calls) and
  an aiosmtpd server, as real peers of the notifier.
* ``client``: the alerts app in-process on the test's rolled-back session.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, sessionmaker

from services.alerts.config import AlertsSettings
from services.alerts.main import build_app
from services.alerts.notifier import Notifier
from services.common.http import ServiceAuth
from services.common.settings import ServiceSettings
from services.common.stack import ServiceProcess, free_port, start_services
from services.ingest.simulator.catalog import site_specs
from services.ingest.simulator.client import IngestClient, backfill, current_hour
from tests.conftest import TEST_SECRET, bind_session, process_env, token_for

SIM_SITES = 3
SIM_DAYS = 42
SIM_SEED = 42
WEBHOOK_SECRET = "webhook-test-secret"
_codes = itertools.count(1)


class IngestAPI:
    """A real ingest process and a client to write hand-made test data through its API."""

    def __init__(self, proc: ServiceProcess, env: dict[str, str]) -> None:
        self.proc = proc
        self.env = env
        settings = ServiceSettings(secret_key=TEST_SECRET, environment="test")
        self.http = httpx.Client(base_url=proc.url, auth=ServiceAuth(settings, "tests"), timeout=30)
        self.end = current_hour()
        self.sites = [s.code for s in site_specs(SIM_SITES)]

    @property
    def url(self) -> str:
        return self.proc.url

    def site(self, capacity_kw: float = 100.0, timezone: str = "Europe/Paris") -> str:
        """A new site with a unique code."""
        code = f"T{next(_codes)}-{int(time.time() * 1000) % 100000}"
        r = self.http.post(
            "/v1/sites",
            json={"code": code, "name": code, "timezone": timezone, "capacity_kw": capacity_kw},
        )
        assert r.status_code == 201, r.text
        return code

    def readings(self, code: str, rows: list[tuple[datetime, float, float]]) -> None:
        """Hourly readings (ts, consumption, production) of a site."""
        body = [
            {
                "site": code,
                "ts": ts.isoformat(),
                "consumption_kwh": c,
                "production_kwh": p,
                "interval_s": 3600,
                "source": "real",
            }
            for ts, c, p in rows
        ]
        r = self.http.post("/v1/readings/batch", json=body)
        assert r.status_code == 200 and r.json()["quarantined"] == 0, r.text

    def labels(self, code: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        r = self.http.get(
            "/v1/anomaly-labels",
            params={"site": code, "start": start.isoformat(), "end": end.isoformat()},
        )
        assert r.status_code == 200, r.text
        return list(r.json())


@pytest.fixture(scope="session")
def ingest(
    make_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IngestAPI]:
    """Ingest as a real process on its own database, with simulated sites loaded."""
    env = process_env(
        make_database("alerts_ingest"),
        INGEST_NOTIFY_ALERTS="false",
    )
    log_dir: Path = tmp_path_factory.mktemp("alerts-ingest")
    (proc,) = start_services(env, ("ingest",), log_dir=log_dir)
    try:
        api = IngestAPI(proc, env)
        settings = ServiceSettings(secret_key=TEST_SECRET, environment="test")
        with IngestClient(proc.url, ServiceAuth(settings, "simulator"), echo=lambda _: None) as c:
            backfill(c, site_specs(SIM_SITES), [], days=SIM_DAYS, seed=SIM_SEED, end=api.end)
        yield api
        api.http.close()
    finally:
        proc.stop()


# --- a local stand-in for the forecast service's contract ------------------------------------


@dataclass
class FakeForecast:
    """Answers of the stand-in forecast service; empty means 404 (nothing yet)."""

    url: str
    forecasts: dict[str, dict[str, Any]] = field(default_factory=dict)
    risk: list[dict[str, Any]] | None = None


def _serve(handler: type[BaseHTTPRequestHandler], port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def forecast() -> Iterator[FakeForecast]:
    state = FakeForecast(url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            body: Any = None
            if path.startswith("/v1/sites/") and path.endswith("/forecast/latest"):
                body = state.forecasts.get(path.split("/")[3])
            elif path == "/v1/maintenance/risk" and state.risk is not None:
                body = {"items": state.risk}
            raw = json.dumps(body or {"error": "NotFound", "detail": "nothing"}).encode()
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    server, state.url = _serve(Handler)
    yield state
    server.shutdown()


# --- notification peers ----------------------------------------------------------------------


@dataclass
class Webhook:
    """A local webhook receiver; answers 500 to its first ``fail_first`` calls."""

    url: str
    fail_first: int = 0
    calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def delivered(self) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["answered"] == 200]


@contextmanager
def webhook_server(port: int = 0) -> Iterator[Webhook]:
    """Run a webhook receiver for the duration of the block (on ``port``, or a free one)."""
    state = Webhook(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                answer = 500 if len(state.calls) < state.fail_first else 200
                state.calls.append(
                    {"headers": dict(self.headers), "body": body, "answered": answer}
                )
            self.send_response(answer)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    server, state.url = _serve(Handler, port)
    try:
        yield state
    finally:
        server.shutdown()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with webhook_server() as state:
        yield state


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[int, _Mailbox]]:
    """A local SMTP server (aiosmtpd); yields (port, mailbox)."""
    box = _Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, box
    controller.stop()


# --- the alerts app --------------------------------------------------------------------------


@pytest.fixture
def alerts_settings(
    settings_env: dict[str, Any], ingest: IngestAPI, forecast: FakeForecast
) -> AlertsSettings:
    """In-process settings: no background loops (tests drive them), local peers."""
    return AlertsSettings(
        **settings_env,
        ingest_url=ingest.url,
        forecast_url=forecast.url,
        alerts_eval_interval_s=0,
        alerts_delivery_poll_s=0,
        alerts_group_wait_s=0,
        alerts_retry_base_s=0.05,
        alerts_retry_max_delay_s=0.2,
    )


@pytest.fixture
def make_client(
    session: Session, alerts_settings: AlertsSettings
) -> Iterator[Callable[..., TestClient]]:
    """``make_client(**setting_overrides)`` → the alerts app on the test session, as operator."""
    clients: list[TestClient] = []

    def _make(**overrides: Any) -> TestClient:
        app = build_app(alerts_settings.model_copy(update=overrides))
        client = bind_session(app, session)
        client.headers["Authorization"] = f"Bearer {token_for('operator', subject='olivia')}"
        clients.append(client)
        return client

    yield _make
    for c in clients:
        c.app.state.sources.close()  # type: ignore[attr-defined]


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for('admin', subject='ada')}"}


def make_notifier(connection: Connection, settings: AlertsSettings) -> Notifier:
    """A notifier whose transactions are savepoints of the test's (rolled back) transaction."""
    sessions = sessionmaker(bind=connection, join_transaction_mode="create_savepoint")
    return Notifier(settings, sessions)


def hours_ago(n: int) -> datetime:
    """The start of the hour ``n`` hours before the current one (UTC)."""
    return current_hour() - timedelta(hours=n)


def evaluate(client: TestClient, site: str, start: datetime, end: datetime) -> dict[str, Any]:
    r = client.post(
        "/v1/evaluate", json={"site": site, "start": start.isoformat(), "end": end.isoformat()}
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def incidents(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    r = client.get("/v1/incidents", params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def utcnow() -> datetime:
    return datetime.now(UTC)
