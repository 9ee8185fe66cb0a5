"""Read-cache hits answered before routing: the cockpit's refreshes at a fraction of the cost.

A cacheable read (``Route.cache``) that the read cache holds for this caller is answered by
this middleware, before FastAPI routes the request and solves its dependencies: that
machinery was most of the gateway's CPU for a hit (~0.5 ms of ~0.6, py-spy under
bench/gateway.py), and a saturated event loop makes every other request wait behind it.

Nothing is skipped that could change the answer:
- the caller must be accepted by what ``authenticate`` keeps in memory (a verified access JWT
  and its user's cached state, or a cached API token): ``authn.cached_caller``; anything it
  would look up or refuse goes the full way, which also explains a refusal;
- the caller's role must reach the route's;
- the entry is looked up under the key ``proxy.cached_read`` stores it under (role, scopes,
  service, internal path, query string as received): an entry exists only for a request
  that went the full way with that exact query (validated, authorised, answered 200);
- it runs inside the common middlewares (body limit, NUL and repeated-parameter checks,
  metrics, security headers), which see it as any other answer.

A hit due for its refresh ahead (readcache) starts it here, as ``proxy.cached_read`` would.
Everything else (a miss, another route or method, the cache off) goes on to the app.
"""

from __future__ import annotations

import re
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from services.gateway.authn import cached_caller
from services.gateway.proxy import refresh_read
from services.gateway.public_api import PUBLIC_PREFIX, PUBLIC_ROUTES, Route
from services.gateway.readcache import ReadCache


@dataclass(frozen=True)
class _RouteTemplate:
    """What the metrics middleware reads off ``scope["route"]``: the path template."""

    path: str


def _pattern(template: str) -> re.Pattern[str]:
    """``/sites/{code}/balance`` -> a regex with one named group per path parameter."""
    parts = re.split(r"{(\w+)}", template)
    return re.compile(
        "".join(f"(?P<{p}>[^/]+)" if i % 2 else re.escape(p) for i, p in enumerate(parts))
    )


def _fast_routes(routes: list[Route]) -> list[tuple[re.Pattern[str], Route, _RouteTemplate]]:
    """The cacheable GET routes whose internal path depends on their own path only."""
    out = []
    for route in routes:
        if route.method != "GET" or not route.cache:
            continue
        if set(re.findall(r"{(\w+)}", route.upstream)) - set(re.findall(r"{(\w+)}", route.path)):
            continue  # filled from the query string (/alerts/histogram): the full way
        full = PUBLIC_PREFIX + route.path
        out.append((_pattern(full), route, _RouteTemplate(full)))
    return out


class CachedReadMiddleware:
    """Pure ASGI: answers read-cache hits of cacheable routes; see the module docstring."""

    def __init__(self, app: ASGIApp, *, fastapi_app: FastAPI) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        self.routes = _fast_routes(PUBLIC_ROUTES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            response = self._hit(scope)
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _hit(self, scope: Scope) -> Any:
        cache: ReadCache = self.fastapi_app.state.read_cache
        if not cache.enabled:
            return None
        path = scope["path"]
        found = next(
            ((m, route, t) for p, route, t in self.routes if (m := p.fullmatch(path))), None
        )
        if found is None:
            return None
        match, route, template = found
        state = self.fastapi_app.state
        headers = Headers(scope=scope)
        caller = cached_caller(
            state.settings, state.auth_cache, headers.get("authorization"), headers.get("x-api-key")
        )
        if caller is None or not caller.can(route.role):
            return None
        params = match.groupdict()
        upstream_path = route.upstream.format(
            **{name: quote(value, safe="") for name, value in params.items()}
        )
        key = (caller.role, caller.scopes, route.service, upstream_path, scope["query_string"])
        entry = cache.get(key)
        if entry is None:
            return None
        scope["route"] = template  # the route label of the request metrics

        def renew() -> Coroutine[Any, Any, None]:
            site = params.get("code") or params.get("site")
            return refresh_read(Request(scope), caller, route.service, upstream_path, site, key)

        return cache.hit(key, entry, headers.get("if-none-match"), renew)
