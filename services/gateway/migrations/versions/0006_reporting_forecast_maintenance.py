"""reporting: forecast versus actual, and maintenance risk, for BI tools

Two views over the forecast service's tables (migrated before the gateway's), with the same
figures as the API:

- ``reporting.forecast_vs_actual``: per site, kind and hour, the point of the forecast that
  was the latest issued at or before the start of its local target day (what operators saw
  the day before, as ``GET /api/v1/sites/{code}/forecast/vs-actual``), beside the measured
  hour (one source per interval, real > import > simulated, as the readings endpoint, from
  ingest's hourly roll-ups so retention keeps it) and the error;
- ``reporting.maintenance_risk``: each equipment's failure risk as scored by the latest
  maintenance run that wrote any (as ``GET /api/v1/maintenance/risk``), its rank, and its top
  factors (flattened for BI tools, and whole as JSON).

Like the others they run with their owner's rights; ``spe_reporting`` gets SELECT on them.

Revision ID: f7a5b6c8d9e0
Revises: e6f4a5b7c8d9
Create Date: 2026-11-23 17:00:00

"""

from collections.abc import Sequence

from alembic import op

revision: str = "f7a5b6c8d9e0"
down_revision: str | Sequence[str] | None = "e6f4a5b7c8d9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLE = "spe_reporting"


def _kwh(expr: str) -> str:
    # The same rounding as the API and the other views (to the mWh).
    return f"round(({expr})::numeric * 1e6) / 1e6"


def _factor(n: int) -> str:
    f = f"p.top_factors -> {n - 1}"
    weight = f"(({f}) ->> 'contribution')::float8"
    return f"({f}) ->> 'factor' AS factor_{n}, {weight} AS factor_{n}_weight"


_ACTUAL = _kwh("CASE c.kind WHEN 'load' THEN h.consumption_kwh ELSE h.production_kwh END")

VIEWS = {
    "forecast_vs_actual": f"""
        WITH chosen AS (
            -- Per site, kind and target day: the latest issue made by the start of that local
            -- day (ties on issued_at: the later id, as the API keeps the last one listed).
            SELECT DISTINCT ON (f.site, f.kind, f.target_date)
                   f.id, f.site, f.kind, f.target_date, f.timezone, f.issued_at,
                   f.model_run_id, f.served, f.method
            FROM forecast.forecast f
            WHERE f.issued_at <= (f.target_date::timestamp AT TIME ZONE f.timezone)
            ORDER BY f.site, f.kind, f.target_date, f.issued_at DESC, f.id DESC
        )
        SELECT c.site, c.kind, c.target_date,
               pt.ts AS hour_start,
               pt.ts AT TIME ZONE c.timezone AS hour_local,
               c.id AS forecast_id, c.model_run_id, c.issued_at, c.served, c.method,
               pt.yhat AS forecast_kwh, pt.lower AS lower_kwh, pt.upper AS upper_kwh,
               pt.baseline_yhat AS baseline_kwh, pt.model_yhat AS model_kwh,
               a.actual_kwh,
               {_kwh("pt.yhat - a.actual_kwh")} AS error_kwh,
               {_kwh("abs(pt.yhat - a.actual_kwh)")} AS abs_error_kwh,
               CASE WHEN a.actual_kwh <> 0
                    THEN round((100 * abs(pt.yhat - a.actual_kwh) / abs(a.actual_kwh))::numeric,
                               3)
               END AS abs_pct_error,
               a.actual_kwh BETWEEN pt.lower AND pt.upper AS within_interval
        FROM chosen c
        JOIN forecast.forecast_point pt ON pt.forecast_id = c.id
        LEFT JOIN ingest.site s ON s.code = c.site
        -- The measured hour: one source per interval (real > import > simulated), as the
        -- readings endpoint and reporting.hourly_balance. Read from ingest's hourly roll-ups
        -- (source '*': the precedence already applied; raw readings for hours not rolled up
        -- yet), so the actuals outlive raw-data retention. Roll-up hours are the site's local
        -- hours, as the forecast's points.
        LEFT JOIN LATERAL (
            SELECT {_ACTUAL} AS actual_kwh
            FROM ingest.reading_hourly_live h
            WHERE h.site_id = s.id AND h.source = '*' AND h.hour = pt.ts
        ) a ON true
    """,
    "maintenance_risk": f"""
        SELECT p.equipment, p.site, p.name, p.kind,
               p.probability, p.status, p.horizon_days, p.as_of AS computed_at,
               p.model_run_id, p.rule_alert, p.message,
               CASE WHEN p.probability IS NOT NULL
                    THEN rank() OVER (ORDER BY p.probability DESC NULLS LAST)
               END AS risk_rank,
               {_factor(1)}, {_factor(2)}, {_factor(3)},
               p.top_factors
        FROM forecast.maintenance_prediction p
        WHERE p.model_run_id = (SELECT max(model_run_id) FROM forecast.maintenance_prediction)
    """,
}


def upgrade() -> None:
    """Create the two views and let spe_reporting read them."""
    op.execute(
        """
        DO $$
        BEGIN
            IF to_regclass('forecast.forecast_point') IS NULL
               OR to_regclass('forecast.maintenance_prediction') IS NULL
               OR to_regclass('ingest.reading_hourly_live') IS NULL THEN
                RAISE EXCEPTION 'the reporting views read forecast tables: run the forecast '
                    'migrations first (python -m services.common.migrate runs them all in order)';
            END IF;
        END $$
        """
    )
    for name, query in VIEWS.items():
        op.execute(f"CREATE VIEW reporting.{name} AS {query}")
    # Default privileges (0004) already cover views this user creates; granting explicitly
    # also covers a schema whose default privileges a DBA set for another role.
    op.execute(
        f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN
                GRANT SELECT ON reporting.forecast_vs_actual, reporting.maintenance_risk
                    TO {ROLE};
            END IF;
        END $$
        """
    )


def downgrade() -> None:
    """Drop the two views."""
    for name in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS reporting.{name}")
