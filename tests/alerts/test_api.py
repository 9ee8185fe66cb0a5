"""Incidents lifecycle, rules CRUD with overrides, listing filters, histogram, metrics."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from tests.alerts.conftest import IngestAPI, evaluate, hours_ago, incidents
from tests.conftest import token_for

H = timedelta(hours=1)


def _open_deficit(
    client: TestClient, ingest: IngestAPI, hours: int = 3
) -> tuple[str, dict[str, Any]]:
    """A site with an ongoing deficit and its open incident."""
    first = hours_ago(hours + 1)
    site = ingest.site(capacity_kw=500)
    ingest.readings(site, [(first + i * H, 120.0 + i, 50.0) for i in range(hours)])
    evaluate(client, site, first, first + hours * H)
    (inc,) = incidents(client, site=site, kind="deficit")
    return site, inc


def test_acknowledge_records_who_when_and_why(client: TestClient, ingest: IngestAPI) -> None:
    _, inc = _open_deficit(client, ingest)

    r = client.post(f"/v1/incidents/{inc['id']}/acknowledge", json={"comment": "on it"})
    again = client.post(f"/v1/incidents/{inc['id']}/acknowledge", json={})

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "acknowledged" and body["acknowledged_by"] == "olivia"
    assert body["ack_comment"] == "on it" and body["acknowledged_at"]
    assert again.status_code == 409 and "olivia" in again.json()["detail"]
    trail = client.get(f"/v1/incidents/{inc['id']}").json()["audit"]
    assert trail[-1]["action"] == "acknowledged" and trail[-1]["actor"] == "olivia"


def test_resolve_feedback_and_assign_follow_the_lifecycle(
    client: TestClient, ingest: IngestAPI
) -> None:
    _, inc = _open_deficit(client, ingest)
    url = f"/v1/incidents/{inc['id']}"

    assigned = client.post(f"{url}/assign", json={"assignee": "marc"})
    resolved = client.post(f"{url}/resolve", json={"comment": "load shed"})
    twice = client.post(f"{url}/resolve", json={})
    ack_after = client.post(f"{url}/acknowledge", json={})
    fb = client.post(f"{url}/feedback", json={"true_positive": False, "comment": "planned"})

    assert assigned.json()["assignee"] == "marc"
    assert resolved.json()["status"] == "resolved" and resolved.json()["resolved_by"] == "olivia"
    assert twice.status_code == 409 and ack_after.status_code == 409
    assert fb.json()["feedback"] is False and fb.json()["feedback_by"] == "olivia"
    detail = client.get(url).json()
    assert [a["action"] for a in detail["audit"]] == [
        "opened", "assigned", "resolved", "feedback",
    ]  # fmt: skip
    assert [n["event"] for n in detail["notifications"]] == ["opened", "resolved"]


def test_resolved_by_a_person_then_condition_continues_opens_a_new_incident(
    client: TestClient, ingest: IngestAPI
) -> None:
    site, inc = _open_deficit(client, ingest)
    client.post(f"/v1/incidents/{inc['id']}/resolve", json={})
    nxt = hours_ago(0) + H  # after the resolution (ingest accepts up to 2 h ahead)
    ingest.readings(site, [(nxt, 130.0, 50.0), (nxt + H, 130.0, 50.0)])

    evaluate(client, site, nxt, nxt + 2 * H)
    evaluate(client, site, nxt, nxt + 2 * H)

    found = incidents(client, site=site, kind="deficit")
    assert len(found) == 2
    newest, oldest = found
    assert oldest["id"] == inc["id"] and oldest["resolved_by"] == "olivia"
    assert newest["status"] == "open" and datetime.fromisoformat(newest["first_seen_at"]) == nxt


def test_viewer_reads_but_cannot_act(client: TestClient, ingest: IngestAPI) -> None:
    _, inc = _open_deficit(client, ingest)
    viewer = {"Authorization": f"Bearer {token_for('viewer')}"}

    read = client.get(f"/v1/incidents/{inc['id']}", headers=viewer)
    ack = client.post(f"/v1/incidents/{inc['id']}/acknowledge", json={}, headers=viewer)
    anonymous = client.get("/v1/incidents", headers={"Authorization": ""})

    assert read.status_code == 200
    assert ack.status_code == 403 and ack.json()["error"] == "Forbidden"
    assert anonymous.status_code == 401


def test_unknown_incident_is_404_and_bad_body_is_422(client: TestClient) -> None:
    missing = client.post("/v1/incidents/999999999/acknowledge", json={})
    bad = client.post("/v1/incidents/1/feedback", json={"true_positive": "perhaps"})
    huge = client.get("/v1/incidents/99999999999999999999999")

    assert missing.status_code == 404 and missing.json()["error"] == "IncidentNotFound"
    assert bad.status_code == 422 and huge.status_code == 422


def test_list_incidents_filters_and_pages_by_keyset(client: TestClient, ingest: IngestAPI) -> None:
    # Arrange: one site with a deficit (warning) and over capacity (critical).
    first = hours_ago(4)
    site = ingest.site(capacity_kw=100)
    ingest.readings(site, [(first + i * H, 150.0 + i, 50.0) for i in range(3)])
    evaluate(client, site, first, first + 3 * H)

    # Act
    critical = incidents(client, site=site, severity="critical")
    warning = incidents(client, site=site, severity="warning", status="open")
    page1 = client.get("/v1/incidents", params={"site": site, "limit": 1}).json()
    page2 = client.get(
        "/v1/incidents", params={"site": site, "limit": 1, "before_id": page1["next_before_id"]}
    ).json()
    future = incidents(client, site=site, start=(hours_ago(-5)).isoformat())
    past = incidents(client, site=site, end=(first - H).isoformat())

    # Assert
    assert [i["condition_key"] for i in critical] == ["over_capacity"]
    assert [i["condition_key"] for i in warning] == ["deficit"]
    assert page1["next_before_id"] and page2["next_before_id"] is None
    assert page1["items"][0]["id"] > page2["items"][0]["id"]
    assert len(future) == 2  # still open: active in any later range
    assert past == []


def test_rules_crud_needs_admin_and_valid_params(client: TestClient, admin: dict[str, str]) -> None:
    body = {"name": "night-spike", "kind": "threshold", "severity": "critical",
            "params": {"metric": "consumption", "above_kwh": 500}, "pending_s": 0}  # fmt: skip

    as_operator = client.post("/v1/rules", json=body)
    bad_kind = client.post("/v1/rules", json={**body, "kind": "nope"}, headers=admin)
    bad_param = client.post("/v1/rules", json={**body, "params": {"above_kwh": -1}}, headers=admin)
    unknown_param = client.post("/v1/rules", json={**body, "params": {"x": 1}}, headers=admin)
    created = client.post("/v1/rules", json=body, headers=admin)
    duplicate = client.post("/v1/rules", json=body, headers=admin)
    patched = client.patch(
        f"/v1/rules/{created.json()['id']}", json={"enabled": False}, headers=admin
    )
    deleted = client.delete(f"/v1/rules/{created.json()['id']}", headers=admin)
    gone = client.get(f"/v1/rules/{created.json()['id']}")

    assert as_operator.status_code == 403
    assert bad_kind.status_code == 422
    assert bad_param.status_code == 422 and "params.above_kwh" in bad_param.json()["detail"]
    assert unknown_param.status_code == 422 and "params.x" in unknown_param.json()["detail"]
    assert created.status_code == 201 and created.json()["created_by"] == "ada"
    assert duplicate.status_code == 409
    assert patched.json()["enabled"] is False
    assert deleted.status_code == 204 and gone.status_code == 404
    actions = [
        a["action"] for a in client.get("/v1/audit", params={"entity": "rule"}).json()["items"]
    ]
    assert actions[:3] == ["rule_deleted", "rule_updated", "rule_created"]


def test_group_rule_and_site_override_apply_where_they_should(
    client: TestClient, admin: dict[str, str], ingest: IngestAPI
) -> None:
    # Arrange: a threshold rule for a group of two sites; one site overrides the threshold.
    first = hours_ago(3)
    a, b, c = ingest.site(), ingest.site(), ingest.site()
    for site in (a, b, c):
        ingest.readings(site, [(first + i * H, 80.0, 100.0) for i in range(2)])
    rule = client.post(
        "/v1/rules",
        json={"name": "group-80", "kind": "threshold", "sites": [a, b], "pending_s": 0,
              "params": {"metric": "consumption", "above_kwh": 100}},
        headers=admin,
    ).json()  # fmt: skip
    put = client.put(
        f"/v1/rules/{rule['id']}/overrides/{b}",
        json={"params": {"above_kwh": 50}, "severity": "critical"},
        headers=admin,
    )
    bad_override = client.put(
        f"/v1/rules/{rule['id']}/overrides/{b}", json={"params": {"metric": "x"}}, headers=admin
    )

    # Act
    for site in (a, b, c):
        evaluate(client, site, first, first + 2 * H)

    # Assert
    assert put.status_code == 200 and bad_override.status_code == 422
    fired = {
        s: [i for i in incidents(client, site=s) if i["rule_id"] == rule["id"]] for s in (a, b, c)
    }
    assert fired[a] == [] and fired[c] == []
    assert len(fired[b]) == 1 and fired[b][0]["severity"] == "critical"
    assert fired[b][0]["threshold"] == 50
    effective = {r["name"]: r for r in client.get(f"/v1/sites/{b}/rules").json()}
    assert effective["group-80"]["params"]["above_kwh"] == 50
    assert (
        effective["group-80"]["overridden"] is True and effective["group-80"]["status"] == "firing"
    )
    assert "group-80" not in {r["name"] for r in client.get(f"/v1/sites/{c}/rules").json()}
    used = client.delete(f"/v1/rules/{rule['id']}", headers=admin)
    assert used.status_code == 409 and "disable" in used.json()["detail"]


def test_disabled_override_turns_a_rule_off_for_one_site(
    client: TestClient, admin: dict[str, str], ingest: IngestAPI
) -> None:
    first = hours_ago(4)
    site = ingest.site(capacity_kw=500)
    ingest.readings(site, [(first + i * H, 120.0, 50.0) for i in range(3)])
    deficit = next(r for r in client.get("/v1/rules").json() if r["name"] == "deficit")
    client.put(
        f"/v1/rules/{deficit['id']}/overrides/{site}", json={"enabled": False}, headers=admin
    )

    result = evaluate(client, site, first, first + 3 * H)

    assert incidents(client, site=site, kind="deficit") == []
    assert {r["name"]: r["status"] for r in result["rules"]}["deficit"] == "disabled"


def test_deficit_histogram_by_hour_of_day_and_by_day(client: TestClient, ingest: IngestAPI) -> None:
    # Arrange: two local days (Europe/Paris, UTC+1 in winter); deficit at 23:00 and 00:00.
    site = ingest.site()
    day = datetime.fromisoformat("2026-01-10T00:00:00+01:00")
    rows = [(day + i * H, 100.0 if i in (23, 24) else 10.0, 50.0) for i in range(48)]
    ingest.readings(site, rows)

    r = client.get(
        f"/v1/sites/{site}/deficit-histogram",
        params={"start": day.isoformat(), "end": (day + 48 * H).isoformat()},
    )

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["hours"] == 48 and body["deficit_hours"] == 2 and body["deficit_kwh"] == 100.0
    assert {b["hour"]: b["deficit_hours"] for b in body["by_hour"] if b["deficit_hours"]} == {
        0: 1, 23: 1,
    }  # fmt: skip
    assert [(d["date"], d["deficit_hours"], d["hours"]) for d in body["by_day"]] == [
        ("2026-01-10", 1, 24), ("2026-01-11", 1, 24),
    ]  # fmt: skip


def test_deficit_histogram_errors_are_the_callers(client: TestClient) -> None:
    unknown = client.get(
        "/v1/sites/NOPE-X/deficit-histogram",
        params={"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"},
    )
    naive = client.get(
        "/v1/sites/NOPE-X/deficit-histogram",
        params={"start": "2026-01-01T00:00:00", "end": "2026-01-02T00:00:00Z"},
    )

    assert unknown.status_code == 404 and unknown.json()["error"] == "SiteNotFound"
    assert naive.status_code == 422


def test_metrics_expose_open_incidents_evaluations_and_deliveries(
    client: TestClient, ingest: IngestAPI
) -> None:
    _open_deficit(client, ingest)

    text = client.get("/metrics").text

    assert 'alerts_open_incidents{severity="warning"}' in text
    assert 'alerts_evaluations_total{outcome="ok",trigger="api"}' in text
    assert "alerts_rule_evaluations_total" in text
    assert "alerts_notification_deliveries_total" in text or "# HELP alerts_notification" in text
