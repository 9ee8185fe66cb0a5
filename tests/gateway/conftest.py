"""Gateway fixtures: the app on the test's rolled-back session, users, and a local upstream.

The upstream is a small real HTTP server standing in for an internal service: it checks the
token the gateway minted and echoes what it received, so forwarding can be asserted exactly.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from services.common.auth import issue_token, verify_token
from services.common.errors import NotAuthenticated
from services.common.settings import ServiceSettings
from services.common.stack import ServiceProcess, free_port, start_services
from services.gateway.config import GatewaySettings
from services.gateway.main import build_app
from services.gateway.models import User
from services.gateway.security import hash_password
from tests.conftest import (
    TEST_SECRET,
    bind_session,
    process_env,
    serve_app,
    token_for,
    use_session,
)

PASSWORD = "correct horse battery staple"
_seq = itertools.count(1)
_hash_cache: dict[str, str] = {}
BIG_BODY_BYTES = 3 << 20


def _password_hash(password: str) -> str:
    # argon2 is slow by design; hash each test password once per session.
    if password not in _hash_cache:
        _hash_cache[password] = hash_password(password)
    return _hash_cache[password]


async def _echo(request: Request) -> Response:
    """Stand-in internal service: verify the minted token, then describe the request."""
    settings = ServiceSettings(secret_key=TEST_SECRET, environment="test")
    header = request.headers.get("authorization", "")
    try:
        principal = verify_token(settings, header.removeprefix("Bearer "))
    except NotAuthenticated as exc:
        return JSONResponse({"error": "NotAuthenticated", "detail": exc.detail}, 401)
    path = request.url.path
    body = await request.body()
    if "SLOW" in path:
        await asyncio.sleep(6)
    if "MISSING" in path:
        return JSONResponse({"error": "SiteNotFound", "detail": "no site 'MISSING'"}, 404)
    if "BIG" in path:
        chunk = b"x" * 65536
        return StreamingResponse(
            (chunk for _ in range(BIG_BODY_BYTES // len(chunk))), media_type="text/plain"
        )
    answer: dict[str, Any] = {
        "method": request.method,
        "path": path,
        "query": request.url.query,
        "body": body.decode("utf-8", errors="replace")[:2000],
        "body_len": len(body),
        "content_type": request.headers.get("content-type"),
        "subject": principal.subject,
        "role": principal.role,
        "type": principal.token_type,
        "scopes": list(principal.scopes),
    }
    if request.method != "GET":
        answer |= {"batch_id": "b-1", "received": 2, "accepted": 1, "quarantined": 1}
    return JSONResponse(answer, status_code=201 if request.method == "POST" else 200)


async def _ready(_: Request) -> Response:
    return JSONResponse({"status": "ready"})


@pytest.fixture(scope="session")
def upstream_url() -> Iterator[str]:
    """A real HTTP server on a free port answering like an internal service."""
    app = Starlette(
        routes=[
            Route("/ready", _ready),
            Route("/{path:path}", _echo, methods=["GET", "POST", "PATCH", "PUT", "DELETE"]),
        ]
    )
    with serve_app(app) as url:
        yield url


def _settings(database_url: str, upstream_url: str) -> GatewaySettings:
    dead = f"http://127.0.0.1:{free_port()}"
    return GatewaySettings(
        database_url=database_url,
        environment="test",
        secret_key=TEST_SECRET,
        log_json=False,
        log_level="WARNING",
        admin_password="",
        ingest_url=upstream_url,
        forecast_url=dead,
        alerts_url=dead,
        login_max_failures=3,
        login_max_failures_per_address=5,
        http_timeout_s=1.0,
        reports_poll_s=0.0,
    )


@pytest.fixture
def gateway_settings(database_url: str, upstream_url: str) -> GatewaySettings:
    """Test settings: ingest is the echo server, forecast and alerts are not running."""
    return _settings(database_url, upstream_url)


@pytest.fixture
def make_client(
    session: Session, gateway_settings: GatewaySettings
) -> Iterator[Callable[..., TestClient]]:
    """``make_client(**setting_overrides)`` → a started gateway TestClient on the test session."""
    clients: list[TestClient] = []

    def _make(**overrides: Any) -> TestClient:
        settings = gateway_settings.model_copy(update=overrides)
        client = bind_session(build_app(settings), session)
        client.__enter__()
        clients.append(client)
        return client

    yield _make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture(scope="module")
def _module_gateway(database_url: str, upstream_url: str) -> Iterator[TestClient]:
    app = build_app(_settings(database_url, upstream_url))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def shared_client(_module_gateway: TestClient, session: Session) -> Iterator[TestClient]:
    """One gateway per test module (starting one costs ~0.5 s), on this test's session."""
    use_session(_module_gateway.app, session)  # type: ignore[arg-type]
    yield _module_gateway
    _module_gateway.app.dependency_overrides.clear()  # type: ignore[attr-defined]


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    """The gateway with default test settings, no credentials attached."""
    return make_client()


def make_user(session: Session, **overrides: Any) -> User:
    """A user (password ``PASSWORD`` unless ``password=`` is given); override any column."""
    password = overrides.pop("password", PASSWORD)
    values: dict[str, Any] = {"username": f"user{next(_seq)}", "role": "viewer", "active": True}
    user = User(password_hash=_password_hash(password), **(values | overrides))
    session.add(user)
    session.flush()
    return user


def access_token(settings: GatewaySettings, user: User, **claims: Any) -> str:
    """An access token for ``user`` as the gateway issues it at login."""
    return issue_token(
        settings, subject=user.username, role=user.role, token_type="access", ttl_s=600, **claims
    )


@pytest.fixture
def headers_for(
    session: Session, gateway_settings: GatewaySettings
) -> Callable[[str], dict[str, str]]:
    """``headers_for("operator")`` → Authorization headers of a fresh user with that role."""

    def _headers(role: str) -> dict[str, str]:
        user = make_user(session, role=role)
        return {"Authorization": f"Bearer {access_token(gateway_settings, user)}"}

    return _headers


def login(client: TestClient, username: str, password: str = PASSWORD) -> Any:
    """POST the login form; returns the response."""
    return client.post("/api/v1/auth/login", json={"username": username, "password": password})


# --- a real ingest and alerts behind an in-process gateway (exports, reports, alerts routes) ---

STACK_SITE = "EXP1"
STACK_TZ = "Europe/Paris"
# Four local days across the spring DST change (2026-03-29 has 23 hours in Paris).
STACK_START = datetime(2026, 3, 27, tzinfo=ZoneInfo(STACK_TZ))
STACK_END = datetime(2026, 3, 31, tzinfo=ZoneInfo(STACK_TZ))


def stack_readings() -> list[dict[str, Any]]:
    """Hourly real readings with night deficits, plus simulated ones for the first day."""
    rows = []
    ts = STACK_START.astimezone(UTC)
    i = 0
    while ts < STACK_END:
        hour = ts.astimezone(ZoneInfo(STACK_TZ)).hour
        consumption = round(30 + 7.25 * (i % 5) + (12.5 if 17 <= hour <= 20 else 0.0), 3)
        production = round(max(0.0, 60.0 - 6.0 * abs(13 - hour)) + 0.125 * (i % 3), 3)
        row = {"site": STACK_SITE, "ts": ts.isoformat(), "consumption_kwh": consumption,
               "production_kwh": production, "interval_s": 3600, "source": "real"}  # fmt: skip
        rows.append(row)
        if i < 24:  # the simulator also covered day one: exports pick the real rows
            rows.append({**row, "consumption_kwh": 999.0, "source": "simulated"})
        ts += timedelta(hours=1)
        i += 1
    return rows


@dataclass
class Stack:
    """Ingest and alerts as real processes on a database of their own, with data."""

    database_url: str
    ingest: ServiceProcess
    alerts: ServiceProcess
    env: dict[str, str]
    incident_ids: list[int] = field(default_factory=list)


@pytest.fixture(scope="session")
def stack(
    make_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Started once per session: a site with four days of readings and its incidents."""
    database_url = make_database("gateway_stack")
    env = process_env(
        database_url,
        INGEST_NOTIFY_ALERTS="false",
        ALERTS_EVAL_INTERVAL_S="0",
        ALERTS_DELIVERY_POLL_S="0",
    )
    ingest, alerts = start_services(
        env, ("ingest", "alerts"), log_dir=tmp_path_factory.mktemp("stack")
    )
    try:
        headers = {"Authorization": f"Bearer {token_for('admin', subject='seeder')}"}
        site = {"code": STACK_SITE, "name": "Export depot", "timezone": STACK_TZ,
                "capacity_kw": 80.0}  # fmt: skip
        r = httpx.post(f"{ingest.url}/v1/sites", json=site, headers=headers, timeout=30)
        assert r.status_code == 201, r.text
        r = httpx.post(
            f"{ingest.url}/v1/readings/batch", json=stack_readings(), headers=headers, timeout=30
        )
        assert r.status_code == 200 and not r.json()["rejected"], r.text
        window = {"site": STACK_SITE, "start": STACK_START.isoformat(),
                  "end": STACK_END.isoformat()}  # fmt: skip
        r = httpx.post(f"{alerts.url}/v1/evaluate", json=window, headers=headers, timeout=60)
        assert r.status_code == 200, r.text
        r = httpx.get(
            f"{alerts.url}/v1/incidents", params={"site": STACK_SITE}, headers=headers, timeout=30
        )
        ids = [i["id"] for i in r.json()["items"]]
        assert ids, "the seeded deficits should have opened incidents"
        yield Stack(database_url, ingest, alerts, env, ids)
    finally:
        alerts.stop()
        ingest.stop()


def stack_settings(stack: Stack, **overrides: Any) -> GatewaySettings:
    """Gateway settings pointing at the stack's database and services."""
    values: dict[str, Any] = {
        "database_url": stack.database_url,
        "environment": "test",
        "secret_key": TEST_SECRET,
        "log_json": False,
        "log_level": "WARNING",
        "admin_password": "",
        "ingest_url": stack.ingest.url,
        "alerts_url": stack.alerts.url,
        "forecast_url": f"http://127.0.0.1:{free_port()}",
        "http_timeout_s": 10.0,
        "reports_poll_s": 0.0,
    }
    return GatewaySettings(**(values | overrides))


@pytest.fixture(scope="module")
def stack_gateway(stack: Stack) -> Iterator[TestClient]:
    """The gateway in-process on the stack's database (committed data, no rollback)."""
    with TestClient(build_app(stack_settings(stack)), raise_server_exceptions=False) as client:
        yield client


def stack_headers(client: TestClient, role: str) -> dict[str, str]:
    """Authorization headers of a new user with ``role``, committed in the stack's database."""
    app = client.app
    with app.state.db.sessionmaker.begin() as session:  # type: ignore[attr-defined]
        user = make_user(session, role=role)
        session.expunge(user)
    return {"Authorization": f"Bearer {access_token(app.state.settings, user)}"}  # type: ignore[attr-defined]
