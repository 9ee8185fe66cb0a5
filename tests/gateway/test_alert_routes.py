"""The alerts service's public routes: roles, path mapping and audit (echo server standing in),
then the incident lifecycle through the gateway against the real alerts service."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.gateway.main import build_app
from services.gateway.models import AuditEntry
from tests.conftest import use_session
from tests.gateway.conftest import STACK_SITE, Stack, _settings, stack_headers

Headers = Callable[[str], dict[str, str]]
ROLES = ("viewer", "operator", "admin")
RANK = {"viewer": 1, "operator": 2, "admin": 3}

_DAY = "start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z"
# Who may do what: the expectation written out, not derived from the route table.
ACTIONS: list[tuple[str, str, str]] = [
    ("GET", "/api/v1/incidents?site=LYON1&active=true", "viewer"),
    ("GET", "/api/v1/incidents/42", "viewer"),
    ("POST", "/api/v1/incidents/42/acknowledge", "operator"),
    ("POST", "/api/v1/incidents/42/resolve", "operator"),
    ("POST", "/api/v1/incidents/42/feedback", "operator"),
    ("POST", "/api/v1/incidents/42/assign", "operator"),
    ("GET", "/api/v1/alerts/histogram?site=LYON1&start=a&end=b", "viewer"),
    ("GET", "/api/v1/alerts/audit", "viewer"),
    ("GET", "/api/v1/alert-rules", "viewer"),
    ("GET", "/api/v1/alert-rules/3", "viewer"),
    ("POST", "/api/v1/alert-rules", "admin"),
    ("PATCH", "/api/v1/alert-rules/3", "admin"),
    ("DELETE", "/api/v1/alert-rules/3", "admin"),
    ("PUT", "/api/v1/alert-rules/3/overrides/LYON1", "admin"),
    ("DELETE", "/api/v1/alert-rules/3/overrides/LYON1", "admin"),
    ("GET", "/api/v1/sites/LYON1/alert-rules", "viewer"),
    ("GET", "/api/v1/silences", "viewer"),
    ("POST", "/api/v1/silences", "operator"),
    ("DELETE", "/api/v1/silences/5", "operator"),
    ("GET", "/api/v1/alert-deliveries", "viewer"),
    ("POST", "/api/v1/alert-deliveries/12/retry", "operator"),
    ("GET", f"/api/v1/exports/report.pdf?site=MISSING&{_DAY}", "viewer"),
    ("GET", "/api/v1/report-subscriptions", "operator"),
    ("POST", "/api/v1/report-subscriptions", "operator"),
]


@pytest.fixture(scope="module")
def _alerts_gateway(database_url: str, upstream_url: str) -> Iterator[TestClient]:
    settings = _settings(database_url, upstream_url).model_copy(update={"alerts_url": upstream_url})
    with TestClient(build_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def echo_client(_alerts_gateway: TestClient, session: Session) -> Iterator[TestClient]:
    """A gateway whose ingest and alerts are the echo server, on the test's session."""
    use_session(_alerts_gateway.app, session)  # type: ignore[arg-type]
    yield _alerts_gateway
    _alerts_gateway.app.dependency_overrides.clear()  # type: ignore[attr-defined]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path", "minimum"), ACTIONS)
def test_role_against_action(
    method: str, path: str, minimum: str, role: str, echo_client: TestClient, headers_for: Headers
) -> None:
    body = {"json": {}} if method in ("POST", "PATCH", "PUT") else {}

    r = echo_client.request(method, path, headers=headers_for(role), **body)

    if RANK[role] >= RANK[minimum]:
        assert r.status_code != 403 and r.status_code != 401, r.text
    else:
        assert r.status_code == 403, r.text
        assert r.json()["error"] == "Forbidden" and repr(minimum) in r.json()["detail"]


def test_histogram_maps_the_site_into_the_internal_path(
    echo_client: TestClient, headers_for: Headers
) -> None:
    query = "site=LYON1&start=2026-01-01T00%3A00%3A00%2B01%3A00&end=2026-01-08T00%3A00%3A00Z"

    r = echo_client.get(f"/api/v1/alerts/histogram?{query}", headers=headers_for("viewer"))

    assert r.status_code == 200, r.text
    assert r.json()["path"] == "/v1/sites/LYON1/deficit-histogram"
    assert r.json()["query"] == query


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/alerts/histogram?start=a&end=b",  # no site
        "/api/v1/alerts/histogram?site=../x&start=a&end=b",  # not a site code
        "/api/v1/incidents/abc",
        "/api/v1/incidents/0",
        "/api/v1/alert-rules/99999999999999999999999",
    ],
)
def test_alert_routes_refuse_malformed_paths(
    path: str, echo_client: TestClient, headers_for: Headers
) -> None:
    r = echo_client.get(path, headers=headers_for("viewer"))

    assert r.status_code == 422 and r.json()["error"] == "ValidationError", r.text


@pytest.mark.parametrize(
    ("method", "path", "action", "target"),
    [
        ("POST", "/api/v1/incidents/42/acknowledge", "incident.acknowledge", "incident:42"),
        ("POST", "/api/v1/incidents/42/resolve", "incident.resolve", "incident:42"),
        ("POST", "/api/v1/incidents/42/feedback", "incident.feedback", "incident:42"),
        ("PATCH", "/api/v1/alert-rules/3", "alert_rule.update", "alert_rule:3"),
        ("DELETE", "/api/v1/alert-rules/3", "alert_rule.delete", "alert_rule:3"),
        ("PUT", "/api/v1/alert-rules/3/overrides/LYON1", "alert_rule.override_set",
         "alert_rule:3/site:LYON1"),
        ("DELETE", "/api/v1/silences/5", "silence.expire", "silence:5"),
    ],
)  # fmt: skip
def test_alert_changes_are_audited(
    method: str, path: str, action: str, target: str, echo_client: TestClient,
    headers_for: Headers, session: Session,
) -> None:  # fmt: skip
    body = {"json": {"comment": "x"}} if method != "DELETE" else {}

    r = echo_client.request(method, path, headers=headers_for("admin"), **body)

    assert r.status_code < 300, r.text
    entry = session.scalars(
        select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id.desc())
    ).first()
    assert entry is not None and entry.target == target
    assert entry.actor.startswith("user") and entry.detail["status"] == r.status_code


# --- against the real alerts service -----------------------------------------------------------


def test_incident_lifecycle_through_the_gateway(stack_gateway: TestClient, stack: Stack) -> None:
    # Arrange
    operator = stack_headers(stack_gateway, "operator")
    admin = stack_headers(stack_gateway, "admin")
    listed = stack_gateway.get(
        "/api/v1/incidents", params={"site": STACK_SITE, "active": "true"}, headers=operator
    )
    assert listed.status_code == 200, listed.text
    incident = listed.json()["items"][0]

    # Act
    ack = stack_gateway.post(
        f"/api/v1/incidents/{incident['id']}/acknowledge", json={"comment": "on it"},
        headers=operator,
    )  # fmt: skip
    feedback = stack_gateway.post(
        f"/api/v1/incidents/{incident['id']}/feedback",
        json={"true_positive": True, "comment": "real night deficit"},
        headers=operator,
    )
    again = stack_gateway.post(
        f"/api/v1/incidents/{incident['id']}/acknowledge", json={}, headers=operator
    )
    detail = stack_gateway.get(f"/api/v1/incidents/{incident['id']}", headers=operator)
    missing = stack_gateway.get("/api/v1/incidents/999999", headers=operator)
    audit = stack_gateway.get(
        "/api/v1/audit", params={"action": "incident.acknowledge", "limit": 2}, headers=admin
    )

    # Assert
    assert ack.status_code == 200 and ack.json()["status"] == "acknowledged", ack.text
    user = ack.json()["acknowledged_by"]
    assert user.startswith("user")  # the gateway user, as the alerts service saw them
    assert feedback.status_code == 200 and feedback.json()["feedback"] is True
    assert again.status_code == 409 and again.json()["error"] == "Conflict"
    trail = [(a["actor"], a["action"]) for a in detail.json()["audit"]]
    assert (user, "acknowledged") in trail and (user, "feedback") in trail
    assert missing.status_code == 404
    assert [e["target"] for e in audit.json()] == [f"incident:{incident['id']}"] * 2
    assert [e["detail"]["status"] for e in audit.json()] == [409, 200]


def test_alert_rule_crud_is_for_admins(stack_gateway: TestClient, stack: Stack) -> None:
    admin = stack_headers(stack_gateway, "admin")
    operator = stack_headers(stack_gateway, "operator")
    rule = {
        "name": "gw-test-threshold",
        "kind": "threshold",
        "severity": "critical",
        "sites": [STACK_SITE],
        "params": {"metric": "consumption", "above_kwh": 500},
    }

    refused = stack_gateway.post("/api/v1/alert-rules", json=rule, headers=operator)
    created = stack_gateway.post("/api/v1/alert-rules", json=rule, headers=admin)
    rule_id = created.json()["id"]
    changed = stack_gateway.patch(
        f"/api/v1/alert-rules/{rule_id}", json={"enabled": False}, headers=admin
    )
    bad = stack_gateway.patch(
        f"/api/v1/alert-rules/{rule_id}", json={"params": {"above_kwh": -1}}, headers=admin
    )
    deleted = stack_gateway.delete(f"/api/v1/alert-rules/{rule_id}", headers=admin)
    gone = stack_gateway.get(f"/api/v1/alert-rules/{rule_id}", headers=operator)

    assert refused.status_code == 403
    assert created.status_code == 201, created.text
    assert created.json()["created_by"].startswith("user")
    assert changed.status_code == 200 and changed.json()["enabled"] is False
    assert bad.status_code == 422
    assert deleted.status_code == 204 and deleted.content == b""
    assert gone.status_code == 404
