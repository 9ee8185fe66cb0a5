"""Retraining jobs: one active job per site, validation, a job run to its end with progress and
results, stale jobs, claiming across workers, a failure recorded with its reason."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from services.common.settings import to_sqlalchemy_url
from services.common.stack import free_port
from services.forecast.config import ForecastSettings
from services.forecast.data import IngestReader
from services.forecast.jobs import claim, run_job
from services.forecast.models import Job
from services.ingest.simulator.client import current_hour
from tests.conftest import token_for
from tests.forecast.conftest import IngestAPI, days_ago, weekly_rows


def _retrain(client: TestClient, **body: object) -> tuple[int, dict[str, Any]]:
    r = client.post("/v1/jobs/retrain", json=body)
    return r.status_code, dict(r.json())


def test_retrain_while_a_retrain_is_active_returns_that_job(
    ingest: IngestAPI, client: TestClient
) -> None:
    # Arrange
    lyon, marseille = ingest.sites

    # Act
    first = _retrain(client, site=lyon)
    again = _retrain(client, site=lyon)
    every = _retrain(client)
    covered = _retrain(client, site=marseille)
    own_first = _retrain(client, site=lyon)

    # Assert: one job per site; an every-site job covers the others
    assert first[0] == 202 and first[1]["status"] == "queued" and first[1]["site"] == lyon
    assert again == (200, first[1])
    assert every[0] == 202 and every[1]["id"] != first[1]["id"] and every[1]["site"] is None
    assert covered[0] == 200 and covered[1]["id"] == every[1]["id"]
    assert own_first[0] == 200 and own_first[1]["id"] == first[1]["id"]
    queued = client.get("/v1/jobs", params={"status": "queued"}).json()["items"]
    assert sorted(j["id"] for j in queued) == sorted([first[1]["id"], every[1]["id"]])
    assert first[1]["requested_by"] == "olivia"


def test_job_table_refuses_a_second_active_job_for_one_site(session: Session) -> None:
    # Arrange
    session.add(Job(site="X1", requested_by="a"))
    session.flush()

    # Act / Assert: the partial unique index, whoever inserts
    with pytest.raises(IntegrityError), session.begin_nested():
        session.add(Job(site="X1", status="running", requested_by="b"))
        session.flush()
    session.add(Job(site="X1", status="succeeded", requested_by="c"))  # history is free
    session.flush()


@pytest.mark.parametrize(
    ("body", "role", "status", "error"),
    [
        ({"site": "NOPE"}, "operator", 404, "SiteNotFound"),
        ({"site": "LYON", "target_date": "2099-01-01"}, "operator", 422, "BadInput"),
        ({"site": "LYON", "target_date": "0001-01-01"}, "operator", 422, "ValidationError"),
        ({"site": "LYON", "extra": 1}, "operator", 422, "ValidationError"),
        ({"site": "bad code!"}, "operator", 422, "ValidationError"),
        ({"site": "LYON"}, "viewer", 403, "Forbidden"),
    ],
)
def test_retrain_refuses_bad_requests(
    body: dict[str, object], role: str, status: int, error: str, client: TestClient
) -> None:
    # Act
    r = client.post(
        "/v1/jobs/retrain", json=body, headers={"Authorization": f"Bearer {token_for(role)}"}
    )

    # Assert
    assert r.status_code == status, r.text
    assert r.json()["error"] == error


def test_retrain_without_token_is_401(client: TestClient) -> None:
    r = client.post("/v1/jobs/retrain", json={}, headers={"Authorization": ""})

    assert r.status_code == 401 and r.json()["error"] == "NotAuthenticated"


def test_run_job_records_progress_results_and_why_the_baseline_is_served(
    ingest: IngestAPI,
    client: TestClient,
    sessions: sessionmaker[Session],
    reader: IngestReader,
    settings: ForecastSettings,
) -> None:
    # Arrange: a site with ten days of data, and its job
    code = ingest.site("JOB")
    ingest.readings(code, weekly_rows(days_ago(10), current_hour()))
    _, job = _retrain(client, site=code)

    # Act
    claimed = claim(sessions, "test-worker")
    status = run_job(sessions, reader, settings, claimed or 0)

    # Assert
    assert claimed == job["id"] and status == "succeeded"
    done = client.get(f"/v1/jobs/{job['id']}").json()
    assert done["status"] == "succeeded" and done["progress"] == 1.0
    assert done["worker"] == "test-worker" and done["finished_at"] is not None
    assert f"{code} load: baseline served: too little history" in done["message"]
    run_id = done["results"][code]["load"]["run_id"]
    runs = client.get("/v1/model-runs", params={"site": code}).json()["items"]
    assert [r["id"] for r in runs] == [run_id] and runs[0]["job_id"] == job["id"]
    # the site may be retrained again now
    assert _retrain(client, site=code)[0] == 202


def test_run_job_records_the_reason_when_ingest_is_down(
    client: TestClient, sessions: sessionmaker[Session], settings: ForecastSettings
) -> None:
    # Arrange: an every-site job, and ingest nowhere to be found
    _, job = _retrain(client)
    dead = IngestReader(
        settings.model_copy(update={"ingest_url": f"http://127.0.0.1:{free_port()}"})
    )

    # Act
    status = run_job(sessions, dead, settings, claim(sessions, "w", job["id"]) or 0)

    # Assert
    dead.close()
    done = client.get(f"/v1/jobs/{job['id']}").json()
    assert status == "failed" and done["status"] == "failed"
    assert "the ingest service is not reachable" in done["error"]
    assert done["message"].startswith("could not list the sites")


def test_a_job_whose_worker_died_is_failed_and_no_longer_blocks_its_site(
    ingest: IngestAPI, session: Session, client: TestClient
) -> None:
    # Arrange: a running job with no heartbeat for an hour
    lyon = ingest.sites[0]
    old = datetime.now(UTC) - timedelta(hours=1)
    stuck = Job(site=lyon, status="running", requested_by="a", started_at=old, heartbeat_at=old)
    session.add(stuck)
    session.flush()

    # Act
    code, job = _retrain(client, site=lyon)

    # Assert
    assert code == 202 and job["id"] != stuck.id
    session.refresh(stuck)
    assert stuck.status == "failed" and "no progress for 900 s" in (stuck.error or "")


@pytest.fixture
def committed_sessions(make_database: Callable[[str], str]) -> Iterator[sessionmaker[Session]]:
    """Sessions on a database of their own whose commits are real (two workers' view)."""
    engine = create_engine(to_sqlalchemy_url(make_database("forecast_claim")))
    yield sessionmaker(engine)
    engine.dispose()


def test_claim_passes_over_a_job_another_worker_is_claiming(
    committed_sessions: sessionmaker[Session],
) -> None:
    # Arrange: two queued jobs; another worker holds the first one's row lock
    with committed_sessions.begin() as s:
        jobs = [Job(site="A", requested_by="t"), Job(site="B", requested_by="t")]
        s.add_all(jobs)
        s.flush()
        first, second = (j.id for j in jobs)
    other = committed_sessions()
    other.execute(text("SELECT id FROM forecast.job WHERE id = :id FOR UPDATE"), {"id": first})

    # Act: no waiting on the locked row
    got = claim(committed_sessions, "w2")

    # Assert
    other.rollback()
    other.close()
    assert got == second
    assert claim(committed_sessions, "w3") == first
    assert claim(committed_sessions, "w4") is None


def test_retrain_for_a_past_day_keeps_the_target_date(
    ingest: IngestAPI, client: TestClient
) -> None:
    # Act
    code, job = _retrain(client, site=ingest.sites[0], target_date=str(date(2026, 3, 29)))

    # Assert
    assert code == 202 and job["target_date"] == "2026-03-29"


def test_maintenance_job_scores_the_equipment_once_for_two_requests(
    ingest: IngestAPI,
    client: TestClient,
    sessions: sessionmaker[Session],
    reader: IngestReader,
    settings: ForecastSettings,
) -> None:
    # Arrange
    first = client.post("/v1/jobs/maintenance")
    second = client.post("/v1/jobs/maintenance")

    # Act
    job_id = claim(sessions, "w")
    status = run_job(sessions, reader, settings, job_id or 0)

    # Assert: one job, no forecast retrained, every equipment scored
    assert first.status_code == 202 and second.status_code == 200
    assert second.json()["id"] == first.json()["id"] == job_id
    done = client.get(f"/v1/jobs/{job_id}").json()
    assert status == "succeeded" and done["kind"] == "maintenance"
    assert set(done["results"]) == {"maintenance"}
    risk = client.get("/v1/maintenance/risk").json()
    assert len(risk["items"]) + len(risk["unscored"]) == len(ingest.equipment)
