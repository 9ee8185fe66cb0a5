"""405 answers name every method the path allows (RFC 9110), not just the first route's.

Starlette answers a 405 from the first route whose path matches, so ``OPTIONS /v1/sites``
said ``Allow: GET`` although ``POST`` is served there too. The methods are read from the
OpenAPI document (what the service promises) plus the routes left out of it.
"""

from __future__ import annotations

import re
from functools import cache

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from services.common.errors import error_body

_METHODS = ("get", "post", "put", "patch", "delete")


@cache
def path_pattern(path: str) -> re.Pattern[str]:
    """A regex matching the concrete paths of an OpenAPI path template."""
    parts = re.split(r"({[^}]+})", path)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))


def allowed_methods(app: FastAPI, path: str) -> set[str]:
    """Every method the service's OpenAPI document serves at ``path``."""
    paths = app.openapi().get("paths", {})
    # A literal path wins over a template it also fits (/v1/jobs/retrain, not /v1/jobs/{id}).
    if path in paths:
        return {m.upper() for m in paths[path] if m in _METHODS}
    methods: set[str] = set()
    for template, item in paths.items():
        if path_pattern(template).fullmatch(path):
            methods |= {m.upper() for m in item if m in _METHODS}
    return methods


def install_method_not_allowed(app: FastAPI) -> None:
    """Render 405 in the one error shape with the complete ``Allow`` header."""

    @app.exception_handler(405)
    async def _method_not_allowed(request: Request, exc: HTTPException) -> JSONResponse:
        # Routes left out of the document (/metrics) keep Starlette's own answer.
        methods = allowed_methods(app, request.url.path) or {
            m.strip() for m in (exc.headers or {}).get("Allow", "").split(",") if m.strip()
        }
        allow = ", ".join(sorted(methods))
        detail = f"{request.method} is not allowed here; use {allow}" if allow else str(exc.detail)
        return JSONResponse(
            error_body("MethodNotAllowed", detail), status_code=405, headers={"Allow": allow}
        )
