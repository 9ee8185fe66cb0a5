"""reporting: hourly views read ingest's hourly roll-ups, so raw-data retention keeps them whole

Ingest drops raw readings after INGEST_RAW_RETENTION_DAYS once they are rolled up into hours
(ingest migration 0003). The hourly reporting views summed raw readings, so they would have
lost those hours; they now read ``ingest.reading_hourly_live`` (roll-ups below the watermark,
raw readings above it: every hour, current and exact). Same columns and types, so
``daily_balance`` and the BI reports built on them are unchanged; figures are rounded from
exact sums, as the ingest API now does.

Revision ID: e6f4a5b7c8d9
Revises: d5e3f4a6b7c8
"""

from collections.abc import Sequence

from alembic import op

revision: str = "e6f4a5b7c8d9"
down_revision: str | Sequence[str] | None = "d5e3f4a6b7c8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _kwh(expr: str) -> str:
    # The ingest API's rounding (to the mWh, from the exact numeric sum), as double precision.
    return f"CAST(round({expr}, 6) AS double precision)"


def _hourly(*, by_source: bool) -> str:
    source = "h.source, " if by_source else ""
    which = "h.source <> '*'" if by_source else "h.source = '*'"
    return f"""
        SELECT s.code AS site, {source}h.hour AS hour_start,
               h.hour AT TIME ZONE s.timezone AS hour_local,
               {_kwh("h.consumption_kwh")} AS consumption_kwh,
               {_kwh("h.production_kwh")} AS production_kwh,
               {_kwh("h.production_kwh - h.consumption_kwh")} AS balance_kwh,
               {_kwh("greatest(h.consumption_kwh - h.production_kwh, 0)")} AS deficit_kwh,
               h.n_readings
        FROM ingest.reading_hourly_live h JOIN ingest.site s ON s.id = h.site_id
        WHERE {which}
    """


def upgrade() -> None:
    op.execute(
        f"CREATE OR REPLACE VIEW reporting.hourly_balance_by_source AS {_hourly(by_source=True)}"
    )
    op.execute(f"CREATE OR REPLACE VIEW reporting.hourly_balance AS {_hourly(by_source=False)}")


def downgrade() -> None:
    from importlib import import_module

    previous = import_module("services.gateway.migrations.versions.0004_reporting_views")
    for name in ("hourly_balance_by_source", "hourly_balance"):
        op.execute(f"CREATE OR REPLACE VIEW reporting.{name} AS {previous.VIEWS[name]}")
