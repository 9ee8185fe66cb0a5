"""The plumbing every service gets from create_app: probes, metrics, one error shape, auth."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from jose import jwt

from services.alerts.config import AlertsSettings
from services.alerts.main import build_app as build_alerts
from services.common.settings import InsecureSettings, ServiceSettings
from services.forecast.config import ForecastSettings
from services.forecast.main import build_app as build_forecast
from services.gateway.config import GatewaySettings
from services.gateway.main import build_app as build_gateway
from services.ingest.config import IngestSettings
from services.ingest.main import build_app as build_ingest
from tests.conftest import TEST_SECRET, token_for

BUILDERS = {
    "ingest": (build_ingest, IngestSettings),
    "forecast": (build_forecast, ForecastSettings),
    "alerts": (build_alerts, AlertsSettings),
    "gateway": (build_gateway, GatewaySettings),
}


@pytest.fixture(params=sorted(BUILDERS))
def service_client(request: pytest.FixtureRequest, settings_env: dict[str, Any]) -> TestClient:
    build, settings_cls = BUILDERS[request.param]
    return TestClient(build(settings_cls(**settings_env)), raise_server_exceptions=False)


def test_every_service_answers_health_ready_metrics(service_client: TestClient) -> None:
    with service_client as c:
        health, ready = c.get("/health"), c.get("/ready")
        metrics = c.get("/metrics")

    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'route="/health"' in metrics.text


def test_ready_is_503_when_database_is_unreachable(settings_env: dict[str, Any]) -> None:
    env = settings_env | {"database_url": "postgresql://nobody@127.0.0.1:1/none"}
    with TestClient(build_ingest(IngestSettings(**env))) as c:
        r = c.get("/ready")

    assert r.status_code == 503
    assert r.json()["error"] == "NotReady"
    assert r.headers["retry-after"] == "5"


# One route of each service that needs the database, and the role it takes.
_DB_ROUTES = {
    "ingest": ("GET", "/v1/sites", None),
    "forecast": ("GET", "/v1/sites/S1/forecast/latest", None),
    "alerts": ("GET", "/v1/incidents", None),
    "gateway": ("POST", "/api/v1/auth/login", {"username": "ann", "password": "a long password"}),
}


@pytest.mark.parametrize("service", sorted(_DB_ROUTES))
def test_database_down_is_503_with_retry_after_not_500(
    service: str, settings_env: dict[str, Any], auth: Any
) -> None:
    # Arrange: nothing listens on port 1, so every connection attempt is refused.
    build, settings_cls = BUILDERS[service]
    env = settings_env | {"database_url": "postgresql://nobody@127.0.0.1:1/none",
                          "db_retry_after_s": 3}  # fmt: skip
    method, path, body = _DB_ROUTES[service]
    client = TestClient(build(settings_cls(**env)), raise_server_exceptions=False)

    # Act
    r = client.request(method, path, json=body, headers=auth("viewer"))
    health = client.get("/health")

    # Assert
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "3"
    assert r.json()["error"] == "ServiceUnavailable"
    assert "database is not answering" in r.json()["detail"]
    assert health.status_code == 200


def test_metrics_label_route_template_not_raw_path(settings_env: dict[str, Any], auth: Any) -> None:
    with TestClient(build_ingest(IngestSettings(**settings_env))) as c:
        for code in ("A1", "B2", "C3"):
            c.get(f"/v1/sites/{code}", headers=auth("viewer"))
        c.get("/no/such/path")
        text = c.get("/metrics").text

    assert 'route="/v1/sites/{code}"' in text
    assert "A1" not in text and "B2" not in text
    assert 'route="<unmatched>"' in text and "/no/such/path" not in text


def test_unknown_route_uses_the_error_shape(settings_env: dict[str, Any]) -> None:
    with TestClient(build_forecast(ForecastSettings(**settings_env))) as c:
        r = c.get("/nowhere")

    assert r.status_code == 404
    assert r.json() == {"error": "NotFound", "detail": "Not Found"}


def test_production_refuses_default_secret() -> None:
    with pytest.raises(InsecureSettings):
        ServiceSettings(environment="production", secret_key="changethis")
    with pytest.raises(InsecureSettings):
        ServiceSettings(environment="production", secret_key="short")
    ok = ServiceSettings(environment="production", secret_key="x" * 40)
    assert ok.environment == "production"


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "sub": "mallory", "role": "admin", "type": "access", "iat": now, "nbf": now,
        "exp": now + 600, "iss": "spe-gateway", "aud": "spe",
    }  # fmt: skip
    return base | overrides


def _unsigned(claims: dict[str, Any]) -> str:
    import base64
    import json

    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


REJECTED_TOKENS = {
    "alg_none": _unsigned(_claims()),
    "wrong_signature": jwt.encode(_claims(), "another-secret", algorithm="HS256"),
    "expired": jwt.encode(_claims(exp=int(time.time()) - 10), TEST_SECRET, algorithm="HS256"),
    "wrong_audience": jwt.encode(_claims(aud="other"), TEST_SECRET, algorithm="HS256"),
    "wrong_issuer": jwt.encode(_claims(iss="evil"), TEST_SECRET, algorithm="HS256"),
    "refresh_type": jwt.encode(_claims(type="refresh"), TEST_SECRET, algorithm="HS256"),
    "unknown_role": jwt.encode(_claims(role="god"), TEST_SECRET, algorithm="HS256"),
    "garbage": "not.a.jwt",
}


@pytest.mark.parametrize("case", sorted(REJECTED_TOKENS))
def test_internal_service_rejects_bad_token(case: str, settings_env: dict[str, Any]) -> None:
    with TestClient(build_ingest(IngestSettings(**settings_env))) as c:
        r = c.get("/v1/sites", headers={"Authorization": f"Bearer {REJECTED_TOKENS[case]}"})

    assert r.status_code == 401, r.text
    assert r.json()["error"] == "NotAuthenticated"


def test_internal_service_accepts_service_token(settings_env: dict[str, Any]) -> None:
    token = token_for("service", subject="service:alerts", token_type="service")
    with TestClient(build_ingest(IngestSettings(**settings_env))) as c:
        r = c.get("/v1/sites", headers={"Authorization": f"Bearer {token}"})

    assert r.status_code == 200


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-03-29T00:00:00 01:00", "2026-03-29T00:00:00+01:00"),  # '+' unencoded in a URL
        ("2026-03-29T00:00:00Z", "2026-03-29T00:00:00Z"),
        (" 2026-03-29 00:00 02 ", "2026-03-29 00:00+02"),
    ],
)
def test_query_time_restores_an_unencoded_plus(raw: str, expected: str) -> None:
    from services.common.query_time import restore_plus

    assert restore_plus(raw) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [("2026-03-29T00:00:00", "a timezone is required"), ("1850-01-01T00:00:00Z", "1900 and 2200")],
)
def test_query_time_refuses_naive_and_absurd_instants(value: str, message: str) -> None:
    from pydantic import TypeAdapter, ValidationError

    from services.common.query_time import QueryTime

    with pytest.raises(ValidationError, match=message):
        TypeAdapter(QueryTime).validate_python(value)
