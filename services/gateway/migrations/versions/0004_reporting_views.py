"""reporting: read-only views for BI tools (Power BI) and the spe_reporting role

The gateway owns the integration surface, so these views live in its migrations; they read
the ingest and alerts tables, whose migrations run first (services.common.migrations runs
ingest, forecast, alerts, then gateway). The forecast-versus-actual and maintenance-risk
views arrive with the forecast service's tables, in a later gateway migration.

The views run with their owner's rights (the migration user), so ``spe_reporting`` needs
SELECT on them only: no right on any table of any schema.

Revision ID: d5e3f4a6b7c8
Revises: c4d2e3f5a6b7
Create Date: 2026-11-23 15:00:00

"""

from collections.abc import Sequence

from alembic import op

revision: str = "d5e3f4a6b7c8"
down_revision: str | Sequence[str] | None = "c4d2e3f5a6b7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLE = "spe_reporting"


def _kwh(expr: str) -> str:
    # The same rounding as the ingest API (to the mWh), so both give the same figures.
    return f"round(({expr}) * 1e6) / 1e6"


VIEWS = {
    "sites": """
        SELECT s.code AS site, s.name, s.timezone, s.country_code, s.capacity_kw,
               s.latitude, s.longitude
        FROM ingest.site s
    """,
    # One row per site, source and local hour: for comparing real, imported and simulated data.
    "hourly_balance_by_source": f"""
        SELECT s.code AS site, r.source,
               date_trunc('hour', r.ts, s.timezone) AS hour_start,
               date_trunc('hour', r.ts, s.timezone) AT TIME ZONE s.timezone AS hour_local,
               {_kwh("sum(r.consumption_kwh)")} AS consumption_kwh,
               {_kwh("sum(r.production_kwh)")} AS production_kwh,
               {_kwh("sum(r.production_kwh) - sum(r.consumption_kwh)")} AS balance_kwh,
               {_kwh("greatest(sum(r.consumption_kwh) - sum(r.production_kwh), 0)")}
                   AS deficit_kwh,
               count(*) AS n_readings
        FROM ingest.reading r JOIN ingest.site s ON s.id = r.site_id
        GROUP BY s.code, s.timezone, r.source, date_trunc('hour', r.ts, s.timezone)
    """,
    # One row per site and local hour, one source per interval (real > import > simulated):
    # the figures of GET /api/v1/sites/{code}/readings?resolution=hour.
    "hourly_balance": f"""
        SELECT s.code AS site,
               date_trunc('hour', p.ts, s.timezone) AS hour_start,
               date_trunc('hour', p.ts, s.timezone) AT TIME ZONE s.timezone AS hour_local,
               {_kwh("sum(p.consumption_kwh)")} AS consumption_kwh,
               {_kwh("sum(p.production_kwh)")} AS production_kwh,
               {_kwh("sum(p.production_kwh) - sum(p.consumption_kwh)")} AS balance_kwh,
               {_kwh("greatest(sum(p.consumption_kwh) - sum(p.production_kwh), 0)")}
                   AS deficit_kwh,
               count(*) AS n_readings
        FROM (
            SELECT DISTINCT ON (r.site_id, r.ts) r.site_id, r.ts, r.consumption_kwh,
                   r.production_kwh
            FROM ingest.reading r
            ORDER BY r.site_id, r.ts,
                     CASE r.source WHEN 'real' THEN 0 WHEN 'import' THEN 1 ELSE 2 END
        ) p JOIN ingest.site s ON s.id = p.site_id
        GROUP BY s.code, s.timezone, date_trunc('hour', p.ts, s.timezone)
    """,
    "daily_balance": f"""
        SELECT h.site, h.hour_local::date AS day,
               {_kwh("sum(h.consumption_kwh)")} AS consumption_kwh,
               {_kwh("sum(h.production_kwh)")} AS production_kwh,
               {_kwh("sum(h.balance_kwh)")} AS balance_kwh,
               {_kwh("sum(h.deficit_kwh)")} AS deficit_kwh,
               count(*) FILTER (WHERE h.deficit_kwh > 0) AS deficit_hours,
               CASE WHEN sum(h.consumption_kwh) > 0
                    THEN round((sum(h.production_kwh) / sum(h.consumption_kwh))::numeric, 6)
               END AS coverage_rate,
               sum(h.n_readings) AS n_readings
        FROM reporting.hourly_balance h
        GROUP BY h.site, h.hour_local::date
    """,
    "incidents": """
        SELECT i.id AS incident_id, i.site, r.name AS rule_name, i.kind, i.severity, i.status,
               i.title, i.first_seen_at, i.last_seen_at, i.peak_value, i.peak_at, i.threshold,
               i.unit, i.assignee, i.acknowledged_by, i.acknowledged_at, i.resolved_by,
               i.resolved_at, i.feedback AS true_positive, i.feedback_by, i.feedback_at
        FROM alerts.incident i JOIN alerts.rule r ON r.id = i.rule_id
    """,
}


def upgrade() -> None:
    """Create the reporting schema, its views and the read-only role."""
    op.execute(
        """
        DO $$
        BEGIN
            IF to_regclass('ingest.reading') IS NULL OR to_regclass('alerts.incident') IS NULL
            THEN
                RAISE EXCEPTION 'the reporting views read ingest and alerts tables: run their '
                    'migrations first (python -m services.common.migrate runs them all in order)';
            END IF;
        END $$
        """
    )
    op.execute("CREATE SCHEMA IF NOT EXISTS reporting")
    op.execute("REVOKE ALL ON SCHEMA reporting FROM PUBLIC")
    op.execute(
        "COMMENT ON SCHEMA reporting IS 'SP-E read-only views for BI tools; "
        "role spe_reporting may SELECT them (docs/integrations.md)'"
    )
    for name, query in VIEWS.items():
        op.execute(f"CREATE VIEW reporting.{name} AS {query}")
    # Roles are cluster-wide: another database of the same server may have created it. A
    # migration user without CREATEROLE leaves it to a DBA (the statements are in the docs)
    # rather than failing the deployment.
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN
                BEGIN
                    CREATE ROLE {ROLE} NOLOGIN;
                EXCEPTION WHEN insufficient_privilege THEN
                    RAISE WARNING 'cannot create role {ROLE}: a DBA must create it and grant '
                        'it SELECT on schema reporting (see docs/integrations.md)';
                    RETURN;
                END;
            END IF;
            GRANT USAGE ON SCHEMA reporting TO {ROLE};
            GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO {ROLE};
            -- Views added by later migrations (forecast versus actual...) are readable too.
            ALTER DEFAULT PRIVILEGES IN SCHEMA reporting GRANT SELECT ON TABLES TO {ROLE};
        END $$
        """
    )


def downgrade() -> None:
    """Drop the views; the role stays (other databases of the server may use it)."""
    op.execute(
        f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN
                ALTER DEFAULT PRIVILEGES IN SCHEMA reporting REVOKE SELECT ON TABLES FROM {ROLE};
                REVOKE ALL ON SCHEMA reporting FROM {ROLE};
            END IF;
        END $$
        """
    )
    op.execute("DROP SCHEMA IF EXISTS reporting CASCADE")
