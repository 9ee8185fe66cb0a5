"""The OpenAPI document integrators read: valid, complete, with tags and examples."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from openapi_spec_validator import validate

# The public surface, written out: a route missing from the document is a broken promise.
PUBLIC: list[tuple[str, str]] = [
    ("post", "/api/v1/auth/login"),
    ("get", "/api/v1/sites"),
    ("get", "/api/v1/sites/{code}/readings"),
    ("get", "/api/v1/sites/{code}/balance"),
    ("post", "/api/v1/readings/batch"),
    ("post", "/api/v1/readings/import"),
    ("get", "/api/v1/incidents"),
    ("get", "/api/v1/incidents/{incident_id}"),
    ("post", "/api/v1/incidents/{incident_id}/acknowledge"),
    ("post", "/api/v1/incidents/{incident_id}/resolve"),
    ("post", "/api/v1/incidents/{incident_id}/feedback"),
    ("get", "/api/v1/alerts/histogram"),
    ("get", "/api/v1/alert-rules"),
    ("post", "/api/v1/alert-rules"),
    ("patch", "/api/v1/alert-rules/{rule_id}"),
    ("delete", "/api/v1/alert-rules/{rule_id}"),
    ("get", "/api/v1/silences"),
    ("post", "/api/v1/silences"),
    ("get", "/api/v1/alert-deliveries"),
    ("get", "/api/v1/exports/readings.csv"),
    ("get", "/api/v1/exports/report.xlsx"),
    ("get", "/api/v1/exports/report.pdf"),
    ("post", "/api/v1/report-subscriptions"),
    ("get", "/api/v1/report-subscriptions/{subscription_id}/deliveries"),
    ("get", "/api/v1/tokens"),
    ("get", "/api/v1/audit"),
    ("get", "/api/v1/status"),
    ("get", "/api/v1/equipment/{code}/telemetry"),
    ("get", "/api/v1/equipment/{code}/events"),
    ("get", "/api/v1/sites/{code}/forecast"),
    ("post", "/api/v1/forecast/jobs"),
    ("get", "/api/v1/maintenance/risk"),
]


@pytest.fixture(scope="module")
def spec(_module_gateway: TestClient) -> dict[str, Any]:
    r = _module_gateway.get("/openapi.json")
    assert r.status_code == 200
    return r.json()  # type: ignore[no-any-return]


def test_openapi_document_is_valid(spec: dict[str, Any]) -> None:
    validate(spec)  # raises on any violation of the OpenAPI 3.1 schema


@pytest.mark.parametrize(("method", "path"), PUBLIC)
def test_openapi_lists_public_route_with_summary_and_tag(
    method: str, path: str, spec: dict[str, Any]
) -> None:
    operation = spec["paths"].get(path, {}).get(method)

    assert operation is not None, f"{method.upper()} {path} missing"
    assert operation.get("summary") and operation.get("tags")


@pytest.mark.parametrize(
    ("method", "path", "where"),
    [
        ("post", "/api/v1/incidents/{incident_id}/feedback", "request"),
        ("post", "/api/v1/alert-rules", "request"),
        ("post", "/api/v1/readings/batch", "request"),
        ("post", "/api/v1/silences", "request"),
        ("get", "/api/v1/incidents", "200"),
        ("get", "/api/v1/incidents/{incident_id}", "200"),
        ("get", "/api/v1/sites/{code}/balance", "200"),
        ("get", "/api/v1/alerts/histogram", "200"),
        ("post", "/api/v1/alert-rules", "201"),
        ("get", "/api/v1/exports/readings.csv", "200"),
    ],
)
def test_openapi_has_examples_on_main_bodies(
    method: str, path: str, where: str, spec: dict[str, Any]
) -> None:
    operation = spec["paths"][path][method]
    part = operation["requestBody"] if where == "request" else operation["responses"][where]

    examples = [media.get("example") for media in part["content"].values()]

    assert any(e not in (None, "", {}, []) for e in examples), examples


def test_openapi_error_responses_use_the_one_error_shape(spec: dict[str, Any]) -> None:
    operation = spec["paths"]["/api/v1/exports/report.pdf"]["get"]

    schema = operation["responses"]["503"]["content"]["application/json"]["schema"]

    assert schema["$ref"].endswith("/ErrorOut")
