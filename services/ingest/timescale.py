"""Optional TimescaleDB: readings and telemetry as compressed hypertables when available.

Used by migration 0003 and by the retention job. Nothing here changes a table's columns, keys
or a query: plain PostgreSQL and TimescaleDB run the same SQL. Continuous aggregates are not
used: the roll-ups (services/ingest/rollup.py) pick one source per timestamp (``DISTINCT ON``)
and bucket each site in its own timezone, which a continuous aggregate cannot express, so the
same roll-up tables serve both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# (table, segment-by columns): compressed per entity, ordered by time within it.
HYPERTABLES = (("reading", "site_id"), ("telemetry", "equipment_id"))
CHUNK_INTERVAL = "30 days"
COMPRESS_AFTER = "90 days"

Execute = Callable[[str], Any]  # runs one SQL statement, returns a cursor-like result


def available(execute: Execute) -> bool:
    """True when the timescaledb extension is installed and preloaded by the server."""
    row = execute(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') "
        "AND position('timescaledb' in current_setting('shared_preload_libraries')) > 0"
    ).fetchone()
    return bool(row and row[0])


def enabled(execute: Execute) -> bool:
    """True when ingest.reading is a hypertable (the extension is installed in this database)."""
    row = execute(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"
    ).fetchone()
    if not (row and row[0]):
        return False
    row = execute(
        "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables "
        "WHERE hypertable_schema = 'ingest' AND hypertable_name = 'reading')"
    ).fetchone()
    return bool(row and row[0])


def setup(execute: Execute) -> None:
    """Make the time-series tables hypertables and compress chunks older than 90 days."""
    execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    for table, segment_by in HYPERTABLES:
        execute(
            f"SELECT create_hypertable('ingest.{table}', 'ts', "
            f"chunk_time_interval => interval '{CHUNK_INTERVAL}', "
            "migrate_data => true, if_not_exists => true)"
        )
        execute(
            f"ALTER TABLE ingest.{table} SET (timescaledb.compress, "
            f"timescaledb.compress_segmentby = '{segment_by}', "
            "timescaledb.compress_orderby = 'ts, source')"
        )
        execute(
            f"SELECT add_compression_policy('ingest.{table}', "
            f"compress_after => interval '{COMPRESS_AFTER}', if_not_exists => true)"
        )


def drop_chunks_before(execute: Execute, table: str, before_iso: str) -> None:
    """Drop whole chunks of ``ingest.<table>`` that end before ``before_iso`` (cheap deletes)."""
    execute(f"SELECT drop_chunks('ingest.{table}', older_than => '{before_iso}'::timestamptz)")
