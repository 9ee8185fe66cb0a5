"""The gateway in front of real ingest and alerts, all as uvicorn processes on a database of
their own; each internal service is stopped in turn mid-test."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from services.common.stack import start_services
from tests.conftest import process_env

pytestmark = pytest.mark.e2e
ADMIN_PASSWORD = "e2e admin passphrase"
DAY = {"site": "E2E1", "start": "2026-03-02T00:00:00+01:00", "end": "2026-03-03T00:00:00+01:00"}


def _assert_unavailable(answer: httpx.Response, service: str) -> None:
    assert answer.status_code == 503, answer.text
    body = answer.json()
    assert body["error"] == "ServiceUnavailable" and service in body["detail"]
    assert answer.headers["retry-after"] == "5"


def test_gateway_fronts_the_services_and_survives_each_stopping(
    make_database: Callable[[str], str], tmp_path: Path
) -> None:
    # Arrange: ingest, alerts and the gateway as processes (one start for both scenarios:
    # starting processes is the slow part).
    env = process_env(
        make_database("gateway_e2e"),
        ADMIN_USERNAME="admin",
        ADMIN_PASSWORD=ADMIN_PASSWORD,
        INGEST_NOTIFY_ALERTS="false",
        ALERTS_EVAL_INTERVAL_S="0",
        REPORTS_POLL_S="0",
    )
    ingest, alerts, gateway = start_services(env, ("ingest", "alerts", "gateway"), log_dir=tmp_path)
    site = {"code": "E2E1", "name": "E2E depot", "timezone": "Europe/Paris", "capacity_kw": 80.0}
    rows = [
        {"site": "E2E1", "ts": f"2026-03-02T{h:02d}:00:00+01:00", "consumption_kwh": 20.0}
        for h in range(24)
    ]
    try:
        with httpx.Client(base_url=gateway.url, timeout=10) as http:
            login = http.post(
                "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
            )
            auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
            created = http.post("/api/v1/sites", json=site, headers=auth)
            read_back = http.get("/api/v1/sites/E2E1", headers=auth)
            duplicate = http.post("/api/v1/sites", json=site, headers=auth)
            direct = httpx.get(f"{ingest.url}/v1/sites/E2E1", timeout=5)
            stored = http.post("/api/v1/readings/batch", json=rows, headers=auth)
            incidents_up = http.get("/api/v1/incidents", headers=auth)

            # Act 1: alerts stops; its routes (and the reports, which need its incidents) 503.
            alerts.stop()
            start = time.monotonic()
            alerts_down = [http.get("/api/v1/incidents", headers=auth)]
            alerts_down_s = time.monotonic() - start
            alerts_down += [
                http.post("/api/v1/incidents/1/acknowledge", json={}, headers=auth),
                http.get("/api/v1/alert-rules", headers=auth),
                http.get("/api/v1/exports/report.pdf", params=DAY, headers=auth),
            ]
            sites = http.get("/api/v1/sites", headers=auth)
            csv_export = http.get("/api/v1/exports/readings.csv", params=DAY, headers=auth)

            # Act 2: ingest stops too.
            ingest.stop()
            start = time.monotonic()
            ingest_down = http.get("/api/v1/sites/E2E1", headers=auth)
            ingest_down_s = time.monotonic() - start
            me = http.get("/api/v1/auth/me", headers=auth)
            ready = http.get("/ready")
    finally:
        for proc in (gateway, alerts, ingest):
            proc.stop()

    # Assert
    assert login.status_code == 200, login.text
    assert created.status_code == 201, created.text
    assert read_back.status_code == 200 and read_back.json()["name"] == "E2E depot"
    assert duplicate.status_code == 409 and duplicate.json()["error"] == "Conflict"
    assert direct.status_code == 401  # the internal service checks tokens itself
    assert stored.status_code == 200 and stored.json()["accepted"] == 24, stored.text
    assert incidents_up.status_code == 200, incidents_up.text
    for answer in alerts_down:
        _assert_unavailable(answer, "alerts")
    assert alerts_down_s < 2.0
    assert sites.status_code == 200 and [s["code"] for s in sites.json()] == ["E2E1"]
    assert csv_export.status_code == 200 and "# sha256: " in csv_export.text
    assert csv_export.text.count("\n2026-03-02T") == 24
    _assert_unavailable(ingest_down, "ingest")
    assert ingest_down_s < 2.0
    assert me.status_code == 200 and me.json()["name"] == "admin"
    assert ready.status_code == 200
    states = {s["service"]: s["status"] for s in ready.json()["services"]}
    assert states["ingest"] == states["alerts"] == "unavailable"
