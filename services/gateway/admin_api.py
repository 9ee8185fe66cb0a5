"""Admin API: users, API tokens and the audit log (admin role only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status
from sqlalchemy import select

from services.common.db import SessionDep
from services.common.openapi import ErrorOut
from services.gateway.authn import AdminDep, auth_cache, client_addr
from services.gateway.models import AuditEntry, User
from services.gateway.schemas import (
    ApiTokenCreated,
    ApiTokenIn,
    ApiTokenOut,
    AuditOut,
    UserIn,
    UserOut,
    UserPatch,
)
from services.gateway.service import (
    ApiTokenView,
    audit,
    audit_page,
    create_api_token,
    create_user,
    end_sessions,
    get_api_token,
    get_user,
    list_api_tokens,
    list_users,
    now_utc,
    update_user,
)

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "not authenticated"},
    403: {"model": ErrorOut, "description": "not an admin"},
}
router = APIRouter(prefix="/api/v1", tags=["admin"], responses=_ERRORS)
UsernamePath = Annotated[str, Path(max_length=64)]


@router.get("/users", response_model=list[UserOut], summary="List users")
def users_list(session: SessionDep, _: AdminDep) -> list[User]:
    return list_users(session)


@router.post(
    "/users",
    response_model=UserOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a user",
    responses={409: {"model": ErrorOut, "description": "a user has that name"}},
)
def users_create(body: UserIn, request: Request, session: SessionDep, caller: AdminDep) -> User:
    """Create a user (the password is stored as an argon2id hash)."""
    user = create_user(session, body)
    audit(
        session,
        actor=caller.actor,
        action="user.create",
        target=user.username,
        detail={"role": user.role, "active": user.active},
        client_addr=client_addr(request),
    )
    return user


@router.get("/users/{username}", response_model=UserOut, summary="One user")
def users_read(username: UsernamePath, session: SessionDep, _: AdminDep) -> User:
    return get_user(session, username)


@router.patch("/users/{username}", response_model=UserOut, summary="Change role, password, active")
def users_update(
    username: UsernamePath, body: UserPatch, request: Request, session: SessionDep, caller: AdminDep
) -> User:
    """Change a user; a new password, role or deactivation ends the user's sessions."""
    user = get_user(session, username)
    changed = update_user(session, user, body)
    if changed:
        auth_cache(request).forget_user(user.username)
        audit(
            session,
            actor=caller.actor,
            action="user.update",
            target=user.username,
            detail=changed,
            client_addr=client_addr(request),
        )
    return user


@router.delete(
    "/users/{username}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Deactivate a user (kept, so the audit log still names them)",
)
def users_deactivate(
    username: UsernamePath, request: Request, session: SessionDep, caller: AdminDep
) -> Response:
    user = get_user(session, username)
    changed = update_user(session, user, UserPatch(active=False))
    end_sessions(session, user)
    auth_cache(request).forget_user(user.username)
    if changed:
        audit(
            session,
            actor=caller.actor,
            action="user.deactivate",
            target=user.username,
            client_addr=client_addr(request),
        )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _token_out(view: ApiTokenView) -> ApiTokenOut:
    row = view.row
    return ApiTokenOut(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        scopes=list(row.scopes),
        created_by=view.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


@router.post(
    "/tokens",
    response_model=ApiTokenCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Create an API token (the secret is in this response only)",
)
def tokens_create(
    body: ApiTokenIn, request: Request, session: SessionDep, caller: AdminDep
) -> ApiTokenCreated:
    """Create a scoped API token for an integration; store the returned ``token`` now."""
    creator = session.get(User, caller.user_id) if caller.user_id else None
    row, secret = create_api_token(session, body, creator)
    audit(
        session,
        actor=caller.actor,
        action="token.create",
        target=f"token:{row.id}",
        detail={"name": row.name, "scopes": list(row.scopes), "prefix": row.prefix},
        client_addr=client_addr(request),
    )
    session.refresh(row)
    out = _token_out(ApiTokenView(row, creator.username if creator else None))
    return ApiTokenCreated(**out.model_dump(), token=secret)


@router.get("/tokens", response_model=list[ApiTokenOut], summary="List API tokens (no secrets)")
def tokens_list(session: SessionDep, _: AdminDep) -> list[ApiTokenOut]:
    return [_token_out(view) for view in list_api_tokens(session)]


@router.delete("/tokens/{token_id}", response_model=ApiTokenOut, summary="Revoke an API token")
def tokens_revoke(
    token_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    request: Request,
    session: SessionDep,
    caller: AdminDep,
) -> ApiTokenOut:
    """Revoke at once on this replica, within AUTH_CACHE_S on the others (idempotent)."""
    row = get_api_token(session, token_id)
    if row.revoked_at is None:
        row.revoked_at = now_utc()
        audit(
            session,
            actor=caller.actor,
            action="token.revoke",
            target=f"token:{row.id}",
            detail={"name": row.name},
            client_addr=client_addr(request),
        )
        session.flush()
    auth_cache(request).forget_tokens()
    creator = session.scalar(select(User.username).where(User.id == row.created_by_id))
    return _token_out(ApiTokenView(row, creator))


@router.get(
    "/audit",
    response_model=list[AuditOut],
    summary="Audit log, newest first (keyset pagination with before_id)",
)
def audit_list(
    session: SessionDep,
    _: AdminDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="the last id of the previous page")
    ] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
) -> list[AuditEntry]:
    return audit_page(session, limit=limit, before_id=before_id, actor=actor, action=action)
