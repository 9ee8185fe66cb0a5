"""``/api/v1/auth``: login, refresh (rotating), logout, who am I.

Failed logins answer with a response instead of raising, so the session dependency commits
the failure counters and the audit entry (an exception would roll them back).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse

from services.common.auth import issue_token
from services.common.db import SessionDep
from services.common.errors import error_body
from services.common.openapi import ErrorOut
from services.gateway.authn import CallerDep, client_addr
from services.gateway.config import GatewaySettings
from services.gateway.models import User
from services.gateway.schemas import LoginIn, MeOut, RefreshIn, TokenPair
from services.gateway.security import hash_password, needs_rehash, verify_password
from services.gateway.service import (
    RefreshRefused,
    audit,
    clear_failures,
    find_user,
    issue_refresh,
    locked_for_s,
    now_utc,
    record_failure,
    revoke_refresh,
    rotate_refresh,
    throttle_keys,
)

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
_401: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "wrong credentials or unusable token"}
}
_429: dict[int | str, dict[str, Any]] = {
    429: {"model": ErrorOut, "description": "too many failed logins; see Retry-After"}
}


def _too_many(wait_s: int) -> JSONResponse:
    return JSONResponse(
        error_body(
            "TooManyRequests",
            f"too many failed logins for this account or address; retry in {wait_s} s",
        ),
        status_code=429,
        headers={"Retry-After": str(max(1, wait_s))},
    )


def _unauthenticated(detail: str) -> JSONResponse:
    return JSONResponse(
        error_body("NotAuthenticated", detail),
        status_code=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


def _pair(settings: GatewaySettings, user: User, refresh_token: str) -> TokenPair:
    ttl_s = settings.access_token_minutes * 60
    access = issue_token(
        settings, subject=user.username, role=user.role, token_type="access", ttl_s=ttl_s
    )
    return TokenPair(
        access_token=access,
        expires_in=ttl_s,
        refresh_token=refresh_token,
        refresh_expires_in=settings.refresh_token_days * 86_400,
        username=user.username,
        role=user.role,  # type: ignore[arg-type]
    )


@router.post(
    "/login",
    response_model=TokenPair,
    summary="Log in: an access JWT and a refresh token",
    responses=_401 | _429,
)
def login(body: LoginIn, request: Request, session: SessionDep) -> TokenPair | JSONResponse:
    """Check the password; lock out a username or address after repeated failures."""
    settings: GatewaySettings = request.app.state.settings
    addr = client_addr(request)
    user_key, addr_key = throttle_keys(body.username, addr)
    wait_s = locked_for_s(session, (user_key, addr_key))
    if wait_s:
        # While locked the password is not even checked: no guess can be confirmed.
        audit(
            session,
            actor=body.username,
            action="auth.login_failed",
            target=body.username,
            detail={"reason": "locked"},
            client_addr=addr,
        )
        return _too_many(wait_s)
    user = find_user(session, body.username)
    usable = user is not None and user.active
    if not verify_password(user.password_hash if usable and user else None, body.password):
        locked = record_failure(
            session, user_key, max_failures=settings.login_max_failures, settings=settings
        )
        locked |= record_failure(
            session,
            addr_key,
            max_failures=settings.login_max_failures_per_address,
            settings=settings,
        )
        audit(
            session,
            actor=body.username,
            action="auth.login_failed",
            target=body.username,
            detail={"reason": "bad credentials", "locked": locked},
            client_addr=addr,
        )
        if locked:
            return _too_many(settings.login_lockout_s)
        return _unauthenticated("wrong username or password")
    assert user is not None
    clear_failures(session, user_key)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(body.password)
    user.last_login_at = now_utc()
    refresh_token, _ = issue_refresh(session, user, settings)
    audit(session, actor=user.username, action="auth.login", target=user.username, client_addr=addr)
    return _pair(settings, user, refresh_token)


@router.post(
    "/refresh",
    response_model=TokenPair,
    summary="Exchange a refresh token for a new pair (the old refresh token stops working)",
    responses=_401,
)
def refresh(body: RefreshIn, request: Request, session: SessionDep) -> TokenPair | JSONResponse:
    """Rotate the refresh token; reusing a rotated one revokes the whole session."""
    settings: GatewaySettings = request.app.state.settings
    try:
        user, refresh_token = rotate_refresh(session, body.refresh_token, settings)
    except RefreshRefused as exc:
        if exc.user is not None:
            audit(
                session,
                actor=exc.user.username,
                action="auth.refresh_refused",
                target=exc.user.username,
                detail={"reason": exc.reason},
                client_addr=client_addr(request),
            )
        return _unauthenticated(exc.reason)
    return _pair(settings, user, refresh_token)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Log out: revoke the refresh token",
    response_class=Response,
)
def logout(body: RefreshIn, request: Request, session: SessionDep) -> Response:
    """Revoke the refresh token (idempotent; an unknown token is not an error)."""
    user = revoke_refresh(session, body.refresh_token)
    if user is not None:
        audit(
            session,
            actor=user.username,
            action="auth.logout",
            target=user.username,
            client_addr=client_addr(request),
        )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", response_model=MeOut, summary="Who am I", responses=_401)
def me(caller: CallerDep) -> MeOut:
    """The authenticated caller: a user or an API token, with role and scopes."""
    return MeOut(kind=caller.kind, name=caller.name, role=caller.role, scopes=list(caller.scopes))  # type: ignore[arg-type]
