"""Gateway tables (schema ``auth``): users, refresh and API tokens, login throttling, audit log.

Secrets are never stored: passwords as argon2id hashes, refresh and API tokens as SHA-256
digests of high-entropy random strings (a fast hash is enough when the input cannot be guessed).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.db import schema_metadata


class Base(DeclarativeBase):
    metadata = schema_metadata("auth")


ROLES = ("viewer", "operator", "admin")
SCOPES = ("read", "write")


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class User(Base):
    """A person who logs in; deactivated rather than deleted so the audit log keeps meaning."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    # Access tokens issued before this instant are refused (password change, deactivation).
    tokens_valid_after: Mapped[datetime] = _now()
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("role IN ('viewer', 'operator', 'admin')", name="role_known"),
        CheckConstraint("username = lower(username)", name="username_lowercase"),
    )


class RefreshToken(Base):
    """One refresh token; rotation links it to its successor, all of one login share a family."""

    __tablename__ = "refresh_token"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set when rotated: presenting a rotated token again means it leaked (reuse detection).
    replaced_by_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))

    __table_args__ = (
        Index("ix_refresh_token_user_id", "user_id"),
        Index("ix_refresh_token_family_id", "family_id"),
    )


class ApiToken(Base):
    """A token an integration (SAP, Power BI) sends; the secret is shown once, kept hashed."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(16)))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("scopes <@ ARRAY['read', 'write']::varchar[]", name="scopes_known"),
    )


class LoginThrottle(Base):
    """Failed-login counter per key (``user:<name>`` or ``addr:<ip>``), shared by replicas.

    Kept apart from ``users`` so unknown usernames are throttled exactly like real ones:
    the lockout answer reveals nothing about which accounts exist.
    """

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_started_at: Mapped[datetime] = _now()
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditEntry(Base):
    """Who did what, when, from where; append-only (a trigger refuses UPDATE/DELETE/TRUNCATE)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    at: Mapped[datetime] = _now()
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(300))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    client_addr: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_actor_id", "actor", "id"),
    )


class ReportSubscription(Base):
    """A site's report e-mailed daily or weekly; the site's timezone is kept to schedule it."""

    __tablename__ = "report_subscription"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    site: Mapped[str] = mapped_column(String(32))
    site_timezone: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(8))
    frequency: Mapped[str] = mapped_column(String(8))
    email: Mapped[str] = mapped_column(String(320))
    source: Mapped[str | None] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = _now()
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    next_run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("format IN ('pdf', 'xlsx')", name="format_known"),
        CheckConstraint("frequency IN ('daily', 'weekly')", name="frequency_known"),
        Index(
            "ix_report_subscription_due",
            "next_run_at",
            postgresql_where=text("active"),
        ),
    )


class ReportDelivery(Base):
    """One period's report for one subscription, and how sending it went (retried, visible)."""

    __tablename__ = "report_delivery"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("report_subscription.id", ondelete="CASCADE")
    )
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    period_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime] = _now()
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    bytes: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _now()
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'sending', 'retrying', 'delivered', 'failed')",
            name="status_known",
        ),
        # One delivery per period: a schedule tick run twice (two replicas) adds nothing.
        Index("uq_report_delivery_period", "subscription_id", "period_start", unique=True),
        Index(
            "ix_report_delivery_due",
            "next_attempt_at",
            postgresql_where=text("status IN ('pending', 'retrying', 'sending')"),
        ),
    )
