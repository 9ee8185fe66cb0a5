"""Regression tests for what schemathesis found, one table per fix, on the running services."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.security.conftest import SERVICES, SITE, START, SecurityStack, admin_headers
from tests.security.routes import openapi_document

pytestmark = pytest.mark.e2e


def _call(stack: SecurityStack, service: str, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(
        method, stack.url(service) + path, headers=admin_headers(), timeout=30, **kw
    )


# --- 405 names every method of the path (Starlette named only the first route's) ------------

ALLOW = [
    ("ingest", "/v1/sites", "GET, POST"),
    ("ingest", f"/v1/sites/{SITE}", "GET, PATCH"),
    ("forecast", "/v1/jobs/retrain", "POST"),  # a literal path, not /v1/jobs/{job_id}
    ("alerts", "/v1/rules/1", "DELETE, GET, PATCH"),
    ("gateway", "/api/v1/sites", "GET, POST"),
]


@pytest.mark.parametrize(("service", "path", "allow"), ALLOW)
def test_405_lists_every_allowed_method(
    service: str, path: str, allow: str, security_stack: SecurityStack
) -> None:
    r = _call(security_stack, service, "OPTIONS", path)

    assert r.status_code == 405
    assert r.headers["allow"] == allow
    assert r.json()["error"] == "MethodNotAllowed" and allow in r.json()["detail"]


# --- the OpenAPI documents describe the errors the services really send ----------------------


@pytest.mark.parametrize("service", SERVICES)
def test_openapi_documents_the_one_error_shape(service: str) -> None:
    doc = openapi_document(service)
    schemas = doc["components"]["schemas"]

    assert "HTTPValidationError" not in schemas
    assert {"error", "detail"} <= set(schemas["ErrorOut"]["required"])
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            for code, response in operation["responses"].items():
                if code.isdigit() and int(code) >= 400:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (method, path, code)
            if path not in ("/health", "/ready") and not path.startswith("/api/v1/auth/"):
                assert operation.get("security"), f"{method} {path} documents no credentials"
                assert {"401", "403"} <= set(operation["responses"]), (method, path)


# --- timestamps are ISO 8601 text, never a number read as a Unix time -------------------------

NUMERIC_TIMES = [
    ("ingest", "GET", "/v1/anomaly-labels", {"params": {"start": "0.5"}}),
    ("alerts", "GET", "/v1/incidents", {"params": {"start": "1700000000"}}),
    ("ingest", "GET", f"/v1/sites/{SITE}/readings",
     {"params": {"start": "0", "end": START.isoformat()}}),
    ("alerts", "POST", "/v1/silences", {"json": {"site": SITE, "starts_at": 0,
                                                 "ends_at": "2099-01-01T00:00:00Z"}}),
    ("gateway", "POST", "/api/v1/tokens", {"json": {"name": "numeric-expiry", "expires_at": 0}}),
]  # fmt: skip


@pytest.mark.parametrize(("service", "method", "path", "kw"), NUMERIC_TIMES)
def test_a_number_is_not_a_timestamp(
    service: str, method: str, path: str, kw: dict[str, Any], security_stack: SecurityStack
) -> None:
    r = _call(security_stack, service, method, path, **kw)

    assert r.status_code == 422, r.text
    assert "ISO 8601" in r.json()["detail"]


# --- booleans and integers are not coerced from each other (lax pydantic took 0 as false) -----

RULE = {"name": "strict-check", "kind": "deficit", "params": {}}
LAX = [
    ("alerts", "POST", "/v1/rules", {"json": RULE | {"enabled": 0}}),
    ("alerts", "POST", "/v1/rules", {"json": RULE | {"recovery_s": False}}),
    ("alerts", "POST", "/v1/rules", {"json": RULE | {"pending_s": "60"}}),
    ("alerts", "PUT", f"/v1/rules/1/overrides/{SITE}", {"json": {"recovery_s": True}}),
    ("alerts", "POST", "/v1/incidents/1/feedback", {"json": {"true_positive": 0}}),
    ("alerts", "POST", "/v1/silences", {"json": {"site": SITE, "rule_id": True,
                                                 "ends_at": "2099-01-01T00:00:00Z"}}),
    ("gateway", "POST", "/api/v1/users", {"json": {"username": "laxuser", "role": "viewer",
                                                   "password": "long enough pass", "active": 1}}),
]  # fmt: skip


@pytest.mark.parametrize(("service", "method", "path", "kw"), LAX)
def test_no_lax_coercion_between_numbers_and_booleans(
    service: str, method: str, path: str, kw: dict[str, Any], security_stack: SecurityStack
) -> None:
    r = _call(security_stack, service, method, path, **kw)

    assert r.status_code == 422, r.text
    assert r.json()["error"] == "ValidationError"


# --- PATCH of a rule with null for a column that cannot be empty: 422, was a 500 --------------


@pytest.mark.parametrize(
    "field", ["name", "severity", "pending_s", "recovery_s", "enabled", "description"]
)
def test_rule_patch_with_null_is_422_not_500(field: str, security_stack: SecurityStack) -> None:
    rules = _call(security_stack, "alerts", "GET", "/v1/rules").json()
    rule_id = rules[0]["id"]

    r = _call(security_stack, "alerts", "PATCH", f"/v1/rules/{rule_id}", json={field: None})
    after = _call(security_stack, "alerts", "GET", f"/v1/rules/{rule_id}").json()

    assert r.status_code == 422, r.text
    assert f"{field} cannot be null" in r.json()["detail"]
    assert after == rules[0]


def test_rule_patch_null_sites_still_means_every_site(security_stack: SecurityStack) -> None:
    rule_id = _call(security_stack, "alerts", "GET", "/v1/rules").json()[0]["id"]

    r = _call(security_stack, "alerts", "PATCH", f"/v1/rules/{rule_id}", json={"sites": None})

    assert r.status_code == 200, r.text
    assert r.json()["sites"] is None


def test_rule_renamed_to_a_taken_name_is_409_not_500(security_stack: SecurityStack) -> None:
    rule = {"kind": "deficit", "params": {}, "enabled": False}
    first = _call(security_stack, "alerts", "POST", "/v1/rules", json=rule | {"name": "taken-a"})
    second = _call(security_stack, "alerts", "POST", "/v1/rules", json=rule | {"name": "taken-b"})
    assert first.status_code == second.status_code == 201, (first.text, second.text)
    path = f"/v1/rules/{second.json()['id']}"

    r = _call(security_stack, "alerts", "PATCH", path, json={"name": "taken-a"})
    after = _call(security_stack, "alerts", "GET", path)

    assert r.status_code == 409, r.text
    assert r.json() == {"error": "Conflict", "detail": "a rule named 'taken-a' already exists"}
    assert after.json()["name"] == "taken-b"


# --- AUTH_CACHE_S=0 (allowed: "no cache") refused every caller: the entry just stored had
# already expired when it was read back. The whole security stack runs with it.


@pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
def test_gateway_with_auth_cache_off_accepts_valid_credentials(
    header: str, security_stack: SecurityStack
) -> None:
    gateway = security_stack.url("gateway")
    headers = admin_headers()
    if header == "X-API-Key":
        made = httpx.post(f"{gateway}/api/v1/tokens", json={"name": "cache-off"},
                          headers=headers, timeout=30)  # fmt: skip
        assert made.status_code == 201, made.text
        headers = {"X-API-Key": made.json()["token"]}

    r = httpx.get(f"{gateway}/api/v1/auth/me", headers=headers, timeout=30)

    assert r.status_code == 200, r.text


# --- a NUL character anywhere was a 500 (PostgreSQL text cannot hold it): now a 422 ----------

NUL = [
    ("ingest", "GET", "/v1/equipment", {"params": {"site": "SEC1\x00"}}),
    ("ingest", "GET", "/v1/sites/SEC1%00", {}),
    ("forecast", "GET", "/v1/model-runs", {"params": {"site": "\x00"}}),
    ("alerts", "GET", "/v1/incidents", {"params": {"kind": "deficit\x00"}}),
    ("gateway", "GET", "/api/v1/audit", {"params": {"actor": "\x00"}}),
    ("gateway", "GET", "/api/v1/users/a%00b", {}),
    ("ingest", "POST", "/v1/sites",
     {"json": {"code": "NUL1", "name": "nul\x00name", "timezone": "Europe/Paris"}}),
    ("ingest", "POST", "/v1/readings/batch",
     {"json": [{"site": SITE, "ts": START.isoformat(), "consumption_kwh": 1.0,
                "source": "real\x00"}]}),
    ("alerts", "POST", "/v1/rules", {"json": {"name": "nul\x00rule", "kind": "deficit"}}),
    ("gateway", "POST", "/api/v1/tokens", {"json": {"name": "nul\x00token"}}),
]  # fmt: skip


@pytest.mark.parametrize(("service", "method", "path", "kw"), NUL)
def test_nul_character_is_422_not_500(
    service: str, method: str, path: str, kw: dict[str, Any], security_stack: SecurityStack
) -> None:
    r = _call(security_stack, service, method, path, **kw)

    if path.endswith("/batch"):  # a bad row of a batch is quarantined, the answer a 200
        assert r.status_code == 200 and r.json()["quarantined"] == 1, r.text
    else:
        assert r.status_code in (404, 422), r.text
        assert r.json()["error"] in ("BadInput", "ValidationError", "NotFound"), r.text


# --- a single-valued query parameter given twice is a 422 (the last value silently won) ------

REPEATED = [
    ("ingest", f"/v1/equipment?site={SITE}&site=OTHER", "site"),
    ("forecast", f"/v1/model-runs?site={SITE}&site=OTHER", "site"),
    ("alerts", "/v1/incidents?status=open&status=resolved", "status"),
    ("gateway", f"/api/v1/report-subscriptions?site={SITE}&site=%C3%A9", "site"),
]


@pytest.mark.parametrize(("service", "path", "name"), REPEATED)
def test_repeated_single_valued_query_parameter_is_422(
    service: str, path: str, name: str, security_stack: SecurityStack
) -> None:
    r = _call(security_stack, service, "GET", path)

    assert r.status_code == 422, r.text
    assert r.json() == {
        "error": "ValidationError",
        "detail": f"query parameter {name!r} is given 2 times; give it once",
    }
