"""The nightly job function, called directly: every site retrained, tomorrow's forecasts
issued, maintenance scored, and not scheduled twice."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session, sessionmaker

from services.common.settings import to_sqlalchemy_url
from services.forecast.config import ForecastSettings
from services.forecast.data import IngestReader
from services.forecast.jobs import enqueue_nightly, run_nightly, seconds_until
from services.forecast.models import Job
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


def test_nightly_scheduled_by_many_workers_at_once_is_one_job(
    make_database: Callable[[str], str],
) -> None:
    # Arrange: committed data, as N worker processes see it (not the rolled-back test session)
    engine = create_engine(to_sqlalchemy_url(make_database("nightly_workers")))
    sessions = sessionmaker(engine, expire_on_commit=False)
    settings = ForecastSettings(database_url="postgresql://unused", environment="test")
    barrier = threading.Barrier(4)

    def worker(_: int) -> tuple[int, bool] | None:
        barrier.wait()  # all wake at the nightly hour together
        return enqueue_nightly(sessions, settings)

    # Act
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(worker, range(4)))

    # Assert
    scheduled = [o for o in outcomes if o is not None]
    with sessions() as s:
        jobs = s.scalars(select(Job).where(Job.requested_by == "schedule")).all()
    engine.dispose()
    assert len(scheduled) == 1 and scheduled[0][1] is True
    assert [j.id for j in jobs] == [scheduled[0][0]]
