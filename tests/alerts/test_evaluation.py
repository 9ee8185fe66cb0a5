"""Evaluation against a real ingest process: labelled anomalies, deficits, idempotency."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from services.alerts.models import AuditEntry, Incident, Notification
from tests.alerts.conftest import (
    FakeForecast,
    IngestAPI,
    evaluate,
    hours_ago,
    incidents,
)

H = timedelta(hours=1)


def _overlaps(inc: dict[str, Any], label: dict[str, Any]) -> bool:
    first = datetime.fromisoformat(inc["first_seen_at"])
    last = datetime.fromisoformat(inc["last_seen_at"])
    return first < datetime.fromisoformat(label["end_ts"]) and last >= datetime.fromisoformat(
        label["start_ts"]
    )


def _rule_id(client: TestClient, name: str) -> int:
    rules = client.get("/v1/rules").json()
    return next(r["id"] for r in rules if r["name"] == name)


def test_evaluate_anomaly_rule_matches_the_simulator_labels(
    client: TestClient, ingest: IngestAPI
) -> None:
    # Arrange: the last 14 simulated days of each site are judged (28 days of history before).
    start, end = ingest.end - timedelta(days=14), ingest.end
    anomaly_rule = _rule_id(client, "consumption-anomaly")
    missed, false_alarms, per_label = [], [], []

    for site in ingest.sites:
        # Act
        evaluate(client, site, start, end)
        found = [i for i in incidents(client, site=site) if i["rule_id"] == anomaly_rule]
        labels = [
            lb for lb in ingest.labels(site, start, end) if lb["start_ts"] >= start.isoformat()
        ]

        # Assert (collected): each label one incident of its kind, each incident a label.
        for label in labels:
            hits = [i for i in found if i["condition_key"] == label["kind"] and _overlaps(i, label)]
            per_label.append(len(hits))
            if not hits:
                missed.append((site, label))
        for inc in found:
            if not any(lb["kind"] == inc["condition_key"] and _overlaps(inc, lb) for lb in labels):
                false_alarms.append((site, inc["condition_key"], inc["first_seen_at"]))
    assert len(per_label) >= 4, "the simulated data should hold several anomalies"
    assert missed == [] and false_alarms == []
    assert set(per_label) == {1}


def test_evaluate_anomaly_incident_explains_which_detector_fired(
    client: TestClient, ingest: IngestAPI
) -> None:
    site = ingest.sites[0]
    evaluate(client, site, ingest.end - timedelta(days=14), ingest.end)

    found = [i for i in incidents(client, site=site) if i["kind"] == "anomaly"]

    assert found
    for inc in found:
        assert inc["details"]["detector"] in ("seasonal", "stuck_meter")
        assert inc["details"]["why"] and inc["title"].endswith(site)


def test_evaluate_twice_on_the_same_data_changes_nothing(
    client: TestClient, ingest: IngestAPI, session: Session
) -> None:
    site = ingest.sites[1]
    start, end = ingest.end - timedelta(days=7), ingest.end
    evaluate(client, site, start, end)
    before = incidents(client, site=site)
    audit_rows = session.scalar(select(func.count()).select_from(AuditEntry))
    notes = session.scalar(select(func.count()).select_from(Notification))

    again = evaluate(client, site, start, end)
    shorter = evaluate(client, site, end - timedelta(hours=3), end)  # as after one new hour

    assert incidents(client, site=site) == before
    assert session.scalar(select(func.count()).select_from(AuditEntry)) == audit_rows
    assert session.scalar(select(func.count()).select_from(Notification)) == notes
    assert all(r["opened"] == r["updated"] == r["resolved"] == 0 for r in again["rules"])
    assert all(r["opened"] == r["updated"] == r["resolved"] == 0 for r in shorter["rules"])


def _deficit_site(ingest: IngestAPI, pattern: str, first: datetime) -> str:
    """A site whose hours follow ``pattern``: 'D' deficit (120 vs 50 kWh), '.' surplus."""
    site = ingest.site(capacity_kw=500)
    rows = [(first + i * H, 120.0 if c == "D" else 40.0, 50.0) for i, c in enumerate(pattern)]
    ingest.readings(site, rows)
    return site


def test_evaluate_deficit_waits_for_the_pending_duration(
    client: TestClient, ingest: IngestAPI
) -> None:
    # Arrange: default deficit rule, pending 2 h: one lone deficit hour, later two in a row.
    first = hours_ago(10)
    site = _deficit_site(ingest, "..D...DD..", first)

    # Act
    evaluate(client, site, first, first + 10 * H)

    # Assert
    (inc,) = [i for i in incidents(client, site=site) if i["condition_key"] == "deficit"]
    assert datetime.fromisoformat(inc["first_seen_at"]) == first + 6 * H
    assert datetime.fromisoformat(inc["last_seen_at"]) == first + 7 * H
    assert inc["peak_value"] == 70.0 and inc["threshold"] == 0.0
    assert inc["status"] == "resolved" and inc["resolved_by"] == "system"
    assert datetime.fromisoformat(inc["resolved_at"]) == first + 10 * H  # after 2 clear hours


def test_evaluate_flapping_deficit_is_one_incident_until_it_clears(
    client: TestClient, ingest: IngestAPI
) -> None:
    first = hours_ago(9)
    site = _deficit_site(ingest, "DD.DD.DD", first)

    result = evaluate(client, site, first, first + 9 * H)

    found = [i for i in incidents(client, site=site) if i["condition_key"] == "deficit"]
    assert len(found) == 1 and found[0]["status"] == "open"
    deficit = next(r for r in result["rules"] if r["name"] == "deficit")
    assert deficit["status"] == "firing" and deficit["opened"] == 1


def test_evaluate_new_hours_update_the_open_incident_then_resolve_it(
    client: TestClient, ingest: IngestAPI, session: Session
) -> None:
    # Arrange: an open deficit incident.
    first = hours_ago(8)
    site = _deficit_site(ingest, "DDD", first)
    evaluate(client, site, first, first + 3 * H)
    (inc,) = incidents(client, site=site, kind="deficit")

    # Act: one more deficit hour, then two surplus hours arrive.
    ingest.readings(site, [(first + 3 * H, 200.0, 50.0)])
    evaluate(client, site, first + 3 * H, first + 4 * H)
    grown = client.get(f"/v1/incidents/{inc['id']}").json()
    ingest.readings(site, [(first + 4 * H, 10.0, 50.0), (first + 5 * H, 10.0, 50.0)])
    evaluate(client, site, first + 4 * H, first + 6 * H)
    done = client.get(f"/v1/incidents/{inc['id']}").json()

    # Assert
    assert grown["status"] == "open" and grown["peak_value"] == 150.0
    assert datetime.fromisoformat(grown["last_seen_at"]) == first + 3 * H
    assert done["status"] == "resolved" and done["resolved_by"] == "system"
    assert [a["action"] for a in done["audit"]] == ["opened", "updated", "resolved"]
    assert {a["actor"] for a in done["audit"]} == {"system"}
    assert done["audit"][0]["details"]["trigger"] == "api:olivia"
    assert [n["event"] for n in done["notifications"]] == ["opened", "resolved"]


def test_evaluate_over_capacity_rule_is_critical(client: TestClient, ingest: IngestAPI) -> None:
    first = hours_ago(4)
    site = ingest.site(capacity_kw=100)
    ingest.readings(site, [(first + i * H, 150.0, 90.0) for i in range(2)])

    evaluate(client, site, first, first + 2 * H)

    (inc,) = incidents(client, site=site, severity="critical")
    assert inc["condition_key"] == "over_capacity" and inc["threshold"] == 100.0
    assert inc["peak_value"] == 50.0


def test_evaluate_forecast_rules_skipped_visibly_when_forecast_has_nothing(
    client: TestClient, ingest: IngestAPI
) -> None:
    site = ingest.site()

    result = evaluate(client, site, hours_ago(2), hours_ago(0))

    by_kind = {r["kind"]: r for r in result["rules"]}
    assert by_kind["forecast_deficit"]["status"] == "skipped"
    assert "404" in by_kind["forecast_deficit"]["detail"]
    assert by_kind["equipment_risk"]["status"] == "skipped"
    rules = client.get(f"/v1/sites/{site}/rules").json()
    assert {r["kind"]: r["status"] for r in rules}["forecast_deficit"] == "skipped"


def test_evaluate_forecast_service_down_skips_instead_of_failing(
    make_client: Any, ingest: IngestAPI
) -> None:
    from services.common.stack import free_port

    client = make_client(forecast_url=f"http://127.0.0.1:{free_port()}")
    site = ingest.site()

    result = evaluate(client, site, hours_ago(2), hours_ago(0))

    statuses = {r["kind"]: (r["status"], r["detail"]) for r in result["rules"]}
    assert statuses["equipment_risk"] == ("skipped", "the forecast service is not reachable")


def test_evaluate_forecast_deficit_and_equipment_risk_from_the_forecast_contract(
    client: TestClient, ingest: IngestAPI, forecast: FakeForecast
) -> None:
    # Arrange: tomorrow 3 hours short; one pump at 85 %, another at 20 %.
    site = ingest.site(capacity_kw=100)
    tomorrow = hours_ago(0) + timedelta(days=1)
    forecast.forecasts[site] = {
        "run_id": "r1",
        "points": [
            {"ts": (tomorrow + i * H).isoformat(), "consumption_kwh": 80.0 + (40 if i < 3 else 0),
             "consumption_lo": 70.0, "consumption_hi": 130.0, "production_kwh": 100.0}
            for i in range(6)
        ],
    }  # fmt: skip
    forecast.risk = [
        {"equipment": f"{site}-P1", "site": site, "probability": 0.85, "horizon_days": 7,
         "factors": [{"name": "vibration_mm_s", "weight": 0.6}]},
        {"equipment": f"{site}-P2", "site": site, "probability": 0.2},
        {"equipment": "OTHER-P1", "site": "OTHER", "probability": 0.99},
    ]  # fmt: skip

    # Act
    evaluate(client, site, hours_ago(2), hours_ago(0))
    found = {i["condition_key"]: i for i in incidents(client, site=site)}
    forecast.risk[0]["probability"] = 0.3  # repaired: below the recovery probability
    evaluate(client, site, hours_ago(2), hours_ago(0))
    after = {i["condition_key"]: i for i in incidents(client, site=site)}

    # Assert
    day = f"forecast:{tomorrow.date().isoformat()}"
    assert set(found) == {day, f"equipment:{site}-P1"}
    assert found[day]["peak_value"] == 60.0 and found[day]["details"]["deficit_hours"] == 3
    risk = found[f"equipment:{site}-P1"]
    assert risk["severity"] == "critical" and "vibration_mm_s" in risk["details"]["why"]
    assert after[f"equipment:{site}-P1"]["status"] == "resolved"
    assert after[day]["status"] == "open"


def test_evaluate_unknown_site_is_404(client: TestClient) -> None:
    r = client.post("/v1/evaluate", json={"site": "NOPE-NOPE"})

    assert r.status_code == 404 and r.json()["error"] == "SiteNotFound"


def test_evaluate_refuses_bad_ranges_and_viewers(client: TestClient, ingest: IngestAPI) -> None:
    from tests.conftest import token_for

    site = ingest.sites[0]
    backwards = client.post(
        "/v1/evaluate",
        json={"site": site, "start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
    )
    naive = client.post("/v1/evaluate", json={"site": site, "start": "2026-01-02T00:00:00"})
    viewer = client.post(
        "/v1/evaluate",
        json={"site": site},
        headers={"Authorization": f"Bearer {token_for('viewer')}"},
    )

    ancient = client.post("/v1/evaluate", json={"site": site, "start": "0001-01-01T00:00:00Z"})
    recurring = {"weekdays": [1], "start_time": "01:00", "end_time": "02:00"}
    silence = client.post("/v1/silences", json={"rule_id": 2**40, **recurring})
    histogram = client.get(
        f"/v1/sites/{site}/deficit-histogram",
        params={"start": "0001-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
    )

    assert backwards.status_code == 422 and "end" in backwards.json()["detail"]
    assert naive.status_code == 422
    assert viewer.status_code == 403
    assert ancient.status_code == 422 and silence.status_code == 422
    assert histogram.status_code == 422


def test_audit_log_refuses_update_and_delete(
    client: TestClient, ingest: IngestAPI, session: Session
) -> None:
    import pytest
    from sqlalchemy.exc import DBAPIError

    first = hours_ago(5)
    site = _deficit_site(ingest, "DD", first)
    evaluate(client, site, first, first + 2 * H)
    assert session.scalar(select(func.count()).select_from(Incident).where(Incident.site == site))

    for statement in ("UPDATE alerts.audit_log SET actor = 'x'", "DELETE FROM alerts.audit_log"):
        with pytest.raises(DBAPIError, match="append-only"), session.begin_nested():
            session.execute(text(statement))


def test_evaluate_after_readings_are_corrected_resolves_the_incident(
    client: TestClient, ingest: IngestAPI
) -> None:
    # Arrange: a deficit incident, then the same hours re-sent with corrected values.
    first = hours_ago(6)
    site = _deficit_site(ingest, "DDD", first)
    evaluate(client, site, first, first + 3 * H)
    ingest.readings(site, [(first + i * H, 10.0 + i, 50.0) for i in range(3)])

    # Act
    result = evaluate(client, site, first, first + 3 * H)

    # Assert
    (inc,) = incidents(client, site=site, kind="deficit")
    assert inc["status"] == "resolved" and inc["resolved_by"] == "system"
    assert inc["resolve_comment"] == "the condition is no longer in the data"
    assert {r["name"]: r["resolved"] for r in result["rules"]}["deficit"] == 1
