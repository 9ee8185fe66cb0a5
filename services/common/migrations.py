"""Per-service Alembic migrations: each service's schema has its own version table."""

from __future__ import annotations

from pathlib import Path

from alembic import command, context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, text

from services.common.db import get_engine

SERVICES = ("ingest", "forecast", "alerts", "gateway")
_SERVICES_DIR = Path(__file__).resolve().parent.parent
# Arbitrary constant: serialises concurrent upgrades started by several replicas.
_MIGRATION_LOCK_ID = 0x5BE_0001


def schema_of(service: str) -> str:
    """The PostgreSQL schema a service owns (gateway's is ``auth``)."""
    return "auth" if service == "gateway" else service


def alembic_config(service: str, url: str) -> Config:
    """An Alembic config for one service, built in code (no alembic.ini to keep in sync)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_SERVICES_DIR / service / "migrations"))
    cfg.attributes["url"] = url
    cfg.attributes["schema"] = schema_of(service)
    return cfg


def upgrade(service: str, url: str, revision: str = "head") -> None:
    """Apply a service's migrations up to ``revision``."""
    command.upgrade(alembic_config(service, url), revision)


def upgrade_all(url: str) -> None:
    """Apply every service's migrations, in dependency order (ingest first)."""
    for service in SERVICES:
        upgrade(service, url)


def is_up_to_date(service: str, url: str) -> bool:
    """True when the database is at the service's head revision."""
    cfg = alembic_config(service, url)
    heads = set(ScriptDirectory.from_config(cfg).get_heads())
    with get_engine(url).connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table_schema": schema_of(service)})
        return set(ctx.get_current_heads()) == heads


def run_env(metadata: MetaData) -> None:
    """Body of every service's ``migrations/env.py``: online migrations in the service schema."""
    cfg = context.config
    schema = cfg.attributes["schema"]
    engine = get_engine(cfg.attributes["url"])
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK_ID})
        try:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            conn.commit()
            context.configure(
                connection=conn,
                target_metadata=metadata,
                version_table_schema=schema,
                include_schemas=True,
                include_name=lambda name, type_, _parent: type_ != "schema" or name == schema,
                transaction_per_migration=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            conn.commit()
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK_ID})
            conn.commit()
