"""The forecast API in-process on the rolled-back session: the latest forecast in the alerts
contract, keyset pages of model runs, input errors, metrics."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.forecast.models import Forecast, ForecastPoint, ModelArtifact, ModelRun
from services.forecast.reads import forecasts_as_issued
from services.forecast.service import prune_artifacts

START = datetime(2026, 1, 14, 23, tzinfo=UTC)  # 2026-01-15 00:00 in Paris


def make_run(session: Session, **overrides: Any) -> ModelRun:
    """A finished model run; override any column."""
    values: dict[str, Any] = {
        "site": "API1",
        "kind": "load",
        "algorithm": "test",
        "status": "succeeded",
        "promoted": True,
        "served_method": "test",
        "metrics": {"mape": 4.2, "rmse": 3.0, "skill_vs_best_naive": 0.2},
    }
    run = ModelRun(**(values | overrides))
    session.add(run)
    session.flush()
    return run


def make_forecast(
    session: Session,
    run: ModelRun,
    kind: str = "load",
    value: float | None = None,
    **overrides: Any,
) -> int:
    """An issued forecast of 2026-01-15 (Paris) with 24 points of 10 kWh (5 for production)."""
    fc = Forecast(
        site=run.site,
        kind=kind,
        target_date=date(2026, 1, 15),
        timezone="Europe/Paris",
        model_run_id=run.id,
        served="model",
        **({"method": "test", "issued_at": START - timedelta(hours=10)} | overrides),
    )
    session.add(fc)
    session.flush()
    value = value if value is not None else 10.0 if kind == "load" else 5.0
    session.add_all(
        ForecastPoint(
            forecast_id=fc.id,
            ts=START + timedelta(hours=h),
            yhat=value,
            lower=value - 1,
            upper=value + 1,
            baseline_yhat=value + 0.5,
            model_yhat=value,
        )
        for h in range(24)
    )
    session.flush()
    return fc.id


def test_latest_forecast_follows_the_alerts_contract(session: Session, client: TestClient) -> None:
    # Arrange: a load and a production forecast of the same day
    load_run = make_run(session)
    make_forecast(session, load_run)
    make_forecast(session, make_run(session, kind="production"), kind="production")

    # Act
    r = client.get("/v1/sites/API1/forecast/latest")

    # Assert: run_id, created_at, points with ts / consumption_kwh / _lo / _hi / production_kwh
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["run_id"] == load_run.id and body["created_at"]
    assert body["model_run"]["metrics"]["mape"] == 4.2 and body["served"] == "model"
    first = body["points"][0]
    assert first["ts"] == "2026-01-15T00:00:00+01:00"  # the site's local offset
    assert (first["consumption_kwh"], first["consumption_lo"], first["consumption_hi"]) == (
        10.0,
        9.0,
        11.0,
    )
    assert first["production_kwh"] == 5.0 and first["baseline_kwh"] == 10.5
    assert len(body["points"]) == 24


def test_latest_forecast_of_a_site_without_one_is_404(client: TestClient) -> None:
    r = client.get("/v1/sites/NONE1/forecast/latest")

    assert r.status_code == 404 and r.json()["error"] == "ForecastNotFound"


def test_model_runs_are_listed_newest_first_in_keyset_pages(
    session: Session, client: TestClient
) -> None:
    # Arrange
    ids = [make_run(session, site="PAGE1").id for _ in range(3)]
    make_run(session, site="PAGE1", kind="production")

    # Act
    page1 = client.get("/v1/model-runs", params={"site": "PAGE1", "kind": "load", "limit": 2})
    after = page1.json()["next_before_id"]
    page2 = client.get(
        "/v1/model-runs", params={"site": "PAGE1", "kind": "load", "limit": 2, "before_id": after}
    )

    # Assert
    assert [r["id"] for r in page1.json()["items"]] == ids[:0:-1]
    assert [r["id"] for r in page2.json()["items"]] == ids[:1]
    assert page2.json()["next_before_id"] is None
    assert page1.json()["items"][0]["feature_importances"] is None  # in GET /{id} only


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/v1/model-runs/999999999", 404, "ModelRunNotFound"),
        ("/v1/model-runs/0", 422, "ValidationError"),
        ("/v1/jobs/999999999", 404, "JobNotFound"),
        ("/v1/model-runs?kind=weather", 422, "ValidationError"),
        ("/v1/model-runs?limit=100000", 422, "ValidationError"),
        ("/v1/sites/API1/forecast/vs-actual?start=2026-01-02T00:00:00Z"
         "&end=2026-01-01T00:00:00Z", 422, "BadInput"),
        ("/v1/sites/API1/forecast/vs-actual?start=2026-01-01T00:00:00Z"
         "&end=2026-06-01T00:00:00Z", 422, "BadInput"),
        ("/v1/sites/API1/forecast/vs-actual?start=2026-01-01T00:00:00"
         "&end=2026-01-02T00:00:00Z", 422, "ValidationError"),
        ("/v1/sites/bad%20code/forecast/latest", 422, "ValidationError"),
        # Outside 1900-2200: refused by the shared query-time type, like every service.
        ("/v1/sites/API1/forecast/vs-actual?start=0001-01-01T00:00:00%2B01:00"
         "&end=0001-01-02T00:00:00Z", 422, "ValidationError"),
        ("/v1/sites/API1/forecast/vs-actual?start=9999-12-30T00:00:00Z"
         "&end=9999-12-31T23:00:00-05:00", 422, "ValidationError"),
        # Inside it but before any forecast could exist: the forecast API's own bound.
        ("/v1/sites/API1/forecast/vs-actual?start=1950-01-01T00:00:00Z"
         "&end=1950-01-02T00:00:00Z", 422, "BadInput"),
    ],
)  # fmt: skip
def test_api_refuses_bad_input_in_the_error_shape(
    path: str, status: int, error: str, client: TestClient
) -> None:
    r = client.get(path)

    assert r.status_code == status, r.text
    assert r.json()["error"] == error and r.json()["detail"]


def test_vs_actual_of_a_site_unknown_to_ingest_is_404(client: TestClient) -> None:
    r = client.get(
        "/v1/sites/NOSUCH/forecast/vs-actual",
        params={"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"},
    )

    assert r.status_code == 404 and r.json()["error"] == "SiteNotFound"


def test_metrics_expose_the_forecast_families(client: TestClient) -> None:
    text = client.get("/metrics").text

    for name in (
        "forecast_training_duration_seconds",
        "forecast_backtest_mape",
        "forecast_jobs_total",
    ):
        assert f"# TYPE {name}" in text


def test_forecast_as_issued_is_the_last_one_issued_before_the_day_began(session: Session) -> None:
    # Arrange: issued the day before at 14:00 and 21:00, then again during the day itself
    run = make_run(session, site="ASIS1")
    make_forecast(session, run, value=10.0, issued_at=START - timedelta(hours=10))
    make_forecast(session, run, value=12.0, issued_at=START - timedelta(hours=3))
    make_forecast(session, run, value=99.0, issued_at=START + timedelta(hours=6))

    # Act
    got = forecasts_as_issued(session, "ASIS1", "load", START, START + timedelta(days=1))

    # Assert
    assert len(got) == 24
    assert {p.yhat for _, p in got} == {12.0}


def test_prune_artifacts_keeps_the_newest_of_a_site_and_kind(session: Session) -> None:
    # Arrange: three load runs and a production run of one site, each with an artifact
    runs = [make_run(session, site="ART1") for _ in range(3)]
    runs.append(make_run(session, site="ART1", kind="production"))
    for run in runs:
        session.add(ModelArtifact(model_run_id=run.id, content=b"x", size_bytes=1, sha256="0"))
    session.flush()

    # Act
    deleted = prune_artifacts(session, "ART1", "load", keep=2)

    # Assert: the oldest load artifact went; the runs themselves stay
    kept = set(session.scalars(select(ModelArtifact.model_run_id)))
    assert deleted == 1
    assert {r.id for r in runs} - kept == {runs[0].id}
    assert session.get(ModelRun, runs[0].id) is not None
