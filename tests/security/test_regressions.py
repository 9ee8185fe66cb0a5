"""Regression tests for what schemathesis found, one table per fix, on the running services."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.security.conftest import SITE, SecurityStack, admin_headers

pytestmark = pytest.mark.e2e


def _call(stack: SecurityStack, service: str, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(
        method, stack.url(service) + path, headers=admin_headers(), timeout=30, **kw
    )


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
