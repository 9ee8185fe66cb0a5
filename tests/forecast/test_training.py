"""Training runs on data read from a real ingest process: DST days, too little history, the
non-promotion rule, stale data. Runs are stored in the test's rolled-back transaction and read
back through the forecast API in-process."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from services.forecast.config import ForecastSettings
from services.forecast.data import IngestReader
from services.forecast.service import forecast_site
from services.ingest.simulator.catalog import site_specs
from services.ingest.simulator.client import current_hour
from services.ingest.simulator.model import simulate_readings, simulate_weather, to_epoch
from tests.forecast.conftest import IngestAPI, days_ago, weekly_rows

PARIS = ZoneInfo("Europe/Paris")
SPRING = date(2026, 3, 29)  # 23 hours in Paris
AUTUMN = date(2026, 10, 25)  # 25 hours in Paris
HISTORY_DAYS = 35


def _post_simulated(ingest: IngestAPI, code: str, start: datetime, end: datetime) -> None:
    """The simulator's Lyon offices under another code: consumption and weather, no
    production (so one model run per training)."""
    spec = replace(site_specs(1)[0], code=code)
    r = simulate_readings(spec, 7, to_epoch(start), to_epoch(end))
    rows = [
        (datetime.fromtimestamp(int(t), UTC), float(c), 0.0)
        for t, c in zip(r.ts.tolist(), r.consumption_kwh.tolist(), strict=True)
    ]
    ingest.readings(code, rows, source="simulated")
    w = simulate_weather(spec, 7, to_epoch(start), to_epoch(end))
    ingest.post(
        "/v1/weather/batch",
        [
            {
                "site": code,
                "ts": datetime.fromtimestamp(int(t), UTC).isoformat(),
                "temperature_c": round(float(temp), 2),
                "irradiance_w_m2": round(float(ghi), 1),
                "source": "simulated",
            }
            for t, temp, ghi in zip(
                w.ts.tolist(), w.temperature_c.tolist(), w.irradiance_w_m2.tolist(), strict=True
            )
        ],
    )


@pytest.fixture(scope="module")
def dst_site(ingest: IngestAPI) -> str:
    """A Paris site with five weeks of history before each 2026 DST change, and the day."""
    code = ingest.site("DST")
    for day in (SPRING, AUTUMN):
        end = datetime.combine(day + timedelta(days=1), datetime.min.time(), PARIS)
        _post_simulated(ingest, code, end - timedelta(days=HISTORY_DAYS + 1), end)
    return code


def _latest(client: TestClient, code: str) -> dict[str, Any]:
    r = client.get(f"/v1/sites/{code}/forecast/latest")
    assert r.status_code == 200, r.text
    return dict(r.json())


def _run(client: TestClient, run_id: int) -> dict[str, Any]:
    r = client.get(f"/v1/model-runs/{run_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.mark.parametrize(("target", "n_hours"), [(SPRING, 23), (AUTUMN, 25)])
def test_forecast_site_dst_day_has_every_local_hour(
    target: date,
    n_hours: int,
    dst_site: str,
    sessions: sessionmaker[Session],
    reader: IngestReader,
    settings: ForecastSettings,
    client: TestClient,
) -> None:
    # Arrange
    site = reader.site(dst_site)

    # Act
    (outcome,) = forecast_site(sessions, reader, settings, site, target_date=target)

    # Assert: one point per local hour of the day, consecutive, with a coherent interval
    latest = _latest(client, dst_site)
    points = latest["points"]
    stamps = [datetime.fromisoformat(p["ts"]) for p in points]
    assert outcome.forecast_id == latest["forecast_id"]
    assert latest["target_date"] == target.isoformat()
    assert len(points) == n_hours
    assert {t.date() for t in stamps} == {target}
    assert all(b - a == timedelta(hours=1) for a, b in zip(stamps, stamps[1:], strict=False))
    assert all(p["consumption_lo"] <= p["consumption_kwh"] <= p["consumption_hi"] for p in points)
    assert all(p["baseline_kwh"] is not None for p in points)
    # ... issued at midnight starting the day (a past day: as the backtest would have)
    assert datetime.fromisoformat(latest["issued_at"]) == datetime.combine(
        target, datetime.min.time(), PARIS
    )
    run = _run(client, latest["run_id"])
    assert run["status"] == "succeeded", run["error"]
    assert run["metrics"]["n_hours"] >= 6 * 24
    assert run["feature_importances"]
    # ... and "as issued" against what ingest measured that day
    day_start = datetime.combine(target, datetime.min.time(), PARIS)
    r = client.get(
        f"/v1/sites/{dst_site}/forecast/vs-actual",
        params={
            "start": day_start.isoformat(),
            "end": (day_start + timedelta(days=1)).isoformat(),
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["items"]) == n_hours
    assert all(i["actual_kwh"] is not None for i in body["items"])
    assert body["summary"]["hours"] == n_hours and body["summary"]["mape"] is not None


def test_forecast_site_with_too_little_history_serves_the_baseline_and_says_why(
    ingest: IngestAPI,
    sessions: sessionmaker[Session],
    reader: IngestReader,
    settings: ForecastSettings,
    client: TestClient,
) -> None:
    # Arrange: five days of measurements
    code = ingest.site("SHORT")
    ingest.readings(code, weekly_rows(days_ago(5), current_hour()))

    # Act
    (outcome,) = forecast_site(sessions, reader, settings, reader.site(code))

    # Assert
    run = _run(client, outcome.run_id)
    assert run["status"] == "failed" and run["promoted"] is False
    assert "only 5.0 days of measurements" in run["error"]
    assert "at least 29 days" in run["error"]
    latest = _latest(client, code)
    assert latest["served"] == "baseline" and latest["method"].startswith("seasonal_naive_")
    assert "too little history" in latest["message"]
    assert latest["model_run"]["served"] == "baseline"
    assert all(p["consumption_kwh"] is not None for p in latest["points"])
    assert outcome.served == "baseline" and "baseline served" in outcome.message


def test_forecast_site_where_the_weekly_naive_is_exact_does_not_promote_the_model(
    ingest: IngestAPI,
    sessions: sessionmaker[Session],
    reader: IngestReader,
    settings: ForecastSettings,
    client: TestClient,
) -> None:
    # Arrange: five weeks of a load that repeats exactly every week
    code = ingest.site("WEEKLY")
    ingest.readings(code, weekly_rows(days_ago(HISTORY_DAYS), current_hour()))

    # Act
    (outcome,) = forecast_site(sessions, reader, settings, reader.site(code))

    # Assert: the model ran, lost to the seasonal naive, and the naive is served
    run = _run(client, outcome.run_id)
    assert run["status"] == "succeeded" and run["promoted"] is False
    assert run["metrics"]["rmse_naive_7d"] == pytest.approx(0.0, abs=1e-9)
    assert run["metrics"]["rmse"] > 0
    assert "does not beat the best seasonal naive" in run["promotion_reason"]
    latest = _latest(client, code)
    assert latest["served"] == "baseline" and latest["method"] == "seasonal_naive_7d"
    expected = {ts: c for ts, c, _ in weekly_rows(days_ago(9), days_ago(-2))}
    for p in latest["points"]:
        ts = datetime.fromisoformat(p["ts"]).astimezone(UTC)
        assert p["consumption_kwh"] == pytest.approx(expected[ts])
        assert p["model_kwh"] is not None  # the losing model's forecast is kept beside it


def test_forecast_site_with_stale_data_issues_nothing(
    ingest: IngestAPI,
    sessions: sessionmaker[Session],
    reader: IngestReader,
    settings: ForecastSettings,
    client: TestClient,
) -> None:
    # Arrange: measurements that stopped three weeks ago
    code = ingest.site("STALE")
    ingest.readings(code, weekly_rows(days_ago(30), days_ago(21)))

    # Act
    (outcome,) = forecast_site(sessions, reader, settings, reader.site(code))

    # Assert
    assert outcome.forecast_id is None and outcome.served is None
    assert "no load measurement in the 7 days before the issue time" in outcome.message
    assert client.get(f"/v1/sites/{code}/forecast/latest").status_code == 404
