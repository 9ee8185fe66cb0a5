"""httpx clients for service-to-service calls: explicit timeouts and a fresh service token."""

from __future__ import annotations

import time
from collections.abc import Generator

import httpx

from services.common.auth import service_token
from services.common.settings import ServiceSettings


class ServiceAuth(httpx.Auth):
    """Attach a short-lived service token, minting a new one shortly before it expires."""

    def __init__(self, settings: ServiceSettings, service: str, ttl_s: int = 300) -> None:
        self.settings, self.service, self.ttl_s = settings, service, ttl_s
        self._token, self._expires_at = "", 0.0

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if time.monotonic() > self._expires_at - 30:
            self._token = service_token(self.settings, self.service, self.ttl_s)
            self._expires_at = time.monotonic() + self.ttl_s
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


def _timeout(settings: ServiceSettings) -> httpx.Timeout:
    return httpx.Timeout(settings.http_timeout_s, connect=min(2.0, settings.http_timeout_s))


def service_client(settings: ServiceSettings, caller: str, base_url: str) -> httpx.Client:
    """A blocking client for calling another SP-E service as ``caller``."""
    return httpx.Client(
        base_url=base_url, timeout=_timeout(settings), auth=ServiceAuth(settings, caller)
    )


def async_service_client(
    settings: ServiceSettings, caller: str, base_url: str
) -> httpx.AsyncClient:
    """An async client for calling another SP-E service as ``caller``."""
    return httpx.AsyncClient(
        base_url=base_url, timeout=_timeout(settings), auth=ServiceAuth(settings, caller)
    )
