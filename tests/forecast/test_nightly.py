"""The nightly job function, called directly: every site retrained, tomorrow's forecasts
issued, maintenance scored, and not scheduled twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from services.forecast.config import ForecastSettings
from services.forecast.data import IngestReader
from services.forecast.jobs import run_nightly, seconds_until
from tests.forecast.conftest import IngestAPI


def test_run_nightly_retrains_every_site_issues_tomorrow_and_scores_maintenance(
    ingest: IngestAPI,
    sessions: sessionmaker[Session],
    reader: IngestReader,
    settings: ForecastSettings,
    client: TestClient,
) -> None:
    # Act
    job_id = run_nightly(sessions, reader, settings)
    again = run_nightly(sessions, reader, settings)

    # Assert: one job, done, by the schedule
    assert job_id is not None and again is None
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded", job["message"]
    assert job["requested_by"] == "schedule" and job["site"] is None and job["progress"] == 1.0
    for code in ingest.sites:  # simulated sites produce: a load and a production run each
        assert set(job["results"][code]) == {"load", "production"}
        assert all(r["status"] == "succeeded" for r in job["results"][code].values())
        latest = client.get(f"/v1/sites/{code}/forecast/latest").json()
        tz = ZoneInfo(latest["timezone"])
        tomorrow = datetime.now(UTC).astimezone(tz).date() + timedelta(days=1)
        assert latest["target_date"] == tomorrow.isoformat()
        assert latest["production"] is not None
        assert all(p["production_kwh"] is not None for p in latest["points"])
        # issued now: the cut-off is this hour, local
        issued = datetime.fromisoformat(latest["issued_at"])
        assert timedelta(0) <= datetime.now(UTC) - issued < timedelta(hours=1, minutes=5)
    assert job["results"]["maintenance"]["status"] == "succeeded"
    risk = client.get("/v1/maintenance/risk").json()
    assert len(risk["items"]) + len(risk["unscored"]) == len(ingest.equipment)
    runs = client.get("/v1/model-runs", params={"kind": "maintenance"}).json()["items"]
    assert runs[0]["job_id"] == job_id


def test_seconds_until_the_nightly_hour() -> None:
    at = datetime(2026, 11, 23, 1, 30, tzinfo=UTC)

    assert seconds_until(2, at) == 30 * 60
    assert seconds_until(1, at) == 23.5 * 3600
    assert seconds_until(1, datetime(2026, 11, 23, 1, tzinfo=UTC)) == 24 * 3600
