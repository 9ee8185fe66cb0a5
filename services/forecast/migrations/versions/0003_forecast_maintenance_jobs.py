"""forecast: maintenance-only jobs (score the equipment without retraining the forecasts)

Revision ID: f0ca57000003
Revises: f0ca57000002
Create Date: 2026-11-23 16:20:00

"""

from collections.abc import Sequence

from alembic import op

revision: str = "f0ca57000003"
down_revision: str | Sequence[str] | None = "f0ca57000002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.drop_constraint(op.f("ck_job_kind_known"), "job", schema="forecast", type_="check")
    op.create_check_constraint(
        op.f("ck_job_kind_known"), "job", "kind IN ('retrain', 'maintenance')", schema="forecast"
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.execute("DELETE FROM forecast.job WHERE kind = 'maintenance'")
    op.drop_constraint(op.f("ck_job_kind_known"), "job", schema="forecast", type_="check")
    op.create_check_constraint(
        op.f("ck_job_kind_known"), "job", "kind IN ('retrain')", schema="forecast"
    )
