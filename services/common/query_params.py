"""A query parameter that takes one value, given twice, is a 422 rather than "the last wins".

Starlette keeps every value and FastAPI reads the last one for a scalar parameter, so
``?site=A&site=B`` silently filtered on B (schemathesis flagged it as schema-violating
input accepted). Only requests with a repeated name pay for the check: the parameter's
schema is looked up in the service's OpenAPI document.
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from services.common.errors import send_error
from services.common.methods import path_pattern


def _takes_many(schema: dict[str, Any]) -> bool:
    options = schema.get("anyOf", [schema])
    return any(option.get("type") == "array" for option in options)


def single_valued(app: FastAPI, method: str, path: str) -> set[str]:
    """The query parameters of the operation at ``method path`` that take one value."""
    paths = app.openapi().get("paths", {})
    item = paths.get(path)
    if item is None:
        item = next((i for t, i in paths.items() if path_pattern(t).fullmatch(path)), None)
    operation = (item or {}).get(method.lower()) or {}
    return {
        p["name"]
        for p in operation.get("parameters", [])
        if p.get("in") == "query" and not _takes_many(p.get("schema", {}))
    }


class RepeatedQueryMiddleware:
    """Pure ASGI: 422 when a single-valued query parameter appears more than once."""

    def __init__(self, app: ASGIApp, *, fastapi_app: FastAPI) -> None:
        self.app = app
        self.fastapi_app = fastapi_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("query_string"):
            query = scope["query_string"].decode("latin-1")
            counts = Counter(k for k, _ in parse_qsl(query, keep_blank_values=True))
            repeated = {k for k, n in counts.items() if n > 1}
            if repeated:
                scalar = single_valued(self.fastapi_app, scope["method"], scope["path"])
                bad = sorted(repeated & scalar)
                if bad:
                    detail = (
                        f"query parameter {bad[0]!r} is given {counts[bad[0]]} times; give it once"
                    )
                    await send_error(send, 422, "ValidationError", detail)
                    return
        await self.app(scope, receive, send)
