"""Forecast tables (schema ``forecast``): model runs and their artifacts, issued forecasts,
jobs, and maintenance predictions.

Sites and equipment are referred to by their code (text): they live in ingest's schema, which
this service reads only through ingest's HTTP API, so there is no foreign key across schemas.
"""

from __future__ import annotations

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
    LargeBinary,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.db import schema_metadata


class Base(DeclarativeBase):
    metadata = schema_metadata("forecast")


RUN_KINDS = ("load", "production", "maintenance")
RUN_STATUSES = ("running", "succeeded", "failed")
FORECAST_KINDS = ("load", "production")
SERVED = ("model", "baseline")
JOB_KINDS = ("retrain", "maintenance")
JOB_STATUSES = ("queued", "running", "succeeded", "failed")
ACTIVE_JOB_STATUSES = ("queued", "running")
# The job "target" of an every-site job in the one-active-job index.
ALL_SITES = "*"


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


def _json() -> Any:
    return mapped_column(JSONB, server_default=text("'{}'::jsonb"), nullable=False)


class Job(Base):
    """A job run by a worker thread: ``retrain`` one site or all (``site`` NULL; every-site jobs
    also score maintenance), or ``maintenance`` (score the equipment only)."""

    __tablename__ = "job"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), server_default="retrain")
    site: Mapped[str | None] = mapped_column(String(32))
    target_date: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), server_default="queued")
    progress: Mapped[float] = mapped_column(Double, server_default="0")
    message: Mapped[str] = mapped_column(Text, server_default="")
    error: Mapped[str | None] = mapped_column(Text)
    # Per site: the model runs made and what is served ({"LYON": {"load": {...}}}).
    results: Mapped[dict[str, Any]] = _json()
    requested_by: Mapped[str] = mapped_column(String(200))
    worker: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = _now()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(_in("kind", JOB_KINDS), name="kind_known"),
        CheckConstraint(_in("status", JOB_STATUSES), name="status_known"),
        CheckConstraint("progress >= 0 AND progress <= 1", name="progress_ratio"),
        # Two clicks never start two jobs for one site: one queued-or-running job per target.
        Index(
            "uq_job_active_target",
            "kind",
            text(f"coalesce(site, '{ALL_SITES}')"),
            unique=True,
            postgresql_where=text(_in("status", ACTIVE_JOB_STATUSES)),
        ),
        Index("ix_job_status_id", "status", "id"),
    )


class ModelRun(Base):
    """One training: what was trained on what, how long it took, how good it is, and whether
    it is served (promoted) or the seasonal-naive baseline is served instead."""

    __tablename__ = "model_run"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    site: Mapped[str | None] = mapped_column(String(32))  # NULL: the fleet-wide failure model
    kind: Mapped[str] = mapped_column(String(16))
    algorithm: Mapped[str] = mapped_column(String(100))
    parameters: Mapped[dict[str, Any]] = _json()
    train_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    train_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), server_default="running")
    promoted: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    promotion_reason: Mapped[str] = mapped_column(Text, server_default="")
    # What a forecast issued from this run serves: the model's name or seasonal_naive_<n>d.
    served_method: Mapped[str | None] = mapped_column(String(100))
    metrics: Mapped[dict[str, Any]] = _json()
    feature_importances: Mapped[dict[str, Any]] = _json()
    duration_s: Mapped[float | None] = mapped_column(Double)
    message: Mapped[str] = mapped_column(Text, server_default="")
    error: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("job.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _now()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(_in("kind", RUN_KINDS), name="kind_known"),
        CheckConstraint(_in("status", RUN_STATUSES), name="status_known"),
        CheckConstraint("site IS NOT NULL OR kind = 'maintenance'", name="site_unless_fleet"),
        Index("ix_model_run_site_kind_id", "site", "kind", "id"),
        Index("ix_model_run_kind_id", "kind", "id"),
    )


class ModelArtifact(Base):
    """The fitted model of a run, serialised with joblib: in the database so every replica
    can load it (no shared volume needed)."""

    __tablename__ = "model_artifact"

    model_run_id: Mapped[int] = mapped_column(
        ForeignKey("model_run.id", ondelete="CASCADE"), primary_key=True
    )
    format: Mapped[str] = mapped_column(String(32), server_default="joblib")
    content: Mapped[bytes] = mapped_column(LargeBinary)
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = _now()


class Forecast(Base):
    """One issued day-ahead forecast of a site: which run made it, when, and what it serves."""

    __tablename__ = "forecast"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    site: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    target_date: Mapped[date] = mapped_column(Date)
    timezone: Mapped[str] = mapped_column(String(64))
    # The information cut-off: only measurements that ended by then were used.
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    model_run_id: Mapped[int] = mapped_column(ForeignKey("model_run.id", ondelete="CASCADE"))
    served: Mapped[str] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(100))
    message: Mapped[str] = mapped_column(Text, server_default="")
    created_at: Mapped[datetime] = _now()

    __table_args__ = (
        CheckConstraint(_in("kind", FORECAST_KINDS), name="kind_known"),
        CheckConstraint(_in("served", SERVED), name="served_known"),
        Index("ix_forecast_site_kind_id", "site", "kind", "id"),
        Index("ix_forecast_site_kind_target", "site", "kind", "target_date", "issued_at"),
        Index("ix_forecast_model_run_id", "model_run_id"),
    )


class ForecastPoint(Base):
    """One hour of an issued forecast: the value served, its 80 % interval, the seasonal-naive
    baseline beside it and (when one was trained) the model's own value."""

    __tablename__ = "forecast_point"

    forecast_id: Mapped[int] = mapped_column(
        ForeignKey("forecast.id", ondelete="CASCADE"), primary_key=True
    )
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    yhat: Mapped[float | None] = mapped_column(Double)
    lower: Mapped[float | None] = mapped_column(Double)
    upper: Mapped[float | None] = mapped_column(Double)
    baseline_yhat: Mapped[float | None] = mapped_column(Double)
    model_yhat: Mapped[float | None] = mapped_column(Double)


class MaintenancePrediction(Base):
    """A piece of equipment's failure probability within the horizon, as of one run."""

    __tablename__ = "maintenance_prediction"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    model_run_id: Mapped[int] = mapped_column(ForeignKey("model_run.id", ondelete="CASCADE"))
    equipment: Mapped[str] = mapped_column(String(64))
    site: Mapped[str | None] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str | None] = mapped_column(String(32))
    as_of: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    horizon_days: Mapped[int] = mapped_column(Integer)
    probability: Mapped[float | None] = mapped_column(Double)  # NULL unless status is "ok"
    status: Mapped[str] = mapped_column(String(32))
    top_factors: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, server_default=text("'[]'::jsonb"), nullable=False
    )
    message: Mapped[str] = mapped_column(Text, server_default="")
    rule_alert: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    created_at: Mapped[datetime] = _now()

    __table_args__ = (
        Index("ix_maintenance_prediction_run_site", "model_run_id", "site"),
        CheckConstraint(
            "probability IS NULL OR (probability >= 0 AND probability <= 1)",
            name="probability_ratio",
        ),
    )
