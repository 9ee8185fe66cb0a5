"""Text PostgreSQL cannot store is a 422 naming where it was, never a 500.

PostgreSQL text cannot hold a NUL character (U+0000): psycopg refuses it when binding, and
that surfaced as a 500 from every filter, path parameter and JSON field that reaches a query.
NULs in the path or query string are refused before routing, with the place named; anything
else the database refuses as data (SQLSTATE class 22: a NUL in a body, a value out of range)
is the caller's input too, answered 422 with the database's one-line reason.
"""

from __future__ import annotations

import logging
from urllib.parse import unquote_to_bytes

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.types import ASGIApp, Receive, Scope, Send

from services.common.errors import error_body, send_error

log = logging.getLogger("spe.inputs")


class RefuseNulMiddleware:
    """Pure ASGI: 422 for a NUL character in the path or the query string."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            where = None
            if "\x00" in scope["path"]:
                where = "the path"
            elif b"\x00" in unquote_to_bytes(scope.get("query_string", b"")):
                where = "the query string"
            if where is not None:
                detail = f"{where} contains a NUL character (%00), which no SP-E value may hold"
                await send_error(send, 422, "BadInput", detail)
                return
        await self.app(scope, receive, send)


def install_data_error_handler(app: FastAPI) -> None:
    """Render what PostgreSQL refuses as data (class 22) as a 422 in the one error shape."""

    async def _data_error(request: Request, exc: Exception) -> JSONResponse:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        log.info("database refused a value on %s %s: %s", request.method, request.url.path, reason)
        return JSONResponse(
            error_body("BadInput", f"a value was refused by the database: {reason}"),
            status_code=422,
        )

    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(psycopg.DataError, _data_error)
    app.add_middleware(RefuseNulMiddleware)
