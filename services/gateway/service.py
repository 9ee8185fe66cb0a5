"""Gateway domain logic on a Session: users, login throttling, refresh and API tokens, audit.

Plain functions with no FastAPI import; the session dependency commits what they add.
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.common.errors import Conflict, NotFound
from services.gateway.config import GatewaySettings
from services.gateway.models import ApiToken, AuditEntry, RefreshToken, User
from services.gateway.schemas import ApiTokenIn, UserIn, UserPatch
from services.gateway.security import (
    API_TOKEN_PREFIX,
    DISPLAY_PREFIX_CHARS,
    REFRESH_TOKEN_PREFIX,
    digest,
    hash_password,
    new_secret,
)

log = logging.getLogger("spe.gateway")


class UserNotFound(NotFound):
    pass


class ApiTokenNotFound(NotFound):
    pass


class LastAdmin(Conflict):
    pass


def now_utc() -> datetime:
    return datetime.now(UTC)


# --- audit --------------------------------------------------------------------------------


def audit(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
    client_addr: str | None = None,
) -> None:
    """Append an audit entry; it is stored with the request's transaction."""
    session.add(
        AuditEntry(
            actor=actor[:200],
            action=action,
            target=target[:300] if target else None,
            detail=detail or {},
            client_addr=client_addr,
        )
    )


def audit_page(
    session: Session, *, limit: int, before_id: int | None, actor: str | None, action: str | None
) -> list[AuditEntry]:
    """Newest first, keyset-paginated by id."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    if actor is not None:
        query = query.where(AuditEntry.actor == actor)
    if action is not None:
        query = query.where(AuditEntry.action == action)
    return list(session.scalars(query))


# --- users --------------------------------------------------------------------------------


def find_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username.strip().lower()))


def get_user(session: Session, username: str) -> User:
    """The user, or UserNotFound (404)."""
    user = find_user(session, username)
    if user is None:
        raise UserNotFound(f"no user named {username!r}")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def create_user(session: Session, body: UserIn) -> User:
    """Insert a user with an argon2id hash of the password; Conflict if the name is taken."""
    user = User(
        username=body.username,
        password_hash=hash_password(body.password),
        role=body.role,
        active=body.active,
    )
    session.add(user)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(f"a user named {body.username!r} already exists") from None
    return user


def _active_admins(session: Session) -> int:
    return (
        session.scalar(
            select(func.count()).select_from(User).where(User.role == "admin", User.active)
        )
        or 0
    )


def update_user(session: Session, user: User, patch: UserPatch) -> dict[str, Any]:
    """Apply a change; returns what changed (no secrets) for the audit log.

    Changing the password, demoting or deactivating ends the user's sessions: refresh tokens
    are revoked and access tokens issued before now are refused.
    """
    changes = patch.model_dump(exclude_unset=True, exclude_none=True)
    losing_admin = (
        user.role == "admin"
        and user.active
        and (changes.get("role", "admin") != "admin" or changes.get("active", True) is False)
    )
    if losing_admin and _active_admins(session) <= 1:
        raise LastAdmin("this is the last active admin; promote another user first")
    changed: dict[str, Any] = {}
    if "password" in changes:
        user.password_hash = hash_password(changes["password"])
        changed["password"] = "changed"
    for key in ("role", "active"):
        if key in changes and getattr(user, key) != changes[key]:
            changed[key] = {"from": getattr(user, key), "to": changes[key]}
            setattr(user, key, changes[key])
    if changed:
        user.updated_at = now_utc()
        if set(changed) & {"password", "role", "active"}:
            end_sessions(session, user)
    session.flush()
    return changed


def end_sessions(session: Session, user: User) -> None:
    """Revoke every refresh token of ``user`` and refuse access tokens issued before now."""
    now = now_utc()
    user.tokens_valid_after = now
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def ensure_first_admin(session: Session, settings: GatewaySettings) -> str | None:
    """Create the admin from settings when no user exists; returns its name if created."""
    if not settings.admin_password or session.scalar(select(User.id).limit(1)) is not None:
        return None
    # ON CONFLICT: two replicas starting together on an empty database both try this.
    created = session.execute(
        text(
            "INSERT INTO auth.users (username, password_hash, role) VALUES (:u, :h, 'admin') "
            "ON CONFLICT (username) DO NOTHING RETURNING id"
        ),
        {"u": settings.admin_username.strip().lower(), "h": hash_password(settings.admin_password)},
    ).scalar()
    if created is None:
        return None
    audit(
        session,
        actor="system",
        action="user.create",
        target=settings.admin_username,
        detail={"role": "admin", "reason": "first start: no user existed"},
    )
    return settings.admin_username


# --- login throttling ---------------------------------------------------------------------

# clock_timestamp(), not now(): now() is frozen at the start of a transaction.
_RECORD_FAILURE = text(
    """
    INSERT INTO auth.login_throttle (key, failures, window_started_at)
    VALUES (:key, 1, clock_timestamp())
    ON CONFLICT (key) DO UPDATE SET
        failures = CASE WHEN login_throttle.window_started_at
                             < clock_timestamp() - make_interval(secs => :window)
                        THEN 1 ELSE login_throttle.failures + 1 END,
        window_started_at = CASE WHEN login_throttle.window_started_at
                                      < clock_timestamp() - make_interval(secs => :window)
                                 THEN clock_timestamp() ELSE login_throttle.window_started_at END
    RETURNING failures
    """
)
# Locking restarts the count: after the lockout the caller gets a fresh allowance.
_LOCK = text(
    """
    UPDATE auth.login_throttle
    SET failures = 0, window_started_at = clock_timestamp(),
        locked_until = clock_timestamp() + make_interval(secs => :lockout)
    WHERE key = :key
    """
)
_LOCKED_FOR = text(
    """
    SELECT EXTRACT(EPOCH FROM max(locked_until) - clock_timestamp())
    FROM auth.login_throttle WHERE key = ANY(:keys) AND locked_until > clock_timestamp()
    """
)


def throttle_keys(username: str, client_addr: str | None) -> tuple[str, str]:
    return f"user:{username}", f"addr:{client_addr or 'unknown'}"


def locked_for_s(session: Session, keys: tuple[str, ...]) -> int:
    """Seconds until every key is unlocked (0: none is locked)."""
    remaining = session.execute(_LOCKED_FOR, {"keys": list(keys)}).scalar()
    return math.ceil(float(remaining)) if remaining is not None else 0


def record_failure(
    session: Session, key: str, *, max_failures: int, settings: GatewaySettings
) -> bool:
    """Count one failed login for ``key``; True when this failure locks it."""
    failures = session.execute(
        _RECORD_FAILURE, {"key": key, "window": settings.login_window_s}
    ).scalar_one()
    if failures >= max_failures:
        session.execute(_LOCK, {"key": key, "lockout": settings.login_lockout_s})
        return True
    return False


def clear_failures(session: Session, key: str) -> None:
    session.execute(text("DELETE FROM auth.login_throttle WHERE key = :key"), {"key": key})


# --- refresh tokens -----------------------------------------------------------------------


class RefreshRefused(Exception):
    """The refresh token cannot be used; ``user`` is set when it belonged to someone."""

    def __init__(self, reason: str, user: User | None = None) -> None:
        super().__init__(reason)
        self.reason, self.user = reason, user


def issue_refresh(
    session: Session, user: User, settings: GatewaySettings, family_id: uuid.UUID | None = None
) -> tuple[str, RefreshToken]:
    """A new refresh token for ``user`` (the secret, and its stored row)."""
    secret = new_secret(REFRESH_TOKEN_PREFIX)
    row = RefreshToken(
        id=uuid.uuid4(),
        user_id=user.id,
        token_hash=digest(secret),
        family_id=family_id or uuid.uuid4(),
        expires_at=now_utc() + timedelta(days=settings.refresh_token_days),
    )
    session.add(row)
    session.flush()
    return secret, row


def rotate_refresh(session: Session, secret: str, settings: GatewaySettings) -> tuple[User, str]:
    """Exchange a refresh token for a new one (the old one is revoked).

    A token that was already rotated being presented again means a copy leaked: the whole
    family (every token descended from that login) is revoked, ending the thief's session too.
    """
    row = session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == digest(secret)).with_for_update()
    )
    if row is None:
        raise RefreshRefused("unknown refresh token")
    user = session.get(User, row.user_id)
    now = now_utc()
    if row.revoked_at is not None:
        if row.replaced_by_id is not None:
            session.execute(
                update(RefreshToken)
                .where(RefreshToken.family_id == row.family_id, RefreshToken.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            raise RefreshRefused("refresh token reused after rotation; session revoked", user)
        raise RefreshRefused("refresh token revoked", user)
    if row.expires_at <= now:
        raise RefreshRefused("refresh token expired", user)
    if user is None or not user.active:
        raise RefreshRefused("account disabled", user)
    new_secret_, new_row = issue_refresh(session, user, settings, family_id=row.family_id)
    row.revoked_at, row.replaced_by_id = now, new_row.id
    return user, new_secret_


def revoke_refresh(session: Session, secret: str) -> User | None:
    """Revoke a refresh token (logout); returns its user, None if unknown."""
    row = session.scalar(select(RefreshToken).where(RefreshToken.token_hash == digest(secret)))
    if row is None:
        return None
    if row.revoked_at is None:
        row.revoked_at = now_utc()
    return session.get(User, row.user_id)


# --- API tokens ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiTokenView:
    """An API token as listed (never with its secret)."""

    row: ApiToken
    created_by: str | None


def create_api_token(
    session: Session, body: ApiTokenIn, creator: User | None
) -> tuple[ApiToken, str]:
    """A new API token; returns the row and the secret (the only time it exists in clear)."""
    secret = new_secret(API_TOKEN_PREFIX)
    row = ApiToken(
        name=body.name,
        prefix=secret[:DISPLAY_PREFIX_CHARS],
        token_hash=digest(secret),
        scopes=list(body.scopes),
        created_by_id=creator.id if creator else None,
        expires_at=body.expires_at,
    )
    session.add(row)
    session.flush()
    return row, secret


def list_api_tokens(session: Session) -> list[ApiTokenView]:
    rows = session.execute(
        select(ApiToken, User.username)
        .outerjoin(User, ApiToken.created_by_id == User.id)
        .order_by(ApiToken.id)
    )
    return [ApiTokenView(row, name) for row, name in rows]


def get_api_token(session: Session, token_id: int) -> ApiToken:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise ApiTokenNotFound(f"no API token with id {token_id}")
    return row


def find_api_token(session: Session, secret: str) -> ApiToken | None:
    return session.scalar(select(ApiToken).where(ApiToken.token_hash == digest(secret)))


def touch_api_token(session: Session, token_id: int, every_s: int = 60) -> None:
    """Record use, at most once per ``every_s`` per token (an UPDATE per request would not)."""
    session.execute(
        text(
            "UPDATE auth.api_token SET last_used_at = clock_timestamp() WHERE id = :id AND "
            "(last_used_at IS NULL OR last_used_at < clock_timestamp() - make_interval(secs => :s))"
        ),
        {"id": token_id, "s": every_s},
    )
