"""Who is calling the gateway: a user's access JWT or an integration's API token.

The gateway never forwards a request it has not authenticated here. Access tokens are
checked (signature, ``alg``, expiry, audience, issuer, ``type: access``) and then the user is
looked up, so deactivation, demotion and "log out everywhere" apply within ``AUTH_CACHE_S``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from services.common.auth import ROLE_RANK, Principal, issue_token, verify_token
from services.common.db import SessionDep
from services.common.errors import Forbidden, NotAuthenticated
from services.gateway.config import GatewaySettings
from services.gateway.readcache import renewal_due
from services.gateway.security import API_TOKEN_PREFIX, digest
from services.gateway.service import find_api_token, find_user, touch_api_token

_bearer = HTTPBearer(auto_error=False, description="access JWT from /api/v1/auth/login, or spe_…")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API token spe_…")


@dataclass(frozen=True)
class Caller:
    """An authenticated caller of the public API."""

    kind: str  # "user" | "api_token"
    name: str
    role: str
    scopes: tuple[str, ...] = ()
    user_id: int | None = None
    token_id: int | None = None

    @property
    def actor(self) -> str:
        """How the caller appears in the audit log and to internal services."""
        return self.name if self.kind == "user" else f"token:{self.name}"

    def can(self, minimum: str) -> bool:
        return ROLE_RANK.get(self.role, 0) >= ROLE_RANK[minimum]


@dataclass
class _Entry:
    expires: float
    caller: Caller | None
    valid_after: float = 0.0


@dataclass
class AuthCache:
    """Per-process cache of user and API-token state, so most requests need no query.

    Concurrent lookups of one key make one query (``load``). An entry in the last quarter of
    its life is renewed by the first request that meets it, while the others go on using it:
    a busy caller's entry never expires in front of all their requests at once.
    """

    ttl_s: float
    entries: dict[str, _Entry] = field(default_factory=dict)
    minted: dict[tuple[str, str, tuple[str, ...]], tuple[float, str]] = field(default_factory=dict)
    loading: dict[str, asyncio.Future[_Entry | None]] = field(default_factory=dict)

    def get(self, key: str) -> _Entry | None:
        entry = self.entries.get(key)
        if entry is None or entry.expires < time.monotonic():
            return None
        return entry

    def due(self, key: str, entry: _Entry) -> bool:
        """Whether ``entry`` is in its last quarter and no request is renewing it yet."""
        return renewal_due(entry.expires, self.ttl_s) and key not in self.loading

    async def load(self, key: str, loader: Callable[[], _Entry]) -> _Entry:
        """``loader()`` in the thread pool, once for all the concurrent callers of ``key``."""
        pending = self.loading.get(key)
        if pending is not None:
            shared = await asyncio.shield(pending)
            if shared is not None:
                return shared
            return await run_in_threadpool(loader)  # the first one failed: on our own
        future: asyncio.Future[_Entry | None] = asyncio.get_running_loop().create_future()
        self.loading[key] = future
        entry = None
        try:
            entry = await run_in_threadpool(loader)
            return entry
        finally:
            self.loading.pop(key, None)
            future.set_result(entry)

    def put(self, key: str, caller: Caller | None, valid_after: float = 0.0) -> _Entry:
        """Store and return the entry (used as is: with AUTH_CACHE_S=0 it is already stale)."""
        if len(self.entries) > 10_000:  # bounded: stale entries of departed callers go
            self.entries.clear()
        entry = _Entry(time.monotonic() + self.ttl_s, caller, valid_after)
        self.entries[key] = entry
        return entry

    def forget_user(self, username: str) -> None:
        self.entries.pop(f"user:{username}", None)

    def forget_tokens(self) -> None:
        for key in [k for k in self.entries if k.startswith("token:")]:
            self.entries.pop(key, None)


def auth_cache(request: Request) -> AuthCache:
    return request.app.state.auth_cache  # type: ignore[no-any-return]


def client_addr(request: Request) -> str | None:
    """The peer address (uvicorn resolves X-Forwarded-For only from trusted proxies)."""
    return request.client.host if request.client else None


def _load_user(session: Session, cache: AuthCache, username: str) -> _Entry:
    """Look the user up and cache what was found (an absent or inactive user as refused)."""
    user = find_user(session, username)
    if user is None or not user.active:
        return cache.put(f"user:{username}", None)
    caller = Caller("user", user.username, user.role, (), user_id=user.id)
    return cache.put(f"user:{username}", caller, user.tokens_valid_after.timestamp())


def _load_token(session: Session, cache: AuthCache, key: str, secret: str) -> _Entry:
    """Look the API token up, record its use, and cache what was found."""
    row = find_api_token(session, secret)
    caller = None
    if (
        row is not None
        and row.revoked_at is None
        and (row.expires_at is None or row.expires_at > datetime.now(UTC))
    ):
        role = "operator" if "write" in row.scopes else "viewer"
        caller = Caller("api_token", row.name, role, tuple(row.scopes), token_id=row.id)
        touch_api_token(session, row.id)
    return cache.put(key, caller)


def _user_of(principal: Principal, entry: _Entry) -> Caller:
    """The user an access token names, as their entry says, unless refused."""
    if entry.caller is None:
        raise NotAuthenticated("this account is disabled or no longer exists")
    # iat has whole seconds: a token issued in the second of the change stays valid.
    if principal.issued_at < int(entry.valid_after):
        raise NotAuthenticated("this session has ended (password or role changed); log in again")
    return entry.caller


def _token_of(entry: _Entry) -> Caller:
    """The integration an API token's entry names, unless refused."""
    if entry.caller is None:
        raise NotAuthenticated("this API token is unknown, revoked or expired")
    return entry.caller


async def _user_caller(
    session: Session, settings: GatewaySettings, cache: AuthCache, token: str
) -> Caller:
    principal = verify_token(settings, token, allowed_types=("access",))
    key = f"user:{principal.subject}"
    entry = cache.get(key)
    if entry is None or cache.due(key, entry):
        # The entry as loaded, not read back: with AUTH_CACHE_S=0 it is already stale.
        entry = await cache.load(key, partial(_load_user, session, cache, principal.subject))
    return _user_of(principal, entry)


async def _token_caller(session: Session, cache: AuthCache, secret: str) -> Caller:
    key = f"token:{digest(secret)}"
    entry = cache.get(key)
    if entry is None or cache.due(key, entry):
        entry = await cache.load(key, partial(_load_token, session, cache, key, secret))
    return _token_of(entry)


def cached_caller(
    settings: GatewaySettings, cache: AuthCache, authorization: str | None, api_key: str | None
) -> Caller | None:
    """The caller, if what ``authenticate`` needs to accept them is all in memory already.

    None whenever it would look anything up or refuse the caller: ``authenticate`` then runs
    in full, and says why it refuses. Used to answer cache hits before routing (fastread).
    """
    try:
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                return None
            if token.startswith(API_TOKEN_PREFIX):
                entry = _current(cache, f"token:{digest(token)}")
                return _token_of(entry) if entry is not None else None
            principal = verify_token(settings, token, allowed_types=("access",))
            entry = _current(cache, f"user:{principal.subject}")
            return _user_of(principal, entry) if entry is not None else None
        if api_key and api_key.startswith(API_TOKEN_PREFIX):
            entry = _current(cache, f"token:{digest(api_key.strip())}")
            return _token_of(entry) if entry is not None else None
    except NotAuthenticated:
        return None
    return None


def _current(cache: AuthCache, key: str) -> _Entry | None:
    """The entry, unless it is missing or due for renewal (which the full way does)."""
    entry = cache.get(key)
    return None if entry is None or cache.due(key, entry) else entry


async def authenticate(
    request: Request,
    session: SessionDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Caller:
    """Dependency: the verified caller, from ``Authorization: Bearer`` or ``X-API-Key``.

    Async: a caller found in the cache costs no thread-pool hop; only a lookup goes to one.
    """
    settings: GatewaySettings = request.app.state.settings
    cache = auth_cache(request)
    if bearer is not None:
        token = bearer.credentials.strip()
        if token.startswith(API_TOKEN_PREFIX):
            return await _token_caller(session, cache, token)
        return await _user_caller(session, settings, cache, token)
    if api_key:
        if not api_key.startswith(API_TOKEN_PREFIX):
            raise NotAuthenticated("X-API-Key must carry an API token (spe_…)")
        return await _token_caller(session, cache, api_key.strip())
    raise NotAuthenticated(
        "missing credentials: send 'Authorization: Bearer <token>' or 'X-API-Key: spe_…'"
    )


CallerDep = Annotated[Caller, Depends(authenticate)]


def require(minimum: str) -> Callable[[Caller], Awaitable[Caller]]:
    """Dependency factory: the caller, if their role is at least ``minimum``."""

    # async: a plain check needs no worker thread (a sync dependency would take one).
    async def _check(caller: CallerDep) -> Caller:
        if not caller.can(minimum):
            if caller.kind == "api_token":
                raise Forbidden(
                    f"this action needs the {minimum!r} role; API token {caller.name!r} has "
                    f"scopes {list(caller.scopes)} (read: GET only, write: operator writes)"
                )
            raise Forbidden(f"this action needs the {minimum!r} role; you are {caller.role!r}")
        return caller

    return _check


ViewerDep = Annotated[Caller, Depends(require("viewer"))]
OperatorDep = Annotated[Caller, Depends(require("operator"))]
AdminDep = Annotated[Caller, Depends(require("admin"))]


def upstream_token(settings: GatewaySettings, cache: AuthCache, caller: Caller) -> str:
    """A short-lived access token for ``caller``, minted for internal services (reused a while)."""
    key = (caller.actor, caller.role, caller.scopes)
    now = time.monotonic()
    hit = cache.minted.get(key)
    if hit is not None and hit[0] - now > settings.upstream_token_s / 2:
        return hit[1]
    token = issue_token(
        settings,
        subject=caller.actor,
        role=caller.role,
        token_type="access",
        ttl_s=settings.upstream_token_s,
        scopes=caller.scopes,
    )
    if len(cache.minted) > 10_000:
        cache.minted.clear()
    cache.minted[key] = (now + settings.upstream_token_s, token)
    return token
