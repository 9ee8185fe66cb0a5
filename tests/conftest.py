"""Test fixtures: one real PostgreSQL per session (embedded unless TEST_DATABASE_URL is set),
every service's migrations applied, and one rolled-back transaction per test."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session
from starlette.types import ASGIApp

from services.common.auth import issue_token
from services.common.db import get_reads, get_session
from services.common.migrations import upgrade_all
from services.common.settings import ServiceSettings, to_sqlalchemy_url
from services.common.stack import (
    SERVICE_PORTS,
    create_database,
    drop_database,
    embedded_postgres,
    free_port,
    service_env,
)

TEST_SECRET = "test-secret-not-for-production-0123456789"


@contextmanager
def serve_app(app: ASGIApp) -> Iterator[str]:
    """Serve ``app`` under uvicorn on a free loopback port (a thread); yield its base URL.

    For fakes of what lies outside the product, and upstreams whose answers a test controls."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)


def process_env(database_url: str, **overrides: str) -> dict[str, str]:
    """Environment for service processes started by a test: the test secret, quiet plain-text
    logs, and each of the four services on a free loopback port of its own (so the URL of a
    service the test does not start leads nowhere, never to a `make run` on the default ports).
    ``overrides`` win: a test's own settings, or the URL of a service started elsewhere."""
    ports = {name.upper(): free_port() for name in SERVICE_PORTS}
    settings = {
        "SECRET_KEY": TEST_SECRET,
        "ENVIRONMENT": "test",
        "LOG_JSON": "false",
        "LOG_LEVEL": "WARNING",
        **{f"{name}_PORT": str(port) for name, port in ports.items()},
        **{f"{name}_URL": f"http://127.0.0.1:{port}" for name, port in ports.items()},
        **overrides,
    }
    return service_env(database_url, **settings)


# The ingest roll-up job stays off in tests (and in the service processes they start): many
# tests insert readings straight into the database, which only the API's writes report to the
# roll-ups. tests/ingest/test_rollup.py runs it, on databases of its own.
os.environ.setdefault("INGEST_ROLLUP_INTERVAL_S", "0")


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A PostgreSQL server: TEST_DATABASE_URL's, or an embedded one deleted after the session.

    Tests create their own databases on it (the role needs CREATEDB), so a shared server's
    existing databases are never touched.
    """
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        tmp = Path(tempfile.mkdtemp(prefix="spe-test-pg-"))
        url = embedded_postgres(tmp / "pg", on_exit="delete")
    yield url


@pytest.fixture(scope="session")
def make_database(pg_server_url: str) -> Iterator[Callable[[str], str]]:
    """``make_database("name")`` → URL of a fresh, migrated database, dropped at session end."""
    created: list[str] = []

    def _make(name: str) -> str:
        full = f"spe_{name}_{os.getpid()}"
        url = create_database(pg_server_url, full)
        upgrade_all(url)
        created.append(full)
        return url

    yield _make
    for name in created:
        drop_database(pg_server_url, name)


@pytest.fixture(scope="session")
def database_url(make_database: Callable[[str], str]) -> str:
    """The migrated database the in-process tests share (each test rolls back)."""
    return make_database("test")


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = create_engine(to_sqlalchemy_url(database_url))
    yield eng
    eng.dispose()


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    """A connection inside a transaction that is rolled back after the test."""
    with engine.connect() as conn:
        trans = conn.begin()
        yield conn
        trans.rollback()


@pytest.fixture
def session(connection: Connection) -> Iterator[Session]:
    """A session whose commits become savepoints of the test's outer transaction."""
    with Session(bind=connection, join_transaction_mode="create_savepoint") as s:
        yield s


@pytest.fixture
def settings_env(database_url: str) -> dict[str, object]:
    """Keyword arguments every service's settings take in tests."""
    return {
        "database_url": database_url,
        "environment": "test",
        "secret_key": TEST_SECRET,
        "log_json": False,
        "log_level": "WARNING",
    }


class SessionReads:
    """``Reads`` over the test's session: read routes see the test's uncommitted rows."""

    def __init__(self, session: Session) -> None:
        self.session = session

    @contextmanager
    def read(self) -> Iterator[Connection]:
        yield self.session.connection()


def use_session(app: FastAPI, session: Session) -> None:
    """Every request of ``app`` uses the test's transactional session (its reads too) until
    ``app.dependency_overrides.clear()``."""

    def _session() -> Iterator[Session]:
        yield session
        session.flush()

    app.dependency_overrides[get_session] = _session
    app.dependency_overrides[get_reads] = lambda: SessionReads(session)


def bind_session(app: FastAPI, session: Session) -> TestClient:
    """A TestClient whose requests all use the test's transactional session."""
    use_session(app, session)
    return TestClient(app, raise_server_exceptions=False)


def token_for(role: str, *, subject: str = "tester", token_type: str = "access") -> str:
    """A valid token signed with the test secret."""
    settings = ServiceSettings(secret_key=TEST_SECRET, environment="test")
    return issue_token(settings, subject=subject, role=role, token_type=token_type, ttl_s=600)  # type: ignore[arg-type]


@pytest.fixture
def auth() -> Callable[[str], dict[str, str]]:
    """``auth("operator")`` → headers carrying a valid token of that role."""
    return lambda role="operator": {"Authorization": f"Bearer {token_for(role)}"}
