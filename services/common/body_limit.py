"""A size limit on every request body, checked before and while it is read.

A declared ``Content-Length`` over the limit is refused at once; a body streamed without one
(chunked) is counted as it arrives and refused as soon as it passes the limit, so no route
ever holds more than the limit in memory or on disk. File imports (paths ending in
``/import``) have their own, larger limit. Both answer 413 in the one error shape.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.errors import send_error

UPLOAD_SUFFIX = "/import"
# How much of a refused body is still read (and dropped) so the client gets the 413.
DRAIN_BYTES = 32 * 2**20


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once the body passes the limit; rendered as a 413."""

    def __init__(self, detail: str) -> None:
        super().__init__(status_code=413, detail=detail)


def limit_message(limit_bytes: int, setting: str) -> str:
    return (
        f"the request body is over the limit of {limit_bytes / 2**20:g} MB ({setting}); "
        "send less (split a batch, or a file into several)"
    )


class BodyLimitMiddleware:
    """Pure ASGI: 413 past ``max_bytes`` (``upload_bytes`` on import routes)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        upload_bytes: int | None = None,
        upload_setting: str = "MAX_BODY_MB",
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes
        self.upload_setting = upload_setting

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self.max_bytes, "MAX_BODY_MB"
        if self.upload_bytes is not None and scope["path"].rstrip("/").endswith(UPLOAD_SUFFIX):
            limit, setting = self.upload_bytes, self.upload_setting
        message = limit_message(limit, setting)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            if declared <= limit + DRAIN_BYTES:
                await _drain(receive, limit + DRAIN_BYTES)
            await _refuse(send, message)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            event = await receive()
            if event["type"] == "http.request":
                seen += len(event.get("body", b""))
                if seen > limit:
                    if event.get("more_body", False):
                        await _drain(receive, DRAIN_BYTES)
                    raise BodyTooLarge(message)
            return event

        await self.app(scope, limited_receive, send)


async def _drain(receive: Receive, max_bytes: int) -> None:
    """Read and drop the rest of a refused body, up to ``max_bytes``.

    A server that answers and closes while the client is still sending makes the client's
    TCP stack reset the connection, and the client sees "connection reset" instead of the 413.
    A body far past the limit is not read to its end: that client gets the reset.
    """
    read = 0
    while read <= max_bytes:
        event = await receive()
        if event["type"] != "http.request":
            return
        read += len(event.get("body", b""))
        if not event.get("more_body", False):
            return


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


async def _refuse(send: Send, detail: str) -> None:
    await send_error(send, 413, "PayloadTooLarge", detail, close=True)
