"""Every internal service checks the token itself (defence in depth), and refuses calls
without one on every route but the probes.

The token cases are the gateway's list (tests/gateway/test_auth.py), sent here straight to
ingest, forecast and alerts, plus API tokens, which only the gateway may accept: a revoked
one is refused everywhere, and even a valid one is no credential for an internal service.

Open routes, on purpose:
* ``/health``, ``/ready``: probes for orchestrators that carry no token.
* ``/metrics``: Prometheus scrapes without credentials (deploy/prometheus/prometheus.yml).
  Its labels are route templates, methods and status codes (bounded, no user data), and
  only the gateway is published, so it gives away no more than the OpenAPI document.
* ``/openapi.json``, ``/docs``, ``/redoc``: the API description, public by design.
* the gateway's ``/api/v1/auth/login|refresh|logout`` (they take credentials) and the web
  UI's static files.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from fastapi.routing import iter_route_contexts

from tests.gateway.test_auth import REJECTED
from tests.security.conftest import ADMIN, SERVICES, SITE, SecurityStack, admin_headers
from tests.security.routes import built_app

pytestmark = pytest.mark.e2e

OPEN_EVERYWHERE = {"/health", "/ready", "/metrics", "/openapi.json", "/docs",
                   "/docs/oauth2-redirect", "/redoc"}  # fmt: skip
OPEN_ON_GATEWAY = {"/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/logout"}
INTERNAL = ("ingest", "forecast", "alerts")
# A reader route of each internal service, to present tokens to.
PROBE_ROUTE = {"ingest": "/v1/sites", "forecast": "/v1/model-runs", "alerts": "/v1/rules"}
# The gateway's own cases that do not apply to an internal service: a service token is how
# services call each other, and internal services keep no users to look a subject up in.
GATEWAY_ONLY = {"service_type_jwt", "unknown_user"}


def _fill(path: str) -> str:
    """A concrete path for a route template: ids 1, codes the seeded site, users the admin."""

    def value(match: re.Match[str]) -> str:
        name = match[1].split(":")[0]
        if name.endswith("_id"):
            return "1"
        return ADMIN if name == "username" else SITE

    return re.sub(r"{([^}]+)}", value, path)


def route_table(service: str) -> Iterator[tuple[str, str, bool]]:
    """(method, path template, meant to be open) of every route the service serves."""
    for route in iter_route_contexts(built_app(service).router.routes):
        path = route.path
        if not path:
            continue
        endpoint = route.endpoint
        static = getattr(endpoint, "__module__", "") == "services.gateway.static"
        is_open = (
            path in OPEN_EVERYWHERE
            or (service == "gateway" and path in OPEN_ON_GATEWAY)
            or (service == "gateway" and static)
        )
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            yield method, path, is_open


ROUTES = [(s, m, p, o) for s in SERVICES for m, p, o in route_table(s)]


@pytest.mark.parametrize(
    ("service", "method", "path", "is_open"),
    ROUTES,
    ids=[f"{s}:{m}:{p}" for s, m, p, _ in ROUTES],
)
def test_every_route_refuses_calls_without_a_token(
    service: str, method: str, path: str, is_open: bool, security_stack: SecurityStack
) -> None:
    url = security_stack.url(service) + _fill(path)

    r = httpx.request(method, url, timeout=30)

    if is_open:
        assert r.status_code not in (401, 403), r.text
    else:
        assert r.status_code == 401, f"{method} {path} answered {r.status_code}: {r.text[:200]}"
        assert r.headers.get("www-authenticate") == "Bearer"
        assert r.json()["error"] == "NotAuthenticated"


def test_route_table_is_walked() -> None:
    # The walk above must see the routes a service really has, nested routers included.
    paths = {(s, p) for s, _, p, _ in ROUTES}
    assert ("ingest", "/v1/readings/batch") in paths
    assert ("forecast", "/v1/jobs/retrain") in paths
    assert ("alerts", "/v1/incidents/{incident_id}/acknowledge") in paths
    assert ("gateway", "/api/v1/users/{username}") in paths
    assert sum(not o for *_, o in ROUTES) > 100


INTERNAL_CASES = sorted(set(REJECTED) - GATEWAY_ONLY)


@pytest.mark.parametrize("service", INTERNAL)
@pytest.mark.parametrize("case", INTERNAL_CASES)
def test_internal_service_rejects_bad_token(
    service: str, case: str, security_stack: SecurityStack
) -> None:
    token = REJECTED[case](ADMIN)

    r = httpx.get(
        security_stack.url(service) + PROBE_ROUTE[service],
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )

    assert r.status_code == 401, r.text
    assert r.json()["error"] == "NotAuthenticated"
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("service", INTERNAL)
def test_internal_service_accepts_a_good_token(service: str, security_stack: SecurityStack) -> None:
    # The control for the cases above: the same request with a valid token is answered.
    r = httpx.get(
        security_stack.url(service) + PROBE_ROUTE[service], headers=admin_headers(), timeout=30
    )

    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def api_tokens(security_stack: SecurityStack) -> dict[str, str]:
    """A live API token and a revoked one, made through the gateway's admin API."""
    gateway = security_stack.url("gateway")
    secrets = {}
    with httpx.Client(base_url=gateway, headers=admin_headers(), timeout=30) as http:
        for name in ("sec-live", "sec-revoked"):
            r = http.post("/api/v1/tokens", json={"name": name, "scopes": ["read", "write"]})
            assert r.status_code == 201, r.text
            secrets[name] = r.json()["token"]
            if name == "sec-revoked":
                used = http.get("/api/v1/sites", headers={"X-API-Key": secrets[name]})
                assert used.status_code == 200, used.text  # it worked before the revocation
                assert http.delete(f"/api/v1/tokens/{r.json()['id']}").status_code == 200
    return secrets


@pytest.mark.parametrize("service", [*INTERNAL, "gateway"])
@pytest.mark.parametrize("header", ["bearer", "x-api-key"])
def test_revoked_api_token_is_refused_everywhere(
    service: str, header: str, api_tokens: dict[str, str], security_stack: SecurityStack
) -> None:
    secret = api_tokens["sec-revoked"]
    headers = {"Authorization": f"Bearer {secret}"} if header == "bearer" else {"X-API-Key": secret}
    path = "/api/v1/sites" if service == "gateway" else PROBE_ROUTE[service]

    r = httpx.get(security_stack.url(service) + path, headers=headers, timeout=30)

    assert r.status_code == 401, r.text
    assert r.json()["error"] == "NotAuthenticated"


@pytest.mark.parametrize("service", INTERNAL)
def test_live_api_token_is_no_credential_for_an_internal_service(
    service: str, api_tokens: dict[str, str], security_stack: SecurityStack
) -> None:
    # Integrations go through the gateway, which checks the token against its database.
    secret = api_tokens["sec-live"]
    through_gateway = httpx.get(
        security_stack.url("gateway") + "/api/v1/sites", headers={"X-API-Key": secret}, timeout=30
    )

    direct = httpx.get(
        security_stack.url(service) + PROBE_ROUTE[service],
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )

    assert through_gateway.status_code == 200, through_gateway.text
    assert direct.status_code == 401, direct.text
