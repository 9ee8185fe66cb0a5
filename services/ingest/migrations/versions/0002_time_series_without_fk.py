"""ingest: no per-row foreign key on the time-series tables; deletes guarded by triggers

The foreign keys of reading, telemetry and weather cost PostgreSQL a key lookup per row:
measured with bench/ingest.py (1,000,000 readings in JSON batches), PostgreSQL spent 8.6
CPU-seconds with the key and 2.9 without, and end-to-end throughput went from 67,000 to
101,000 readings/s. Ingest already resolves every code to an id in the write's own
transaction, so the key only guarded against deleting a referenced site or equipment; the
triggers below keep that guarantee at the cost of one index probe per (rare) delete.

Revision ID: 5a1e0c2b7d90
Revises: 87496917a469
"""

from collections.abc import Sequence

from alembic import op

revision: str = "5a1e0c2b7d90"
down_revision: str | Sequence[str] | None = "87496917a469"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FOREIGN_KEYS = (
    ("reading", "fk_reading_site_id_site", "site_id", "site"),
    ("weather", "fk_weather_site_id_site", "site_id", "site"),
    ("telemetry", "fk_telemetry_equipment_id_equipment", "equipment_id", "equipment"),
)


def upgrade() -> None:
    for table, name, _, _ in _FOREIGN_KEYS:
        op.drop_constraint(name, table, schema="ingest", type_="foreignkey")
    op.execute(
        """
        CREATE FUNCTION ingest.refuse_delete_with_rows() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_TABLE_NAME = 'site' AND (
                EXISTS (SELECT 1 FROM ingest.reading WHERE site_id = OLD.id)
                OR EXISTS (SELECT 1 FROM ingest.weather WHERE site_id = OLD.id)
            ) OR TG_TABLE_NAME = 'equipment' AND
                EXISTS (SELECT 1 FROM ingest.telemetry WHERE equipment_id = OLD.id)
            THEN
                RAISE EXCEPTION 'ingest.% % still has measurements; it cannot be deleted',
                    TG_TABLE_NAME, OLD.code USING ERRCODE = 'foreign_key_violation';
            END IF;
            RETURN OLD;
        END $$
        """
    )
    for table in ("site", "equipment"):
        op.execute(
            f"CREATE TRIGGER {table}_refuse_delete_with_rows BEFORE DELETE ON ingest.{table} "
            "FOR EACH ROW EXECUTE FUNCTION ingest.refuse_delete_with_rows()"
        )


def downgrade() -> None:
    for table in ("site", "equipment"):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_refuse_delete_with_rows ON ingest.{table}")
    op.execute("DROP FUNCTION IF EXISTS ingest.refuse_delete_with_rows()")
    for table, name, column, target in _FOREIGN_KEYS:
        op.create_foreign_key(
            name, table, target, [column], ["id"], source_schema="ingest", referent_schema="ingest"
        )
