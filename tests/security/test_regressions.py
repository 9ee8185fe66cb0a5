"""Regression tests for what schemathesis found, one table per fix, on the running services."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.security.conftest import SecurityStack, admin_headers

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
