"""Alerts tables (schema ``alerts``): rules and overrides, incidents, audit, outbox, silences.

Sites are referred to by their code (text): the sites live in ingest's schema, which this
service reads only through ingest's HTTP API, so there is no foreign key across schemas.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    Time,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.db import schema_metadata


class Base(DeclarativeBase):
    metadata = schema_metadata("alerts")


RULE_KINDS = ("deficit", "threshold", "forecast_deficit", "anomaly", "equipment_risk")
SEVERITIES = ("critical", "warning")
INCIDENT_STATUSES = ("open", "acknowledged", "resolved")
CHANNELS = ("log", "webhook", "email")
NOTIFICATION_STATUSES = ("pending", "queued", "silenced", "skipped")
DELIVERY_STATUSES = ("pending", "retrying", "delivered", "failed")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Rule(Base):
    """A rule for all sites (``sites`` NULL) or a group of sites; per-site overrides refine it."""

    __tablename__ = "rule"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    sites: Mapped[list[str] | None] = mapped_column(ARRAY(String(32)))
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    pending_s: Mapped[int] = mapped_column(Integer, server_default="0")
    recovery_s: Mapped[int] = mapped_column(Integer, server_default="3600")
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    description: Mapped[str] = mapped_column(Text, server_default="")
    created_by: Mapped[str] = mapped_column(String(200), server_default="system")
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()

    __table_args__ = (
        CheckConstraint(_in("kind", RULE_KINDS), name="kind_known"),
        CheckConstraint(_in("severity", SEVERITIES), name="severity_known"),
        CheckConstraint("pending_s >= 0 AND recovery_s >= 0", name="durations_non_negative"),
    )


class RuleOverride(Base):
    """What one site changes in a rule; NULL columns keep the rule's value."""

    __tablename__ = "rule_override"

    rule_id: Mapped[int] = mapped_column(
        ForeignKey("rule.id", ondelete="CASCADE"), primary_key=True
    )
    site: Mapped[str] = mapped_column(String(32), primary_key=True)
    enabled: Mapped[bool | None] = mapped_column(Boolean)
    severity: Mapped[str | None] = mapped_column(String(16))
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    pending_s: Mapped[int | None] = mapped_column(Integer)
    recovery_s: Mapped[int | None] = mapped_column(Integer)
    updated_by: Mapped[str] = mapped_column(String(200), server_default="system")
    updated_at: Mapped[datetime] = _now()

    __table_args__ = (
        CheckConstraint(
            f"severity IS NULL OR {_in('severity', SEVERITIES)}", name="severity_known"
        ),
    )


class Incident(Base):
    """One ongoing condition of one rule at one site (deduplicated on rule, site, condition)."""

    __tablename__ = "incident"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("rule.id"))
    site: Mapped[str] = mapped_column(String(32))
    condition_key: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), server_default="open")
    title: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    peak_value: Mapped[float] = mapped_column(Double)
    peak_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    threshold: Mapped[float | None] = mapped_column(Double)
    unit: Mapped[str] = mapped_column(String(16), server_default="kWh")
    assignee: Mapped[str | None] = mapped_column(String(200))
    acknowledged_by: Mapped[str | None] = mapped_column(String(200))
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ack_comment: Mapped[str | None] = mapped_column(Text)
    resolved_by: Mapped[str | None] = mapped_column(String(200))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolve_comment: Mapped[str | None] = mapped_column(Text)
    feedback: Mapped[bool | None] = mapped_column(Boolean)  # true positive?
    feedback_comment: Mapped[str | None] = mapped_column(Text)
    feedback_by: Mapped[str | None] = mapped_column(String(200))
    feedback_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()

    __table_args__ = (
        CheckConstraint(_in("status", INCIDENT_STATUSES), name="status_known"),
        CheckConstraint(_in("severity", SEVERITIES), name="severity_known"),
        CheckConstraint("last_seen_at >= first_seen_at", name="seen_ordered"),
        # One active incident per condition: the database enforces the deduplication too.
        Index(
            "uq_incident_active_condition",
            "rule_id",
            "site",
            "condition_key",
            unique=True,
            postgresql_where=text("status <> 'resolved'"),
        ),
        Index("ix_incident_condition", "rule_id", "site", "condition_key", "first_seen_at"),
        Index("ix_incident_site_id", "site", "id"),
        Index("ix_incident_status_id", "status", "id"),
    )


class AuditEntry(Base):
    """Who did what and when; rows are only ever inserted (a trigger refuses the rest)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    at: Mapped[datetime] = _now()
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))

    __table_args__ = (Index("ix_audit_log_entity", "entity", "entity_id", "id"),)


class Silence(Base):
    """A window where notifications are suppressed: one-off, or recurring on local weekdays."""

    __tablename__ = "silence"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    site: Mapped[str | None] = mapped_column(String(32))
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("rule.id", ondelete="CASCADE"))
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    weekdays: Mapped[list[int] | None] = mapped_column(ARRAY(SmallInteger))
    start_time: Mapped[time | None] = mapped_column(Time)
    end_time: Mapped[time | None] = mapped_column(Time)
    timezone: Mapped[str] = mapped_column(String(64), server_default="UTC")
    comment: Mapped[str] = mapped_column(Text, server_default="")
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = _now()
    expired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("ends_at IS NULL OR ends_at > starts_at", name="ends_after_start"),
        CheckConstraint(
            "(weekdays IS NULL) = (start_time IS NULL) AND (weekdays IS NULL) = (end_time IS NULL)",
            name="recurrence_complete",
        ),
    )


class Delivery(Base):
    """One message to one channel (one or several grouped notifications) and its retries."""

    __tablename__ = "delivery"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = _now()
    last_error: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    n_notifications: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = _now()
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(_in("status", DELIVERY_STATUSES), name="status_known"),
        CheckConstraint(_in("channel", CHANNELS), name="channel_known"),
        Index(
            "ix_delivery_due",
            "next_attempt_at",
            postgresql_where=text("status IN ('pending', 'retrying')"),
        ),
    )


class Notification(Base):
    """Outbox row: an incident event to tell one channel, written with the incident change."""

    __tablename__ = "notification"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id"))
    event: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    reason: Mapped[str | None] = mapped_column(Text)
    silence_id: Mapped[int | None] = mapped_column(ForeignKey("silence.id", ondelete="SET NULL"))
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("delivery.id"))
    created_at: Mapped[datetime] = _now()

    __table_args__ = (
        CheckConstraint(_in("status", NOTIFICATION_STATUSES), name="status_known"),
        CheckConstraint("event IN ('opened', 'resolved')", name="event_known"),
        Index(
            "ix_notification_pending",
            "channel",
            "created_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_notification_incident_id", "incident_id"),
        Index("ix_notification_delivery_id", "delivery_id"),
    )


class RuleStatus(Base):
    """The outcome of a rule's last evaluation at a site (ok, firing, skipped and why)."""

    __tablename__ = "rule_status"

    rule_id: Mapped[int] = mapped_column(
        ForeignKey("rule.id", ondelete="CASCADE"), primary_key=True
    )
    site: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, server_default="")
    evaluated_at: Mapped[datetime] = _now()
