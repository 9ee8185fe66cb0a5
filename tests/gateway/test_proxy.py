"""The public API in front of an internal service (a local echo server standing in for it)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.gateway.models import AuditEntry
from tests.gateway.conftest import BIG_BODY_BYTES

Headers = Callable[[str], dict[str, str]]
ROLES = ("viewer", "operator", "admin")

# Who may do what: the expectation written out, not derived from the code under test.
ACTIONS: list[tuple[str, str, str]] = [
    ("GET", "/api/v1/sites", "viewer"),
    ("GET", "/api/v1/sites/LYON1", "viewer"),
    ("GET", "/api/v1/sites/LYON1/readings?resolution=hour", "viewer"),
    ("GET", "/api/v1/sites/LYON1/balance", "viewer"),
    ("GET", "/api/v1/sites/LYON1/weather", "viewer"),
    ("GET", "/api/v1/equipment", "viewer"),
    ("GET", "/api/v1/equipment/PUMP-01/telemetry", "viewer"),
    ("GET", "/api/v1/quarantine", "viewer"),
    ("GET", "/api/v1/anomaly-labels", "viewer"),
    ("GET", "/api/v1/status", "viewer"),
    ("POST", "/api/v1/readings", "operator"),
    ("POST", "/api/v1/readings/batch", "operator"),
    ("POST", "/api/v1/readings/import", "operator"),
    ("POST", "/api/v1/telemetry/batch", "operator"),
    ("POST", "/api/v1/weather/batch", "operator"),
    ("POST", "/api/v1/equipment-events/batch", "operator"),
    ("POST", "/api/v1/anomaly-labels/batch", "operator"),
    ("POST", "/api/v1/sites", "admin"),
    ("PATCH", "/api/v1/sites/LYON1", "admin"),
    ("POST", "/api/v1/equipment", "admin"),
    ("GET", "/api/v1/users", "admin"),
    ("GET", "/api/v1/tokens", "admin"),
    ("GET", "/api/v1/audit", "admin"),
]
RANK = {"viewer": 1, "operator": 2, "admin": 3}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path", "minimum"), ACTIONS)
def test_role_against_action(
    method: str, path: str, minimum: str, role: str, shared_client: TestClient, headers_for: Headers
) -> None:
    body = {"json": {}} if method in ("POST", "PATCH") else {}

    r = shared_client.request(method, path, headers=headers_for(role), **body)

    if RANK[role] >= RANK[minimum]:
        assert r.status_code < 400, r.text
    else:
        assert r.status_code == 403, r.text
        assert r.json()["error"] == "Forbidden" and repr(minimum) in r.json()["detail"]


def test_query_string_is_forwarded_unchanged(client: TestClient, headers_for: Headers) -> None:
    query = "start=2026-01-01T00%3A00%3A00%2B01%3A00&end=2026-01-02&resolution=hour&x=1&x=2"

    r = client.get(f"/api/v1/sites/LYON1/readings?{query}", headers=headers_for("viewer"))

    assert r.status_code == 200, r.text
    assert r.json()["path"] == "/v1/sites/LYON1/readings"
    assert r.json()["query"] == query


def test_body_and_content_type_are_forwarded(client: TestClient, headers_for: Headers) -> None:
    raw = b'[{"site": "LYON1", "ts": "2026-01-01T00:00:00Z", "consumption_kwh": 1.5}]'

    r = client.post(
        "/api/v1/readings/batch",
        content=raw,
        headers=headers_for("operator") | {"Content-Type": "application/json"},
    )

    assert r.status_code == 201
    assert r.json()["body"] == raw.decode() and r.json()["content_type"] == "application/json"


def test_multipart_import_is_streamed_through(client: TestClient, headers_for: Headers) -> None:
    csv = b"site,ts,consumption_kwh\n" + b"LYON1,2026-01-01T00:00:00Z,1.0\n" * 5000

    r = client.post(
        "/api/v1/readings/import",
        files={"file": ("readings.csv", csv, "text/csv")},
        headers=headers_for("operator"),
    )

    echoed = r.json()
    assert r.status_code == 201, r.text
    assert echoed["content_type"].startswith("multipart/form-data; boundary=")
    assert echoed["body_len"] > len(csv) and "readings.csv" in echoed["body"]


def test_internal_service_sees_the_caller_not_the_gateway(
    client: TestClient, session: Session, headers_for: Headers
) -> None:
    r = client.get("/api/v1/sites", headers=headers_for("operator"))

    echoed = r.json()
    assert echoed["role"] == "operator" and echoed["type"] == "access"
    assert echoed["subject"].startswith("user")


def test_internal_error_status_and_body_pass_through(
    client: TestClient, headers_for: Headers
) -> None:
    r = client.get("/api/v1/sites/MISSING", headers=headers_for("viewer"))

    assert r.status_code == 404
    assert r.json() == {"error": "SiteNotFound", "detail": "no site 'MISSING'"}


def test_invalid_code_in_path_is_422(client: TestClient, headers_for: Headers) -> None:
    r = client.get("/api/v1/sites/-bad code", headers=headers_for("viewer"))

    assert r.status_code == 422 and r.json()["error"] == "ValidationError"


def test_large_answer_is_streamed_whole(client: TestClient, headers_for: Headers) -> None:
    r = client.get("/api/v1/sites/BIG/readings", headers=headers_for("viewer"))

    assert r.status_code == 200 and len(r.content) == BIG_BODY_BYTES


def test_service_down_is_503_with_retry_after_and_other_routes_work(
    make_client: Callable[..., TestClient], headers_for: Headers
) -> None:
    from services.common.stack import free_port

    client = make_client(ingest_url=f"http://127.0.0.1:{free_port()}", http_timeout_s=5.0)
    headers = headers_for("viewer")

    start = time.monotonic()
    down = client.get("/api/v1/sites", headers=headers)
    elapsed = time.monotonic() - start
    me = client.get("/api/v1/auth/me", headers=headers)

    assert down.status_code == 503
    assert down.json() == {
        "error": "ServiceUnavailable",
        "detail": "the ingest service is not answering; retry shortly",
    }
    assert down.headers["retry-after"] == "5"
    assert elapsed < 2.0  # refused at once, without waiting for the 5 s timeout
    assert me.status_code == 200


def test_slow_service_is_503_within_the_timeout(
    make_client: Callable[..., TestClient], headers_for: Headers
) -> None:
    client = make_client(http_timeout_s=0.5)

    start = time.monotonic()
    r = client.get("/api/v1/sites/SLOW", headers=headers_for("viewer"))
    elapsed = time.monotonic() - start

    assert r.status_code == 503 and "within 0.5 s" in r.json()["detail"]
    assert "retry-after" in r.headers
    assert elapsed < 3.0  # the echo server would answer only after 6 s


def test_writes_and_site_changes_are_audited(
    client: TestClient, session: Session, headers_for: Headers
) -> None:
    client.post("/api/v1/readings/batch", json=[], headers=headers_for("operator"))
    client.patch("/api/v1/sites/LYON1", json={"name": "x"}, headers=headers_for("admin"))

    entries = session.scalars(
        select(AuditEntry).where(AuditEntry.action.in_(["readings.batch", "site.update"]))
    ).all()
    by_action = {e.action: e for e in entries}
    assert by_action["readings.batch"].detail == {
        "status": 201, "batch_id": "b-1", "received": 2, "accepted": 1, "quarantined": 1
    }  # fmt: skip
    assert by_action["site.update"].target == "site:LYON1"
    assert by_action["site.update"].actor.startswith("user")


def test_reads_are_not_audited(client: TestClient, session: Session, headers_for: Headers) -> None:
    before = session.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc()).limit(1))

    client.get("/api/v1/sites", headers=headers_for("viewer"))

    after = session.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc()).limit(1))
    assert after == before


@pytest.mark.parametrize("path", ["/health", "/api/v1/sites", "/api/v1/auth/me"])
def test_security_headers_on_every_response(path: str, client: TestClient) -> None:
    r = client.get(path)

    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert "strict-transport-security" not in r.headers


def test_hsts_only_in_production(make_client: Callable[..., TestClient]) -> None:
    client = make_client(environment="production", secret_key="p" * 40, admin_password="")

    r = client.get("/health")

    assert r.headers["strict-transport-security"].startswith("max-age=")


def test_ready_reports_services_without_failing_on_them(client: TestClient) -> None:
    r = client.get("/ready")

    assert r.status_code == 200, r.text
    services = {s["service"]: s["status"] for s in r.json()["services"]}
    assert services == {"ingest": "ready", "forecast": "unavailable", "alerts": "unavailable"}


def test_status_lists_each_service(client: TestClient, headers_for: Headers) -> None:
    r = client.get("/api/v1/status", headers=headers_for("viewer"))

    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    assert body["gateway"] == "ready"
    assert [s["service"] for s in body["services"]] == ["ingest", "forecast", "alerts"]


def test_openapi_lists_explicit_routes_with_summaries(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()

    readings = spec["paths"]["/api/v1/sites/{code}/readings"]["get"]
    assert readings["summary"]
    assert {p["name"] for p in readings["parameters"]} >= {"code", "start", "end", "resolution"}
    upload = spec["paths"]["/api/v1/readings/import"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload
    assert "/api/v1/{path}" not in spec["paths"]
