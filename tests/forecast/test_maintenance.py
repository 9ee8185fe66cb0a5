"""Maintenance scoring on telemetry and events read from a real ingest process: absurd
telemetry is excluded (never fed to the model, never crashing the run), every equipment gets a
row, and the risk API ranks them in the shape the alerts service reads."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from services.forecast.config import ForecastSettings
from services.forecast.data import IngestReader
from services.forecast.ml import maintenance as mx
from services.forecast.service import score_maintenance
from tests.forecast.conftest import IngestAPI

ABSURD_VIBRATION = 90.0  # accepted by ingest (<= 100 mm/s), impossible for a pump (<= 45)


def test_score_maintenance_excludes_absurd_telemetry_and_scores_every_equipment(
    ingest: IngestAPI,
    sessions: sessionmaker[Session],
    reader: IngestReader,
    settings: ForecastSettings,
    client: TestClient,
) -> None:
    # Arrange: a pump whose vibration sensor reads nonsense for the last three hours
    pump = next(code for code in ingest.equipment if code.endswith("PMP1"))
    ingest.post(
        "/v1/telemetry/batch",
        [
            {
                "equipment": pump,
                "ts": (ingest.end - timedelta(hours=h, minutes=30)).isoformat(),
                "vibration_mm_s": ABSURD_VIBRATION,
                "temperature_c": 50.0,
                "source": "real",
            }
            for h in range(3)
        ],
    )

    # Act
    outcome = score_maintenance(sessions, reader, settings, now=ingest.end)

    # Assert: the run says what it left out, and every equipment has a row
    run = client.get(f"/v1/model-runs/{outcome.run_id}").json()
    assert run["status"] == "succeeded", run["error"]
    assert run["kind"] == "maintenance" and run["site"] is None
    assert run["metrics"]["excluded"][pump]["out_of_range"] >= 3
    assert run["metrics"]["failures"] >= 3
    assert run["metrics"]["pr_auc_model"] is not None or run["metrics"]["report_note"]
    assert run["feature_importances"]
    risk = client.get("/v1/maintenance/risk").json()
    listed = [i["equipment"] for i in risk["items"]] + [u["equipment"] for u in risk["unscored"]]
    assert sorted(listed) == sorted(ingest.equipment)
    probabilities = [i["probability"] for i in risk["items"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0.0 <= p <= 1.0 for p in probabilities)
    scored = {i["equipment"]: i for i in risk["items"]}
    assert pump in scored  # the valid samples of its last 24 h still suffice
    for factor in scored[pump]["factors"]:
        assert factor["name"] and isinstance(factor["weight"], float)
        assert factor["value"] is None or factor["value"] < ABSURD_VIBRATION


def test_maintenance_risk_is_filtered_by_site_in_the_alerts_contract(
    ingest: IngestAPI,
    sessions: sessionmaker[Session],
    reader: IngestReader,
    settings: ForecastSettings,
    client: TestClient,
) -> None:
    # Arrange
    score_maintenance(sessions, reader, settings, now=ingest.end)
    lyon = ingest.sites[0]

    # Act
    body = client.get("/v1/maintenance/risk", params={"site": lyon}).json()

    # Assert: what services/alerts/sources.py reads: equipment, site, probability, factors
    assert body["items"]
    for item in body["items"]:
        assert item["site"] == lyon and item["equipment"].startswith(lyon)
        assert isinstance(item["probability"], float)
        assert item["horizon_days"] == 7 and item["computed_at"]
        assert all({"name", "weight"} <= set(f) for f in item["factors"])


def test_maintenance_risk_before_any_run_is_404(client: TestClient) -> None:
    r = client.get("/v1/maintenance/risk")

    assert r.status_code == 404 and r.json()["error"] == "PredictionsNotFound"


def test_score_maintenance_without_failures_to_learn_from_scores_with_the_last_model(
    ingest: IngestAPI,
    sessions: sessionmaker[Session],
    reader: IngestReader,
    settings: ForecastSettings,
    client: TestClient,
) -> None:
    # Arrange: a good run, then a model asking for more failures than the fleet ever had
    first = score_maintenance(sessions, reader, settings, now=ingest.end)
    too_few = mx.MaintenanceParams(min_failures=10_000)

    # Act
    second = score_maintenance(sessions, reader, settings, now=ingest.end, params=too_few)

    # Assert: the failed training is recorded with its reason; the previous model still scores
    run = client.get(f"/v1/model-runs/{second.run_id}").json()
    assert run["status"] == "failed"
    assert "failure(s)" in run["error"] and "at least 10000 are needed" in run["error"]
    assert f"scored with the model of run {first.run_id}" in run["message"]
    assert run["parameters"]["scored_with_run"] == first.run_id
    risk = client.get("/v1/maintenance/risk").json()
    assert risk["items"] and {i["model_run_id"] for i in risk["items"]} == {second.run_id}
