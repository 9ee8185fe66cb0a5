"""One error shape for every service: ``{"error": "SiteNotFound", "detail": "..."}``."""

from __future__ import annotations

import json
import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from services.common.db import is_database_unavailable

log = logging.getLogger("spe.errors")

_HTTP_ERROR_NAMES = {
    400: "BadRequest",
    401: "NotAuthenticated",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    422: "ValidationError",
    429: "TooManyRequests",
    503: "ServiceUnavailable",
}


class AppError(Exception):
    """Base of every error a service raises on purpose; rendered with its class name."""

    status_code: int = 400
    headers: dict[str, str] | None = None

    def __init__(self, detail: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}


class NotFound(AppError):
    status_code = 404


class Conflict(AppError):
    status_code = 409


class BadInput(AppError):
    status_code = 422


class PayloadTooLarge(AppError):
    status_code = 413


class UnsupportedMediaType(AppError):
    status_code = 415


class NotAuthenticated(AppError):
    status_code = 401
    headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(AppError):
    status_code = 403


class ServiceUnavailable(AppError):
    status_code = 503

    def __init__(self, detail: str, *, retry_after_s: int = 5) -> None:
        super().__init__(detail)
        self.headers = {"Retry-After": str(retry_after_s)}


def error_body(error: str, detail: str, **extra: Any) -> dict[str, Any]:
    """The JSON body every error response carries."""
    return {"error": error, "detail": detail, **extra}


async def send_error(
    send: Send, status: int, error: str, detail: str, *, close: bool = False
) -> None:
    """Answer from an ASGI middleware, before any route runs, in the one error shape.

    ``close``: also ask the client to close the connection (its body was not read)."""
    body = json.dumps(error_body(error, detail)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]


def install_error_handlers(app: FastAPI) -> None:
    """Render AppError, HTTP errors, validation errors and crashes in the one shape."""

    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        body = error_body(type(exc).__name__, exc.detail, **jsonable_encoder(exc.extra))
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        name = _HTTP_ERROR_NAMES.get(exc.status_code, "HTTPError")
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse(
            error_body(name, detail), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc)
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return JSONResponse(
            error_body("ValidationError", f"{where}: {first['msg']}", errors=errors),
            status_code=422,
        )

    async def _database_error(request: Request, exc: Exception) -> JSONResponse:
        # The database going away (restart, failover, network) is not the caller's fault nor
        # a bug: 503 with Retry-After, so clients resend (writes are idempotent).
        if not is_database_unavailable(exc):
            return _internal_error(request)
        retry_after_s = getattr(getattr(request.app.state, "settings", None), "db_retry_after_s", 2)
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        log.warning(
            "database unavailable on %s %s: %s",
            request.method, request.url.path, reason[0] if reason else type(exc).__name__,
        )  # fmt: skip
        return JSONResponse(
            error_body(
                "ServiceUnavailable",
                f"the database is not answering; retry in {retry_after_s} s "
                "(re-sending a write is safe)",
            ),
            status_code=503,
            headers={"Retry-After": str(retry_after_s)},
        )

    for db_error in (
        sa_exc.OperationalError,
        sa_exc.TimeoutError,
        sa_exc.DisconnectionError,
        psycopg.OperationalError,
    ):
        app.add_exception_handler(db_error, _database_error)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        return _internal_error(request)


def _internal_error(request: Request) -> JSONResponse:
    """A logged 500 with no stack trace for the client (called inside an ``except``)."""
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(
        error_body("InternalError", "an unexpected error occurred; it has been logged"),
        status_code=500,
    )
