"""forecast: jobs, model runs and artifacts, issued forecasts, maintenance predictions

Revision ID: f0ca57000002
Revises: 00b527056d05
Create Date: 2026-11-23 15:10:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "f0ca57000002"
down_revision: str | Sequence[str] | None = "00b527056d05"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "forecast"


def _now(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def _json(name: str, default: str = "'{}'::jsonb") -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        name,
        postgresql.JSONB(astext_type=sa.Text()),
        server_default=sa.text(default),
        nullable=False,
    )


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "job",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("kind", sa.String(length=16), server_default="retrain", nullable=False),
        sa.Column("site", sa.String(length=32), nullable=True),
        sa.Column("target_date", sa.Date(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="queued", nullable=False),
        sa.Column("progress", sa.Double(), server_default="0", nullable=False),
        sa.Column("message", sa.Text(), server_default="", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        _json("results"),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("worker", sa.String(length=200), nullable=True),
        _now("created_at"),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('retrain')", name=op.f("ck_job_kind_known")),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed')",
            name=op.f("ck_job_status_known"),
        ),
        sa.CheckConstraint("progress >= 0 AND progress <= 1", name=op.f("ck_job_progress_ratio")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job")),
        schema=S,
    )
    # One queued-or-running job per (kind, site); '*' stands for "every site".
    op.create_index(
        "uq_job_active_target",
        "job",
        ["kind", sa.text("coalesce(site, '*')")],
        unique=True,
        schema=S,
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    op.create_index("ix_job_status_id", "job", ["status", "id"], schema=S)

    op.create_table(
        "model_run",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("site", sa.String(length=32), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("algorithm", sa.String(length=100), nullable=False),
        _json("parameters"),
        sa.Column("train_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("train_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="running", nullable=False),
        sa.Column("promoted", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("promotion_reason", sa.Text(), server_default="", nullable=False),
        sa.Column("served_method", sa.String(length=100), nullable=True),
        _json("metrics"),
        _json("feature_importances"),
        sa.Column("duration_s", sa.Double(), nullable=True),
        sa.Column("message", sa.Text(), server_default="", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        _now("created_at"),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "kind IN ('load', 'production', 'maintenance')", name=op.f("ck_model_run_kind_known")
        ),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'failed')", name=op.f("ck_model_run_status_known")
        ),
        sa.CheckConstraint(
            "site IS NOT NULL OR kind = 'maintenance'", name=op.f("ck_model_run_site_unless_fleet")
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            [f"{S}.job.id"],
            name=op.f("fk_model_run_job_id_job"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_run")),
        schema=S,
    )
    op.create_index("ix_model_run_site_kind_id", "model_run", ["site", "kind", "id"], schema=S)
    op.create_index("ix_model_run_kind_id", "model_run", ["kind", "id"], schema=S)

    op.create_table(
        "model_artifact",
        sa.Column("model_run_id", sa.BigInteger(), nullable=False),
        sa.Column("format", sa.String(length=32), server_default="joblib", nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        _now("created_at"),
        sa.ForeignKeyConstraint(
            ["model_run_id"],
            [f"{S}.model_run.id"],
            name=op.f("fk_model_artifact_model_run_id_model_run"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("model_run_id", name=op.f("pk_model_artifact")),
        schema=S,
    )

    op.create_table(
        "forecast",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("site", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("target_date", sa.Date(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_run_id", sa.BigInteger(), nullable=False),
        sa.Column("served", sa.String(length=16), nullable=False),
        sa.Column("method", sa.String(length=100), nullable=False),
        sa.Column("message", sa.Text(), server_default="", nullable=False),
        _now("created_at"),
        sa.CheckConstraint("kind IN ('load', 'production')", name=op.f("ck_forecast_kind_known")),
        sa.CheckConstraint(
            "served IN ('model', 'baseline')", name=op.f("ck_forecast_served_known")
        ),
        sa.ForeignKeyConstraint(
            ["model_run_id"],
            [f"{S}.model_run.id"],
            name=op.f("fk_forecast_model_run_id_model_run"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forecast")),
        schema=S,
    )
    op.create_index("ix_forecast_site_kind_id", "forecast", ["site", "kind", "id"], schema=S)
    op.create_index(
        "ix_forecast_site_kind_target",
        "forecast",
        ["site", "kind", "target_date", "issued_at"],
        schema=S,
    )
    op.create_index("ix_forecast_model_run_id", "forecast", ["model_run_id"], schema=S)

    op.create_table(
        "forecast_point",
        sa.Column("forecast_id", sa.BigInteger(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("yhat", sa.Double(), nullable=True),
        sa.Column("lower", sa.Double(), nullable=True),
        sa.Column("upper", sa.Double(), nullable=True),
        sa.Column("baseline_yhat", sa.Double(), nullable=True),
        sa.Column("model_yhat", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["forecast_id"],
            [f"{S}.forecast.id"],
            name=op.f("fk_forecast_point_forecast_id_forecast"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("forecast_id", "ts", name=op.f("pk_forecast_point")),
        schema=S,
    )

    op.create_table(
        "maintenance_prediction",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("model_run_id", sa.BigInteger(), nullable=False),
        sa.Column("equipment", sa.String(length=64), nullable=False),
        sa.Column("site", sa.String(length=32), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=True),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("horizon_days", sa.Integer(), nullable=False),
        sa.Column("probability", sa.Double(), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        _json("top_factors", "'[]'::jsonb"),
        sa.Column("message", sa.Text(), server_default="", nullable=False),
        sa.Column("rule_alert", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        _now("created_at"),
        sa.CheckConstraint(
            "probability IS NULL OR (probability >= 0 AND probability <= 1)",
            name=op.f("ck_maintenance_prediction_probability_ratio"),
        ),
        sa.ForeignKeyConstraint(
            ["model_run_id"],
            [f"{S}.model_run.id"],
            name=op.f("fk_maintenance_prediction_model_run_id_model_run"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_maintenance_prediction")),
        schema=S,
    )
    op.create_index(
        "ix_maintenance_prediction_run_site",
        "maintenance_prediction",
        ["model_run_id", "site"],
        schema=S,
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("maintenance_prediction", schema=S)
    op.drop_table("forecast_point", schema=S)
    op.drop_table("forecast", schema=S)
    op.drop_table("model_artifact", schema=S)
    op.drop_table("model_run", schema=S)
    op.drop_table("job", schema=S)
