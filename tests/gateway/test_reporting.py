"""The ``reporting`` schema for Power BI: a login in role ``spe_reporting`` reads the views
and nothing else, and writes nothing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Json

from services.forecast.config import ForecastSettings
from services.forecast.main import build_app as build_forecast
from services.forecast.ml.features import target_hours
from tests.conftest import TEST_SECRET, token_for
from tests.gateway.conftest import (
    STACK_END,
    STACK_SITE,
    STACK_START,
    STACK_TZ,
    Stack,
    stack_headers,
)

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
        "daily_balance", "forecast_vs_actual", "hourly_balance", "hourly_balance_by_source",
        "incidents", "maintenance_risk", "sites",
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


# --- forecast versus actual, maintenance risk (forecast tables, gateway migration 0005) -----

FC_DAYS = (date(2026, 3, 27), date(2026, 3, 29))  # day one has simulated rows too; DST day


@pytest.fixture(scope="module")
def forecast_rows(stack: Stack) -> Iterator[None]:
    """Issued forecasts (a superseded, a chosen and a too-late issue per day) and two
    maintenance runs, committed in the stack's database as the forecast service writes them."""
    paris = ZoneInfo(STACK_TZ)
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        run = conn.execute(
            "INSERT INTO forecast.model_run (site, kind, algorithm, status) "
            "VALUES (%s, 'load', 'test', 'succeeded') RETURNING id",
            (STACK_SITE,),
        ).fetchone()[0]  # type: ignore[index]
        for day in FC_DAYS:
            midnight = datetime.combine(day, datetime.min.time(), paris)
            issues = [
                (midnight - timedelta(hours=20), 1.0),
                (midnight, 2.0),  # 2.0: the last
                (midnight + timedelta(hours=1), 3.0),
            ]  # issued once the day began: not it
            hours = target_hours(day, STACK_TZ)
            for issued_at, scale in issues:
                fc = conn.execute(
                    "INSERT INTO forecast.forecast (site, kind, target_date, timezone, issued_at,"
                    " model_run_id, served, method) VALUES (%s, 'load', %s, %s, %s, %s, 'model',"
                    " 'test') RETURNING id",
                    (STACK_SITE, day, STACK_TZ, issued_at, run),
                ).fetchone()[0]  # type: ignore[index]
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO forecast.forecast_point (forecast_id, ts, yhat, lower, upper,"
                        " baseline_yhat, model_yhat) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                        [(fc, ts.to_pydatetime(), scale * (40 + i), scale * (40 + i) - 15,
                          scale * (40 + i) + 15, 45.0, scale * (40 + i))
                         for i, ts in enumerate(hours)],
                    )  # fmt: skip
        for n_run, probabilities in enumerate(([0.2, 0.1], [0.9, 0.4, None])):
            mrun = conn.execute(
                "INSERT INTO forecast.model_run (site, kind, algorithm, status) "
                "VALUES (NULL, 'maintenance', 'test', 'succeeded') RETURNING id"
            ).fetchone()[0]  # type: ignore[index]
            for k, p in enumerate(probabilities):
                factors = [
                    {"factor": f"factor {j} of E{k}", "contribution": 0.3 - 0.1 * j, "value": j,
                     "feature": f"f{j}"}
                    for j in range(3 if p else 0)
                ]  # fmt: skip
                conn.execute(
                    "INSERT INTO forecast.maintenance_prediction (model_run_id, equipment, site,"
                    " name, kind, as_of, horizon_days, probability, status, top_factors, message)"
                    " VALUES (%s, %s, %s, %s, 'pump', now(), 7, %s, %s, %s, %s)",
                    (mrun, f"E{k}", STACK_SITE, f"pump {k}", p, "ok" if p else "no_telemetry",
                     Json(factors), "" if p else f"run {n_run}: no telemetry"),
                )  # fmt: skip
    yield
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM forecast.model_run")  # cascades to forecasts and predictions


@pytest.fixture(scope="module")
def forecast_api(stack: Stack, forecast_rows: None) -> Iterator[TestClient]:
    """The forecast service in-process on the stack's database, reading the stack's ingest."""
    settings = ForecastSettings(
        database_url=stack.database_url, environment="test", secret_key=TEST_SECRET,
        log_json=False, log_level="WARNING", ingest_url=stack.ingest.url,
        forecast_job_poll_s=0, forecast_schedule_enabled=False,
    )  # fmt: skip
    with TestClient(build_forecast(settings)) as client:
        client.headers["Authorization"] = f"Bearer {token_for('viewer')}"
        yield client


def test_forecast_vs_actual_view_gives_the_apis_figures(
    reporting: psycopg.Connection, forecast_api: TestClient
) -> None:
    for day in FC_DAYS:
        hours = target_hours(day, STACK_TZ)
        start, end = hours[0].to_pydatetime(), (hours[-1] + timedelta(hours=1)).to_pydatetime()
        api = forecast_api.get(
            f"/v1/sites/{STACK_SITE}/forecast/vs-actual",
            params={"start": start.isoformat(), "end": end.isoformat()},
        )
        assert api.status_code == 200, api.text
        rows = reporting.execute(
            "SELECT hour_start, forecast_kwh, lower_kwh, upper_kwh, baseline_kwh, actual_kwh,"
            " error_kwh, abs_pct_error, within_interval, issued_at, served, target_date"
            " FROM reporting.forecast_vs_actual WHERE site = %s AND kind = 'load'"
            " AND hour_start >= %s AND hour_start < %s ORDER BY hour_start",
            (STACK_SITE, start, end),
        ).fetchall()

        items = api.json()["items"]
        assert len(rows) == len(items) == len(hours)  # 23 on the DST day
        for row, item in zip(rows, items, strict=True):
            assert row[0] == datetime.fromisoformat(item["ts"])
            assert row[1:5] == (item["forecast_kwh"], item["lower_kwh"], item["upper_kwh"],
                                item["baseline_kwh"])  # fmt: skip
            assert row[5] == pytest.approx(item["actual_kwh"], abs=1e-9)
            assert float(row[6]) == pytest.approx(item["forecast_kwh"] - item["actual_kwh"])
            assert float(row[7]) == pytest.approx(
                100 * abs(item["forecast_kwh"] - item["actual_kwh"]) / item["actual_kwh"], abs=1e-3
            )
            assert row[8] == (item["lower_kwh"] <= item["actual_kwh"] <= item["upper_kwh"])
            assert row[9] == datetime.fromisoformat(item["issued_at"])
            assert row[10] == item["served"] and row[11] == day
        assert rows[0][1] == 2.0 * 40  # the last issue made before the day began
        assert max(r[5] for r in rows) < 999  # the real readings, not the simulated ones


def test_maintenance_risk_view_gives_the_apis_ranking(
    reporting: psycopg.Connection, forecast_api: TestClient
) -> None:
    api = forecast_api.get("/v1/maintenance/risk").json()

    rows = reporting.execute(
        "SELECT equipment, probability, risk_rank, factor_1, factor_1_weight, factor_3,"
        " model_run_id, status, message FROM reporting.maintenance_risk"
        " ORDER BY risk_rank NULLS LAST, equipment"
    ).fetchall()

    scored = [r for r in rows if r[1] is not None]
    expected = [(i["equipment"], i["probability"]) for i in api["items"]]
    assert [(r[0], r[1]) for r in scored] == expected
    assert [r[2] for r in scored] == [1, 2]
    first = api["items"][0]
    assert (scored[0][3], scored[0][4], scored[0][5]) == (
        first["factors"][0]["name"],
        first["factors"][0]["weight"],
        first["factors"][2]["name"],
    )
    assert {r[6] for r in rows} == {first["model_run_id"]}  # the latest run only
    assert [(r[0], r[7], r[8]) for r in rows if r[1] is None] == [
        (u["equipment"], u["status"], u["message"]) for u in api["unscored"]
    ]


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM reporting.maintenance_risk",
        "UPDATE reporting.forecast_vs_actual SET forecast_kwh = 0",
        "SELECT * FROM forecast.forecast LIMIT 1",
        "INSERT INTO forecast.maintenance_prediction (model_run_id, equipment, as_of, "
        "horizon_days, status) VALUES (1, 'X', now(), 7, 'ok')",
    ],
)
def test_reporting_login_cannot_write_forecast_data(
    statement: str, reporting: psycopg.Connection, forecast_rows: None
) -> None:
    with pytest.raises((psycopg.errors.InsufficientPrivilege,
                        psycopg.errors.ObjectNotInPrerequisiteState)):  # fmt: skip
        reporting.execute(statement)
