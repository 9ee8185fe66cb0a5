"""Security fixtures: the four services as real processes on a database of their own.

Started once per session for tests/security: a site with a few days of readings, a piece of
equipment, and the incidents alerts opens on them, so reads have rows to return and
injection strings meet real tables. Forecast runs no worker and no schedule (a retrain job
asked for by the fuzzer stays queued), alerts sends nothing, ingest notifies nobody and its
weather connector points at a closed port.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from services.common.settings import to_sqlalchemy_url
from services.common.stack import ServiceProcess, free_port, start_services
from tests.conftest import process_env, token_for

SERVICES = ("ingest", "forecast", "alerts", "gateway")
SITE = "SEC1"
EQUIPMENT = "SEC-PUMP-1"
ADMIN = "secadmin"
# Two local days of hourly readings with evening deficits.
START = datetime(2026, 3, 2, tzinfo=UTC)
HOURS = 48
# Small limits so the 413 tests send little: 1 MB for any body, 2 MB per upload, 50 rows.
MAX_BODY_MB = 1
MAX_UPLOAD_MB = 2
MAX_BATCH_ROWS = 50


@dataclass
class SecurityStack:
    """The running services and their database."""

    database_url: str
    procs: dict[str, ServiceProcess]
    tmp_dir: Path
    incident_id: int

    def url(self, service: str) -> str:
        return self.procs[service].url

    def count(self, table: str) -> int:
        """Rows in ``schema.table`` (a fixed name from the tests, never user input)."""
        engine = create_engine(to_sqlalchemy_url(self.database_url))
        try:
            with engine.connect() as conn:
                return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
        finally:
            engine.dispose()


def readings() -> list[dict[str, Any]]:
    rows = []
    for i in range(HOURS):
        ts = START + timedelta(hours=i)
        hour = ts.hour
        rows.append(
            {
                "site": SITE,
                "ts": ts.isoformat(),
                "consumption_kwh": 40.0 + (30.0 if 17 <= hour <= 20 else 0.0),
                "production_kwh": max(0.0, 60.0 - 6.0 * abs(12 - hour)),
                "interval_s": 3600,
                "source": "real",
            }
        )
    return rows


def admin_headers() -> dict[str, str]:
    """A valid admin token for the gateway's seeded admin (and any internal service)."""
    return {"Authorization": f"Bearer {token_for('admin', subject=ADMIN)}"}


@pytest.fixture(scope="session")
def security_stack(
    make_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecurityStack]:
    """The four services, seeded; stopped at the end of the session."""
    database_url = make_database("security")
    tmp_dir = tmp_path_factory.mktemp("security")
    spool = tmp_dir / "spool"
    spool.mkdir()
    dead = f"http://127.0.0.1:{free_port()}"
    env = process_env(
        database_url,
        # Uploads are spooled here: the path traversal tests look for strays in it.
        TMPDIR=str(spool),
        ADMIN_USERNAME=ADMIN,
        # A hash is computed only at the first start; the tests mint tokens instead of logging in.
        ADMIN_PASSWORD="security tests passphrase",
        MAX_BODY_MB=str(MAX_BODY_MB),
        INGEST_MAX_UPLOAD_MB=str(MAX_UPLOAD_MB),
        INGEST_MAX_BATCH_ROWS=str(MAX_BATCH_ROWS),
        INGEST_NOTIFY_ALERTS="false",
        OPENMETEO_FORECAST_URL=dead,
        OPENMETEO_ARCHIVE_URL=dead,
        OPENMETEO_TIMEOUT_S="1",
        ALERTS_EVAL_INTERVAL_S="0",
        ALERTS_DELIVERY_POLL_S="0",
        FORECAST_JOB_POLL_S="0",
        FORECAST_SCHEDULE_ENABLED="false",
        REPORTS_POLL_S="0",
        # Revocations and role changes take effect at once (no per-process cache delay).
        AUTH_CACHE_S="0",
    )
    procs = start_services(env, SERVICES, log_dir=tmp_dir)
    by_name = dict(zip(SERVICES, procs, strict=True))
    try:
        incident_id = _seed(by_name)
        yield SecurityStack(database_url, by_name, tmp_dir, incident_id)
    finally:
        for proc in reversed(procs):
            proc.stop()


def _seed(procs: dict[str, ServiceProcess]) -> int:
    headers = admin_headers()
    ingest, alerts = procs["ingest"].url, procs["alerts"].url
    with httpx.Client(headers=headers, timeout=30) as http:
        site = {"code": SITE, "name": "Security depot", "timezone": "Europe/Paris",
                "capacity_kw": 60.0, "country_code": "FR"}  # fmt: skip
        r = http.post(f"{ingest}/v1/sites", json=site)
        assert r.status_code == 201, r.text
        r = http.post(f"{ingest}/v1/readings/batch", json=readings()[:MAX_BATCH_ROWS])
        assert r.status_code == 200 and not r.json()["rejected"], r.text
        pump = {"code": EQUIPMENT, "site": SITE, "name": "Pump", "kind": "pump"}
        r = http.post(f"{ingest}/v1/equipment", json=pump)
        assert r.status_code == 201, r.text
        window = {"site": SITE, "start": START.isoformat(),
                  "end": (START + timedelta(hours=HOURS)).isoformat()}  # fmt: skip
        r = http.post(f"{alerts}/v1/evaluate", json=window)
        assert r.status_code == 200, r.text
        r = http.get(f"{alerts}/v1/incidents", params={"site": SITE})
        items = r.json()["items"]
        assert items, "the seeded evening deficits should have opened incidents"
        return int(items[0]["id"])
