"""Forwarding to internal services: pooled httpx clients per service, bodies streamed.

The caller is presented to the internal service with a short-lived access token minted for
them (their name, role and scopes), so every service checks authorisation itself as well.
A service that is down or slow gives a 503 with ``Retry-After`` on its routes only.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import ssl
from collections.abc import Generator
from dataclasses import dataclass
from functools import partial
from typing import Any

import certifi
import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from services.common.errors import error_body
from services.common.http import ServiceAuth
from services.gateway.authn import AuthCache, Caller, auth_cache, upstream_token
from services.gateway.config import GatewaySettings
from services.gateway.readcache import READ_CACHE, CachedRead, CacheKey, ReadCache, etag_of

log = logging.getLogger("spe.gateway.proxy")
UPSTREAMS = ("ingest", "forecast", "alerts")
# Only what describes the payload crosses; the caller's credentials and cookies never do.
_REQUEST_HEADERS = ("content-type", "content-length", "accept", "x-request-id")
_RESPONSE_HEADERS = frozenset(
    {
        "content-type",
        "content-disposition",
        "retry-after",
        "cache-control",
        "etag",
        "last-modified",
        "link",
        "x-request-id",
    }
)
# Answers up to this size are read whole (cheaper, and a failure mid-body becomes a clean
# 503); larger ones (exports, raw ranges) are streamed through with bounded memory.
_BUFFER_LIMIT = 1 << 20


class _CallerAuth(httpx.Auth):
    """Present the caller's minted token instead of the client's service token."""

    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


class Upstream:
    """The pooled clients of one internal service, for the app's lifetime.

    httpcore scans every pooled connection (one poll() each, and a quadratic idle count) twice
    for each request, so one pool of 50 busy connections costs more CPU than the proxying
    itself; small pools used in turn keep that scan short (16 pools of a few connections each:
    the scan fell from ~11 % of the gateway's CPU with 4 pools to noise, measured with py-spy
    under bench/gateway.py's 50 clients).
    """

    def __init__(
        self, settings: GatewaySettings, name: str, tls: ssl.SSLContext, shards: int = 16
    ) -> None:
        self.name = name
        base_url = getattr(settings, f"{name}_url")
        timeout = httpx.Timeout(settings.http_timeout_s, connect=min(2.0, settings.http_timeout_s))
        # Idle connections are dropped well before the services' keep-alive (75 s, serve.py)
        # or a proxy's in between would close them: no request meets a closing connection.
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=8, keepalive_expiry=2)
        self.clients = [
            httpx.AsyncClient(
                base_url=base_url,
                timeout=timeout,
                limits=limits,
                auth=ServiceAuth(settings, "gateway"),
                verify=tls,
            )
            for _ in range(shards)
        ]
        self._turn = itertools.cycle(self.clients)

    def client(self) -> httpx.AsyncClient:
        """The next client in turn."""
        return next(self._turn)

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


def open_upstreams(settings: GatewaySettings) -> dict[str, Upstream]:
    """The clients of every internal service, opened once by the app's lifespan."""
    # One TLS context for all (building one reads the CA bundle: ~50 ms each).
    tls = ssl.create_default_context(cafile=certifi.where())
    return {name: Upstream(settings, name, tls) for name in UPSTREAMS}


async def close_upstreams(app: FastAPI) -> None:
    for upstream in getattr(app.state, "upstreams", {}).values():
        await upstream.aclose()


def unavailable(
    service: str, settings: GatewaySettings, *, timed_out: bool, timeout_s: float | None = None
) -> JSONResponse:
    """The 503 every route of a silent service answers."""
    waited_s = timeout_s if timeout_s is not None else settings.http_timeout_s
    detail = (
        f"the {service} service did not answer within {waited_s:g} s; retry shortly"
        if timed_out
        else f"the {service} service is not answering; retry shortly"
    )
    return JSONResponse(
        error_body("ServiceUnavailable", detail),
        status_code=503,
        headers={"Retry-After": str(settings.upstream_retry_after_s)},
    )


@dataclass
class Forwarded:
    """What the internal service answered: the response to send, and its body when read."""

    response: Response
    status_code: int
    body: bytes | None = None
    headers: dict[str, str] | None = None  # the upstream headers passed on, when body is read

    def summary(self) -> dict[str, Any]:
        """A few fields of a JSON answer worth keeping in the audit log (counts, ids)."""
        if not self.body or not self.response.headers.get("content-type", "").startswith(
            "application/json"
        ):
            return {}
        try:
            data = json.loads(self.body)
        except ValueError:
            return {}
        if not isinstance(data, dict):
            return {}
        keys = ("batch_id", "received", "accepted", "quarantined", "code", "id", "error")
        return {k: data[k] for k in keys if k in data and not isinstance(data[k], dict | list)}


async def forward(
    request: Request,
    caller: Caller,
    *,
    service: str,
    path: str,
    timeout_s: float | None = None,
) -> Forwarded:
    """Send the request (query string and body as received) to ``service`` at ``path``."""
    settings: GatewaySettings = request.app.state.settings
    client = request.app.state.upstreams[service].client()
    headers = {k: v for k in _REQUEST_HEADERS if (v := request.headers.get(k)) is not None}
    has_body = request.method in ("POST", "PUT", "PATCH")
    upstream = client.build_request(
        request.method,
        httpx.URL(path, query=request.scope.get("query_string", b"")),
        headers=headers,
        content=request.stream() if has_body else None,
        timeout=(
            httpx.Timeout(timeout_s, connect=min(2.0, timeout_s))
            if timeout_s is not None
            else httpx.USE_CLIENT_DEFAULT
        ),
    )
    auth = _CallerAuth(upstream_token(settings, auth_cache(request), caller))
    try:
        try:
            answer = await client.send(upstream, stream=True, auth=auth)
        except (httpx.RemoteProtocolError, httpx.ReadError):
            # A kept-alive connection closed by the server under our feet: a GET can safely go
            # again on a fresh one (a body already streamed cannot be replayed).
            if has_body:
                raise
            answer = await client.send(upstream, stream=True, auth=auth)
    except httpx.TimeoutException:
        log.warning("upstream timeout", extra={"upstream": service, "path": path})
        return Forwarded(unavailable(service, settings, timed_out=True, timeout_s=timeout_s), 503)
    except httpx.TransportError as exc:
        log.warning("upstream unreachable", extra={"upstream": service, "error": repr(exc)})
        return Forwarded(unavailable(service, settings, timed_out=False), 503)

    out_headers = {k: v for k, v in answer.headers.items() if k in _RESPONSE_HEADERS}
    length = answer.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) <= _BUFFER_LIMIT:
        try:
            body = await answer.aread()
        except httpx.TransportError as exc:
            timed_out = isinstance(exc, httpx.TimeoutException)
            answer_503 = unavailable(service, settings, timed_out=timed_out, timeout_s=timeout_s)
            return Forwarded(answer_503, 503)
        finally:
            await answer.aclose()
        return Forwarded(
            Response(body, status_code=answer.status_code, headers=out_headers),
            answer.status_code,
            body,
            out_headers,
        )
    return Forwarded(
        StreamingResponse(
            answer.aiter_bytes(),
            status_code=answer.status_code,
            headers=out_headers,
            background=BackgroundTask(answer.aclose),
        ),
        answer.status_code,
    )


async def cached_read(
    request: Request, caller: Caller, service: str, path: str, site: str | None
) -> Response:
    """A cacheable GET: from the read cache, else forwarded (and kept); with an ETag / 304."""
    cache: ReadCache = request.app.state.read_cache
    if_none_match = request.headers.get("if-none-match")
    key = (caller.role, caller.scopes, service, path, request.scope.get("query_string", b""))
    if cache.enabled:
        hit = cache.get(key)
        if hit is not None:
            renew = partial(refresh_read, request, caller, service, path, site, key)
            return cache.hit(key, hit, if_none_match, renew)
        pending = cache.inflight.get(key)
        if pending is not None:
            shared = await asyncio.shield(pending)
            if shared is not None:
                READ_CACHE.labels("shared").inc()
                return shared.response(if_none_match)
    forwarded, entry = await _read_upstream(request, caller, service, path, site, key)
    if entry is None:
        return forwarded.response  # errors, 503s and streamed bodies are never kept
    READ_CACHE.labels("miss").inc()
    return entry.response(if_none_match)


async def _read_upstream(
    request: Request, caller: Caller, service: str, path: str, site: str | None, key: CacheKey
) -> tuple[Forwarded, CachedRead | None]:
    """Forward the read; keep a whole 200 (unless a write happened meanwhile) and return it.

    Concurrent readers of ``key`` wait for this call instead of making their own.
    """
    cache: ReadCache = request.app.state.read_cache
    generation = cache.generation
    leader: asyncio.Future[CachedRead | None] | None = None
    if cache.enabled and key not in cache.inflight:
        leader = asyncio.get_running_loop().create_future()
        cache.inflight[key] = leader
    entry = None
    try:
        forwarded = await forward(request, caller, service=service, path=path)
        if forwarded.status_code == 200 and forwarded.body is not None:
            entry = CachedRead(
                forwarded.body, forwarded.headers or {}, etag_of(forwarded.body), site
            )
            if cache.enabled:
                cache.put(key, entry, generation)
        return forwarded, entry
    finally:
        if leader is not None:
            cache.inflight.pop(key, None)
            leader.set_result(entry)  # None: the others ask upstream themselves


async def refresh_read(
    request: Request, caller: Caller, service: str, path: str, site: str | None, key: CacheKey
) -> None:
    """Refresh ahead (readcache): replace an entry near its expiry; on failure it just expires."""
    try:
        forwarded, entry = await _read_upstream(request, caller, service, path, site, key)
    except Exception:  # noqa: BLE001 - in the background, nobody else would see it
        log.warning("read refresh failed", exc_info=True, extra={"upstream": service})
        return
    background = forwarded.response.background
    if entry is None and background is not None:
        await background()  # a streamed answer (too big to keep) nobody will read: close it


class UpstreamFailed(Exception):
    """An internal service answered with an error, or not at all: what to tell the caller."""

    def __init__(self, response: Response, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.response, self.status_code, self.detail = response, status_code, detail


async def fetch_json(
    app: FastAPI,
    caller: Caller,
    service: str,
    path: str,
    params: dict[str, str] | None = None,
) -> Any:
    """GET ``path`` from ``service`` as ``caller`` and decode its JSON answer.

    For the gateway's own work (exports, scheduled reports); raises UpstreamFailed with the
    503 (service down or slow) or the service's own error answer (404, 422...) to pass on.
    """
    settings: GatewaySettings = app.state.settings
    cache: AuthCache = app.state.auth_cache
    client = app.state.upstreams[service].client()
    auth = _CallerAuth(upstream_token(settings, cache, caller))
    try:
        try:
            answer = await client.get(path, params=params, auth=auth)
        except (httpx.RemoteProtocolError, httpx.ReadError):
            answer = await client.get(path, params=params, auth=auth)  # a stale pooled socket
    except httpx.TransportError as exc:
        timed_out = isinstance(exc, httpx.TimeoutException)
        log.warning("upstream unreachable", extra={"upstream": service, "error": repr(exc)})
        down = unavailable(service, settings, timed_out=timed_out)
        raise UpstreamFailed(down, 503, f"the {service} service is not answering") from None
    if answer.status_code >= 400:
        try:
            detail = str(answer.json().get("detail", ""))
        except (ValueError, AttributeError):
            detail = answer.text[:200]
        headers = {k: v for k, v in answer.headers.items() if k in ("retry-after",)}
        response = Response(
            answer.content,
            status_code=answer.status_code,
            headers=headers,
            media_type=answer.headers.get("content-type", "application/json"),
        )
        raise UpstreamFailed(response, answer.status_code, detail)
    return answer.json()
