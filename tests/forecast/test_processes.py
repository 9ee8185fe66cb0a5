"""Ingest, forecast, alerts and the gateway as real processes on one database: "Régénérer"
clicked twice through the gateway starts one job, the worker thread trains and issues the
forecast, alerts reads it and opens a forecast-deficit incident; a maintenance job scores the
equipment and alerts' equipment-risk rule opens incidents from it; the gateway answers 503
with Retry-After once forecast is down."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from services.common.http import ServiceAuth
from services.common.settings import ServiceSettings
from services.common.stack import start_services
from services.ingest.simulator.client import current_hour
from tests.conftest import TEST_SECRET, process_env
from tests.forecast.conftest import IngestAPI, days_ago, fast_settings, weekly_rows

pytestmark = pytest.mark.e2e
ADMIN_PASSWORD = "forecast e2e passphrase"


def _wait_job(http: httpx.Client, job_id: int, auth: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        job = http.get(f"/api/v1/forecast/jobs/{job_id}", headers=auth).json()
        if job["status"] in ("succeeded", "failed"):
            return dict(job)
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['status']} after 90 s")


def test_forecast_through_the_gateway_feeds_both_alerts_rules(
    ingest: IngestAPI, tmp_path: Path
) -> None:
    # Arrange: a site whose load is always above its 10 kW capacity (no production), five
    # weeks of history; forecast (worker polling), alerts and the gateway as processes.
    code = ingest.site("DEFICIT", capacity_kw=10.0)
    ingest.readings(code, weekly_rows(days_ago(35), current_hour()))
    env = process_env(
        ingest.database_url,
        ADMIN_USERNAME="admin",
        ADMIN_PASSWORD=ADMIN_PASSWORD,
        ALERTS_EVAL_INTERVAL_S="0",
        ALERTS_DELIVERY_POLL_S="0",
        REPORTS_POLL_S="0",
        INGEST_PORT=ingest.env["INGEST_PORT"],
        INGEST_URL=ingest.url,
        **{k.upper(): str(v) for k, v in fast_settings(forecast_job_poll_s=0.5).items()},
    )
    forecast, alerts, gateway = start_services(
        env, ("forecast", "alerts", "gateway"), log_dir=tmp_path
    )
    service = ServiceAuth(ServiceSettings(secret_key=TEST_SECRET, environment="test"), "tests")
    try:
        with httpx.Client(base_url=gateway.url, timeout=30) as http:
            login = http.post(
                "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
            )
            auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
            viewer = {"username": "vera", "password": ADMIN_PASSWORD, "role": "viewer"}
            assert http.post("/api/v1/users", json=viewer, headers=auth).status_code == 201
            credentials = {"username": "vera", "password": ADMIN_PASSWORD}
            vera = http.post("/api/v1/auth/login", json=credentials).json()
            as_viewer = {"Authorization": f"Bearer {vera['access_token']}"}
            refused = http.post("/api/v1/forecast/jobs", json={"site": code}, headers=as_viewer)

            # Act 1: two clicks on "Régénérer", then wait for the worker
            first = http.post("/api/v1/forecast/jobs", json={"site": code}, headers=auth)
            second = http.post("/api/v1/forecast/jobs", json={"site": code}, headers=auth)
            job = _wait_job(http, first.json()["id"], auth)
            latest = http.get(f"/api/v1/sites/{code}/forecast", headers=auth)
            runs = http.get("/api/v1/model-runs", params={"site": code}, headers=auth)
            audit = http.get("/api/v1/audit", params={"action": "forecast.retrain"}, headers=auth)

            # Act 2: equipment scored; alerts evaluates the sites against forecast's answers
            scoring = http.post("/api/v1/maintenance/jobs", headers=auth)
            scored = _wait_job(http, scoring.json()["id"], auth)
            risk = http.get("/api/v1/maintenance/risk", headers=auth)
            # the simulated fleet is healthy today: LYON's alert threshold goes to its top score
            lyon = ingest.sites[0]
            top = max(i["probability"] for i in risk.json()["items"] if i["site"] == lyon)
            rule_id = next(
                r["id"]
                for r in http.get("/api/v1/alert-rules", headers=auth).json()
                if r["kind"] == "equipment_risk"
            )
            override = http.put(
                f"/api/v1/alert-rules/{rule_id}/overrides/{lyon}",
                json={"params": {"min_probability": top, "recovery_probability": 0.0}},
                headers=auth,
            )
            evaluation = httpx.post(
                f"{alerts.url}/v1/evaluate", json={"site": code}, auth=service, timeout=30
            )
            lyon_evaluation = httpx.post(
                f"{alerts.url}/v1/evaluate", json={"site": lyon}, auth=service, timeout=30
            )
            lyon_risk = http.get(
                "/api/v1/incidents", params={"site": lyon, "kind": "equipment_risk"}, headers=auth
            )
            incidents = http.get(
                "/api/v1/incidents", params={"site": code, "kind": "forecast_deficit"}, headers=auth
            )

            # Act 3: forecast stops; its routes answer 503, the others still work
            forecast.stop()
            down = http.get(f"/api/v1/sites/{code}/forecast", headers=auth)
            jobs_down = http.post("/api/v1/forecast/jobs", json={"site": code}, headers=auth)
            sites = http.get("/api/v1/sites", headers=auth)
    finally:
        for proc in (gateway, alerts, forecast):
            proc.stop()

    # Assert 1: one job for two clicks (a viewer may not click), run by the worker to its end
    assert refused.status_code == 403, refused.text
    assert first.status_code == 202 and second.status_code == 200, second.text
    assert second.json()["id"] == first.json()["id"]
    assert job["status"] == "succeeded", job["message"]
    assert job["progress"] == 1.0 and job["requested_by"] == "admin"
    assert "baseline served" in job["message"]  # a weekly pattern: the naive is exact
    body = latest.json()
    assert latest.status_code == 200 and body["served"] == "baseline"
    tomorrow = datetime.now(ZoneInfo("Europe/Paris")).date() + timedelta(days=1)
    assert body["target_date"] == tomorrow.isoformat()
    assert len(body["points"]) in (23, 24, 25)
    assert [r["id"] for r in runs.json()["items"]] == [body["run_id"]]
    entry = audit.json()[0]
    assert entry["actor"] == "admin" and entry["target"] == f"forecast_job:{first.json()['id']}"

    # Assert 2: a forecast-deficit incident for tomorrow, from the forecast service's answer
    assert evaluation.status_code == 200, evaluation.text
    rule = next(r for r in evaluation.json()["rules"] if r["kind"] == "forecast_deficit")
    no_equipment = next(r for r in evaluation.json()["rules"] if r["kind"] == "equipment_risk")
    assert rule["status"] == "firing" and rule["opened"] == 1, rule
    assert no_equipment["status"] == "ok", no_equipment  # read (no equipment here), not skipped
    (incident,) = incidents.json()["items"]
    assert incident["condition_key"] == f"forecast:{body['target_date']}"
    # ... and the equipment-risk rule reads the ranking: one incident per equipment at >= 70 %
    assert scored["status"] == "succeeded" and scored["kind"] == "maintenance", scored
    assert top > 0 and override.status_code == 200, override.text
    assert lyon_evaluation.status_code == 200, lyon_evaluation.text
    rules = {r["kind"]: r for r in lyon_evaluation.json()["rules"]}
    high = {
        i["equipment"]
        for i in risk.json()["items"]
        if i["site"] == lyon and i["probability"] >= top
    }
    assert rules["equipment_risk"]["status"] == "firing", rules
    opened = lyon_risk.json()["items"]
    assert {i["condition_key"] for i in opened} == {f"equipment:{code}" for code in high}
    assert "top factors" in opened[0]["details"]["why"]

    # Assert 3: forecast down
    assert down.status_code == 503 and down.headers["retry-after"] == "5"
    assert down.json()["error"] == "ServiceUnavailable" and "forecast" in down.json()["detail"]
    assert jobs_down.status_code == 503
    assert sites.status_code == 200
