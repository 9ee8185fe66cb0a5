"""Ingest tables (schema ``ingest``): sites, readings, equipment, telemetry, weather, quarantine.

Time-series tables are keyed (entity, ts, source): the primary key is the range-scan index
and the idempotency key at once, and contains the time column so the tables can become
TimescaleDB hypertables unchanged.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.db import schema_metadata


class Base(DeclarativeBase):
    metadata = schema_metadata("ingest")


SOURCES = ("real", "simulated", "import")
_SOURCE_CHECK = "source IN ('real', 'simulated', 'import')"


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Site(Base):
    __tablename__ = "site"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    country_code: Mapped[str | None] = mapped_column(String(2))
    capacity_kw: Mapped[float] = mapped_column(Double, default=0.0)
    latitude: Mapped[float | None] = mapped_column(Double)
    longitude: Mapped[float | None] = mapped_column(Double)
    created_at: Mapped[datetime] = _now()

    __table_args__ = (
        CheckConstraint("capacity_kw >= 0", name="capacity_non_negative"),
        CheckConstraint("latitude BETWEEN -90 AND 90", name="latitude_range"),
        CheckConstraint("longitude BETWEEN -180 AND 180", name="longitude_range"),
    )


class Reading(Base):
    """Energy over one interval starting at ``ts`` (kWh), per site and source."""

    __tablename__ = "reading"

    site_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    consumption_kwh: Mapped[float] = mapped_column(Double)
    production_kwh: Mapped[float] = mapped_column(Double, default=0.0)
    interval_s: Mapped[int] = mapped_column(Integer, default=3600)
    received_at: Mapped[datetime] = _now()

    __table_args__ = (
        CheckConstraint(_SOURCE_CHECK, name="source_known"),
        CheckConstraint("consumption_kwh >= 0 AND production_kwh >= 0", name="energy_non_negative"),
        CheckConstraint("interval_s BETWEEN 60 AND 3600", name="interval_range"),
    )


class Equipment(Base):
    __tablename__ = "equipment"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    installed_on: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = _now()


class Telemetry(Base):
    """One equipment sensor sample; any sensor may be missing (NULL), never all of them."""

    __tablename__ = "telemetry"

    equipment_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    flow_m3h: Mapped[float | None] = mapped_column(Double)
    pressure_bar: Mapped[float | None] = mapped_column(Double)
    vibration_mm_s: Mapped[float | None] = mapped_column(Double)
    temperature_c: Mapped[float | None] = mapped_column(Double)
    received_at: Mapped[datetime] = _now()

    __table_args__ = (CheckConstraint(_SOURCE_CHECK, name="source_known"),)


class EquipmentEvent(Base):
    """A maintenance intervention or a failure of one piece of equipment."""

    __tablename__ = "equipment_event"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    equipment_id: Mapped[int] = mapped_column(ForeignKey("equipment.id"))
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = _now()

    __table_args__ = (
        UniqueConstraint("equipment_id", "ts", "kind"),
        CheckConstraint("kind IN ('maintenance', 'failure', 'inspection')", name="kind_known"),
        CheckConstraint(_SOURCE_CHECK, name="source_known"),
    )


class Weather(Base):
    """Hourly weather at a site: observed, or forecast when ``is_forecast``."""

    __tablename__ = "weather"

    site_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    temperature_c: Mapped[float | None] = mapped_column(Double)
    irradiance_w_m2: Mapped[float | None] = mapped_column(Double)
    wind_speed_m_s: Mapped[float | None] = mapped_column(Double)
    is_forecast: Mapped[bool] = mapped_column(Boolean, default=False)
    received_at: Mapped[datetime] = _now()

    __table_args__ = (CheckConstraint(_SOURCE_CHECK, name="source_known"),)


class Quarantine(Base):
    """A rejected input row, kept with the reason so nothing sent is silently lost."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    batch_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    kind: Mapped[str] = mapped_column(String(16))
    row_number: Mapped[int] = mapped_column(Integer)
    payload: Mapped[Any] = mapped_column(JSONB)
    reason: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = _now()

    __table_args__ = (
        Index("ix_quarantine_kind_received_at", "kind", "received_at"),
        Index("ix_quarantine_batch_id", "batch_id"),
    )


class AnomalyLabel(Base):
    """Ground truth of an anomaly injected by the simulator, for measuring detection."""

    __tablename__ = "anomaly_label"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"))
    kind: Mapped[str] = mapped_column(String(16))
    start_ts: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    end_ts: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    magnitude: Mapped[float] = mapped_column(Double, default=0.0)
    source: Mapped[str] = mapped_column(String(16), default="simulated")
    created_at: Mapped[datetime] = _now()

    __table_args__ = (
        UniqueConstraint("site_id", "kind", "start_ts"),
        CheckConstraint("kind IN ('spike', 'drop', 'stuck')", name="kind_known"),
        CheckConstraint("end_ts > start_ts", name="end_after_start"),
    )
