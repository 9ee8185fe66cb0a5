"""ingest: hourly reading roll-ups, their invalidations and watermark; optional TimescaleDB

``reading_hourly`` holds, per site and local hour (the instant the site-zone hour starts),
the sums of each source and of the source-precedence pick (``source = '*'``), so hour, day,
week and month reads and the balance no longer scan raw readings (``bucket_json``: the hour
as the readings API renders it, in the site's zone, so a year of hours is concatenated rather
than built), and raw readings can be
dropped after ``INGEST_RAW_RETENTION_DAYS`` without changing any total. Sums are numeric
(exact, so any grouping of hours gives the same total as the raw readings). See
services/ingest/rollup.py for how the job keeps it exact and docs/operations.md.

``telemetry_hourly`` keeps the hourly count / sum / max of each sensor for the hours whose raw
samples retention dropped.

When the ``timescaledb`` extension is installed and preloaded, ``reading`` also becomes a
hypertable with compression of old chunks; nothing else changes (same tables, same queries).

Revision ID: c3d1f0a4e2b7
Revises: 5a1e0c2b7d90
"""

from collections.abc import Sequence

from alembic import op

from services.ingest import timescale

revision: str = "c3d1f0a4e2b7"
down_revision: str | Sequence[str] | None = "5a1e0c2b7d90"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Every site-zone hour of every site, per source and for the pick ('*'), exact (numeric) and
# current: roll-ups below each site's cut (the watermark, lowered to an hour before the site's
# earliest pending invalidation), raw readings summed from it on. Whole hours only, for
# consumers that read hours without a range (the gateway's reporting views): the API's reads
# use the same rule with range edges (services/ingest/queries.py).
READING_HOURLY_LIVE = """
    WITH cut AS (
        SELECT s.id AS site_id, s.timezone,
               least(w.watermark,
                     coalesce((SELECT min(i.lo) FROM ingest.rollup_invalidation i
                               WHERE i.site_id = s.id), 'infinity') - interval '1 hour') AS at
        FROM ingest.site s CROSS JOIN ingest.rollup_state w
    ), fresh AS (
        SELECT r.site_id, r.source, r.ts, r.consumption_kwh, r.production_kwh,
               date_trunc('hour', r.ts, c.timezone) AS hour
        FROM cut c
        JOIN LATERAL (
            SELECT * FROM ingest.reading r WHERE r.site_id = c.site_id AND r.ts >= c.at
        ) r ON true
        WHERE date_trunc('hour', r.ts, c.timezone) >= c.at
    )
    SELECT h.site_id, h.source, h.hour, h.consumption_kwh, h.production_kwh,
           CAST(h.n_readings AS bigint) AS n_readings
    FROM ingest.reading_hourly h JOIN cut c ON c.site_id = h.site_id
    WHERE h.hour < c.at
    UNION ALL
    SELECT f.site_id, f.source, f.hour, sum(CAST(f.consumption_kwh AS numeric)),
           sum(CAST(f.production_kwh AS numeric)), count(*)
    FROM fresh f GROUP BY f.site_id, f.source, f.hour
    UNION ALL
    SELECT p.site_id, CAST('*' AS varchar(16)), p.hour, sum(CAST(p.consumption_kwh AS numeric)),
           sum(CAST(p.production_kwh AS numeric)), count(*)
    FROM (
        SELECT DISTINCT ON (f.site_id, f.ts) f.*
        FROM fresh f
        ORDER BY f.site_id, f.ts, CASE f.source WHEN 'real' THEN 0 WHEN 'import' THEN 1 ELSE 2 END
    ) p
    GROUP BY p.site_id, p.hour
"""


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE ingest.reading_hourly (
            site_id integer NOT NULL,
            source varchar(16) NOT NULL,
            hour timestamptz NOT NULL,
            consumption_kwh numeric NOT NULL,
            production_kwh numeric NOT NULL,
            n_readings integer NOT NULL,
            first_ts timestamptz NOT NULL,
            last_ts timestamptz NOT NULL,
            bucket_json text NOT NULL,
            CONSTRAINT pk_reading_hourly PRIMARY KEY (site_id, source, hour),
            CONSTRAINT ck_reading_hourly_source_known
                CHECK (source IN ('real', 'simulated', 'import', '*'))
        )
        """
    )
    # Telemetry hours are rolled up only when retention drops their raw samples (writes that
    # old are refused, so those hours never change again): per sensor, the count of values,
    # their exact sum (for the average) and the maximum.
    sensors = ", ".join(
        f"{s}_n integer NOT NULL, {s}_sum numeric, {s}_max double precision"
        for s in ("flow_m3h", "pressure_bar", "vibration_mm_s", "temperature_c")
    )
    op.execute(
        f"""
        CREATE TABLE ingest.telemetry_hourly (
            equipment_id integer NOT NULL,
            source varchar(16) NOT NULL,
            hour timestamptz NOT NULL,
            n_samples integer NOT NULL,
            {sensors},
            CONSTRAINT pk_telemetry_hourly PRIMARY KEY (equipment_id, source, hour),
            CONSTRAINT ck_telemetry_hourly_source_known
                CHECK (source IN ('real', 'simulated', 'import', '*'))
        )
        """
    )
    op.execute(
        """
        CREATE TABLE ingest.rollup_invalidation (
            id bigint GENERATED BY DEFAULT AS IDENTITY,
            site_id integer NOT NULL,
            lo timestamptz NOT NULL,
            hi timestamptz NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_rollup_invalidation PRIMARY KEY (id)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_rollup_invalidation_site_id_lo ON ingest.rollup_invalidation (site_id, lo)"
    )
    # One row. watermark: hours below it are in reading_hourly (reads use it there);
    # write_horizon: readings before it + 1 h are refused; raw_horizon: raw readings whose
    # hour starts before it have been dropped (their totals live on in reading_hourly).
    op.execute(
        """
        CREATE TABLE ingest.rollup_state (
            id boolean NOT NULL DEFAULT true,
            watermark timestamptz NOT NULL DEFAULT '-infinity',
            write_horizon timestamptz NOT NULL DEFAULT '-infinity',
            raw_horizon timestamptz NOT NULL DEFAULT '-infinity',
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_rollup_state PRIMARY KEY (id),
            CONSTRAINT ck_rollup_state_one_row CHECK (id)
        )
        """
    )
    op.execute("INSERT INTO ingest.rollup_state (id) VALUES (true)")
    op.execute(f"CREATE VIEW ingest.reading_hourly_live AS {READING_HOURLY_LIVE}")
    bind = op.get_bind()
    if timescale.available(bind.exec_driver_sql):
        timescale.setup(bind.exec_driver_sql)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS ingest.reading_hourly_live")
    for table in ("rollup_state", "rollup_invalidation", "telemetry_hourly", "reading_hourly"):
        op.execute(f"DROP TABLE IF EXISTS ingest.{table}")
