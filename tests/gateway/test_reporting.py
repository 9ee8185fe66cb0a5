"""The ``reporting`` schema for Power BI: a login in role ``spe_reporting`` reads the views
and nothing else, and writes nothing."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from tests.gateway.conftest import STACK_END, STACK_SITE, STACK_START, Stack, stack_headers

pytestmark = pytest.mark.e2e
LOGIN = f"powerbi_test_{os.getpid()}"
PASSWORD = "reporting-test-password"


@pytest.fixture(scope="module")
def reporting(stack: Stack) -> Iterator[psycopg.Connection]:
    """A connection as a new login in role spe_reporting, made as docs/integrations.md says."""
    with psycopg.connect(stack.database_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE spe_reporting").format(
                sql.Identifier(LOGIN), sql.Literal(PASSWORD)
            )
        )
    params = conninfo_to_dict(stack.database_url) | {"user": LOGIN, "password": PASSWORD}
    try:
        with psycopg.connect(**params, autocommit=True) as conn:  # type: ignore[arg-type]
            yield conn
    finally:
        with psycopg.connect(stack.database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(LOGIN)))


def test_reporting_login_reads_the_views(
    reporting: psycopg.Connection, stack_gateway: TestClient
) -> None:
    # Arrange
    viewer = stack_headers(stack_gateway, "viewer")
    period = {"start": STACK_START, "end": STACK_END, "site": STACK_SITE}
    balance = stack_gateway.get(
        f"/api/v1/sites/{STACK_SITE}/balance",
        params={"start": STACK_START.isoformat(), "end": STACK_END.isoformat()},
        headers=viewer,
    ).json()

    # Act
    hourly = reporting.execute(
        "SELECT count(*), sum(consumption_kwh), sum(deficit_kwh), "
        "count(*) FILTER (WHERE deficit_kwh > 0) FROM reporting.hourly_balance "
        "WHERE site = %(site)s AND hour_start >= %(start)s AND hour_start < %(end)s",
        period,
    ).fetchone()
    daily = reporting.execute(
        "SELECT day, n_readings FROM reporting.daily_balance WHERE site = %(site)s ORDER BY day",
        period,
    ).fetchall()
    by_source = reporting.execute(
        "SELECT source, count(*) FROM reporting.hourly_balance_by_source "
        "WHERE site = %(site)s GROUP BY source ORDER BY source",
        period,
    ).fetchall()
    incidents = reporting.execute(
        "SELECT count(*) FROM reporting.incidents WHERE site = %(site)s", period
    ).fetchone()
    sites = reporting.execute("SELECT site, timezone FROM reporting.sites").fetchall()

    # Assert: the same figures as the API.
    assert hourly is not None and hourly[0] == balance["n_readings"] == 95
    assert hourly[1] == pytest.approx(balance["consumed_kwh"], abs=1e-6)
    assert hourly[2] == pytest.approx(balance["deficit_kwh"], abs=1e-6)
    assert hourly[3] == balance["deficit_hours"]
    assert [n for _, n in daily] == [24, 24, 23, 24]
    assert by_source == [("real", 95), ("simulated", 24)]
    assert incidents is not None and incidents[0] >= 1
    assert (STACK_SITE, "Europe/Paris") in sites


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO reporting.sites (site) VALUES ('X')",
        "INSERT INTO ingest.reading (site_id, ts, source, consumption_kwh, production_kwh) "
        "VALUES (1, now(), 'real', 1, 1)",
        "UPDATE ingest.site SET name = 'hacked'",
        "DELETE FROM alerts.incident",
        "TRUNCATE auth.audit_log",
        "SELECT * FROM auth.users",
        "SELECT * FROM auth.api_token",
        "SELECT * FROM ingest.reading LIMIT 1",
        "SELECT * FROM alerts.rule",
        "CREATE TABLE reporting.mine (x int)",
        "CREATE TABLE public.mine (x int)",
        "CREATE VIEW reporting.mine AS SELECT 1",
    ],
)
def test_reporting_login_cannot_write_or_read_elsewhere(
    statement: str, reporting: psycopg.Connection
) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        reporting.execute(statement)


def test_reporting_login_has_select_only_on_every_view(reporting: psycopg.Connection) -> None:
    views = [r[0] for r in reporting.execute(
        "SELECT table_name FROM information_schema.views WHERE table_schema = 'reporting'"
    ).fetchall()]  # fmt: skip

    rights = {
        (view, right): reporting.execute(
            "SELECT has_table_privilege(current_user, %s, %s)", (f"reporting.{view}", right)
        ).fetchone()[0]  # type: ignore[index]
        for view in views
        for right in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES")
    }

    assert sorted(views) == [
        "daily_balance", "hourly_balance", "hourly_balance_by_source", "incidents", "sites",
    ]  # fmt: skip
    assert {key for key, granted in rights.items() if granted} == {(v, "SELECT") for v in views}


@pytest.mark.parametrize(
    "statement",
    ["UPDATE reporting.hourly_balance SET consumption_kwh = 0", "DELETE FROM reporting.incidents"],
)
def test_reporting_aggregate_views_refuse_writes(
    statement: str, reporting: psycopg.Connection
) -> None:
    # Refused before any privilege check (not updatable); the test above covers the privilege.
    with pytest.raises((psycopg.errors.InsufficientPrivilege,
                        psycopg.errors.ObjectNotInPrerequisiteState)):  # fmt: skip
        reporting.execute(statement)
