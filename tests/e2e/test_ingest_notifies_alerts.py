"""Ingest tells alerts about new readings after it commits: an incident with no schedule run."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from services.common.stack import ServiceProcess, free_port, service_env, start_services
from tests.conftest import TEST_SECRET, token_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(e2e_database_url: str, tmp_path: Path) -> Iterator[dict[str, ServiceProcess]]:
    """Ingest and alerts as real processes; the alerts schedule is too slow to matter here."""
    ports = {"INGEST_PORT": str(free_port()), "ALERTS_PORT": str(free_port())}
    env = service_env(
        e2e_database_url, SECRET_KEY=TEST_SECRET, ENVIRONMENT="test", LOG_JSON="false",
        ALERTS_EVAL_INTERVAL_S="3600", FORECAST_URL=f"http://127.0.0.1:{free_port()}", **ports,
    )  # fmt: skip
    procs = start_services(env, ("ingest", "alerts"), log_dir=tmp_path)
    yield {p.name: p for p in procs}
    for p in procs:
        p.stop()


def _poll(
    check: Callable[[], list[dict[str, object]]], timeout_s: float
) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.05)
    return []


def test_deficit_reading_becomes_an_incident_through_the_notice(
    stack: dict[str, ServiceProcess],
) -> None:
    headers = {"Authorization": f"Bearer {token_for('operator')}"}
    ingest = httpx.Client(base_url=stack["ingest"].url, headers=headers, timeout=10)
    alerts = httpx.Client(base_url=stack["alerts"].url, headers=headers, timeout=10)
    site = {"code": "NOTICE1", "name": "Notice", "timezone": "Europe/Paris", "capacity_kw": 500.0}
    assert ingest.post("/v1/sites", json=site).status_code == 201
    first = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    rows = [
        {"site": "NOTICE1", "ts": (first + timedelta(hours=i)).isoformat(),
         "consumption_kwh": 150.0 + i, "production_kwh": 40.0}
        for i in range(3)
    ]  # fmt: skip

    posted = ingest.post("/v1/readings/batch", json=rows)
    started = time.monotonic()
    found = _poll(
        lambda: alerts.get("/v1/incidents", params={"site": "NOTICE1"}).json()["items"], 5.0
    )
    latency = time.monotonic() - started
    notices = ingest.get("/metrics").text

    assert posted.status_code == 200 and posted.json()["accepted"] == 3
    assert [i["condition_key"] for i in found] == ["deficit"], "no incident within 5 s"
    assert latency < 5.0
    assert 'ingest_alerts_notices_total{outcome="ok"}' in notices
