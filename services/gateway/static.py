"""The built web UI (frontend/, ``npm run build``), served by the gateway with an SPA fallback.

The UI is the router's *fallback*, not a route: every API route, ``/docs``, the probes and
``/metrics`` match first whatever order routers are added in, and only a GET/HEAD that no
route takes gets a file or ``index.html``. Unknown ``/api/...`` paths keep the JSON 404.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from services.common.errors import error_body
from services.gateway.config import GatewaySettings

log = logging.getLogger("spe.gateway.static")
DEFAULT_DIR = Path(__file__).resolve().parent / "static"
# Vite names every asset under assets/ by its content hash: a changed file has a new name.
IMMUTABLE = "public, max-age=31536000, immutable"
# index.html names the current hashes: always revalidated, so a deploy is seen at once.
NO_CACHE = "no-cache"
# Paths that belong to the API (or to the service) and must never turn into the UI.
_NOT_UI = ("/api/", "/api", "/docs", "/redoc", "/openapi.json", "/metrics", "/health", "/ready")


def static_dir(settings: GatewaySettings) -> Path:
    """Where the built UI lives: GATEWAY_STATIC_DIR, else services/gateway/static."""
    return (
        Path(settings.gateway_static_dir).resolve() if settings.gateway_static_dir else DEFAULT_DIR
    )


class SpaFallback:
    """ASGI app run when no route matched: a built file, index.html, or the usual 404."""

    def __init__(self, root: Path, not_found: ASGIApp) -> None:
        self.root = root
        self.not_found = not_found

    def _file(self, path: str) -> Path | None:
        # resolve() then a containment check: no "..", symlink or encoded trick leaves root.
        candidate = (self.root / path.lstrip("/")).resolve()
        if candidate != self.root and self.root not in candidate.parents:
            return None
        return candidate if candidate.is_file() else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "/")
        is_api = path == "/api" or path.startswith(_NOT_UI)
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") or is_api:
            await self.not_found(scope, receive, send)
            return
        response: Response
        found = self._file(path) if path != "/" else None
        if found is not None and found.name != "index.html":
            cache = IMMUTABLE if found.parent.name == "assets" else NO_CACHE
            response = FileResponse(found, headers={"Cache-Control": cache})
        elif path.startswith("/assets/") or (found is None and _looks_like_file(path)):
            # A missing asset is a 404, not the page: a stale tab must not parse HTML as JS.
            await self.not_found(scope, receive, send)
            return
        elif (index := self.root / "index.html").is_file():
            response = FileResponse(index, headers={"Cache-Control": NO_CACHE})
        else:
            response = JSONResponse(
                error_body(
                    "NotFound",
                    "the web UI is not built; run `make run` (or `npm ci && npm run build` in "
                    f"frontend/), or set GATEWAY_STATIC_DIR (looked in {self.root})",
                ),
                status_code=404,
                headers={"Cache-Control": NO_CACHE},
            )
        await response(scope, receive, send)


def _looks_like_file(path: str) -> bool:
    last = path.rsplit("/", 1)[-1]
    return "." in last and not last.startswith(".")


def mount_ui(app: FastAPI, settings: GatewaySettings) -> None:
    """Serve the built UI from the router's fallback (after every route, whatever the order)."""
    root = static_dir(settings)
    if not (root / "index.html").is_file():
        log.warning("web UI not built: %s/index.html missing; API only", root)
    app.router.default = SpaFallback(root, app.router.default)
