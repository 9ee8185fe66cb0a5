"""The ingest read path against real PostgreSQL: buckets in the site's zone, sources, balance."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, TypeAdapter
from sqlalchemy import insert
from sqlalchemy.orm import Session

from services.ingest import reads
from services.ingest.models import (
    AnomalyLabel,
    EquipmentEvent,
    Quarantine,
    Reading,
    Site,
    Telemetry,
    Weather,
)
from services.ingest.read_schemas import (
    AnomalyLabelOut,
    BalanceOut,
    EquipmentEventsOut,
    QuarantinePage,
    ReadingsOut,
    TelemetryOut,
    WeatherOut,
)
from tests.ingest.conftest import make_equipment, make_site

H = timedelta(hours=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def add_readings(
    session: Session,
    site: Site,
    rows: list[tuple[datetime, float, float]],
    *,
    source: str = "real",
    interval_s: int = 3600,
) -> None:
    """Insert (ts, consumption, production) rows directly, bypassing the write path."""
    session.execute(
        insert(Reading),
        [
            {
                "site_id": site.id,
                "ts": ts,
                "source": source,
                "consumption_kwh": c,
                "production_kwh": p,
                "interval_s": interval_s,
            }
            for ts, c, p in rows
        ],
    )
    session.flush()


def hourly(start: datetime, hours: int, consumption: float = 1.0, production: float = 0.0):
    return [(start + i * H, consumption, production) for i in range(hours)]


def get_readings(client: TestClient, site: Site, start: str, end: str, **params: str) -> Any:
    r = client.get(f"/v1/sites/{site.code}/readings", params={"start": start, "end": end, **params})
    assert r.status_code == 200, r.text
    return r.json()


def conforms(model: type[BaseModel], body: Any) -> None:
    """The body has exactly the documented types (strict: "6" is not an int)."""
    model.model_validate_json(json.dumps(body), strict=True)


def by_ts(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["ts"]: item for item in body["items"]}


# --- buckets ----------------------------------------------------------------------------------


def test_readings_hour_sums_quarter_hour_readings(client: TestClient, session: Session) -> None:
    site = make_site(session, timezone="UTC")
    quarters = [
        (utc(2026, 5, 1, 10) + i * timedelta(minutes=15), 0.25 * (i + 1), 0.1) for i in range(8)
    ]
    add_readings(session, site, quarters, interval_s=900)

    body = get_readings(client, site, "2026-05-01T00:00:00Z", "2026-05-02T00:00:00Z")

    assert body["resolution"] == "hour"
    assert body["items"] == [
        {
            "ts": "2026-05-01T10:00:00+00:00",
            "consumption_kwh": 2.5,
            "production_kwh": 0.4,
            "balance_kwh": -2.1,
            "n_readings": 4,
        },
        {
            "ts": "2026-05-01T11:00:00+00:00",
            "consumption_kwh": 6.5,
            "production_kwh": 0.4,
            "balance_kwh": -6.1,
            "n_readings": 4,
        },
    ]


def test_readings_raw_returns_each_reading_in_site_offset(
    client: TestClient, session: Session
) -> None:
    site = make_site(session, timezone="Europe/Paris")
    add_readings(session, site, [(utc(2026, 5, 1, 10), 1.5, 0.5), (utc(2026, 5, 1, 10, 30), 2, 0)])

    body = get_readings(
        client, site, "2026-05-01T00:00:00Z", "2026-05-02T00:00:00Z", resolution="raw"
    )

    assert [(i["ts"], i["consumption_kwh"], i["balance_kwh"]) for i in body["items"]] == [
        ("2026-05-01T12:00:00+02:00", 1.5, -1.0),
        ("2026-05-01T12:30:00+02:00", 2.0, -2.0),
    ]
    conforms(ReadingsOut, body)


def test_readings_day_bucket_of_paris_spring_forward_sums_23_hours(
    client: TestClient, session: Session
) -> None:
    site = make_site(session, timezone="Europe/Paris")
    # 27 Mar 23:00 UTC = 28 Mar 00:00 CET, through 30 Mar 21:00 UTC = 30 Mar 23:00 CEST.
    add_readings(session, site, hourly(utc(2026, 3, 27, 23), 71, consumption=2.0, production=1.0))

    body = get_readings(
        client, site, "2026-03-28T00:00:00+01:00", "2026-03-31T00:00:00+02:00", resolution="day"
    )

    assert [(i["ts"], i["n_readings"], i["consumption_kwh"]) for i in body["items"]] == [
        ("2026-03-28T00:00:00+01:00", 24, 48.0),
        ("2026-03-29T00:00:00+01:00", 23, 46.0),
        ("2026-03-30T00:00:00+02:00", 24, 48.0),
    ]
    assert by_ts(body)["2026-03-29T00:00:00+01:00"]["balance_kwh"] == -23.0


def test_readings_day_bucket_of_paris_fall_back_sums_25_hours(
    client: TestClient, session: Session
) -> None:
    site = make_site(session, timezone="Europe/Paris")
    # 23 Oct 22:00 UTC = 24 Oct 00:00 CEST, through 26 Oct 22:00 UTC = 26 Oct 23:00 CET.
    add_readings(session, site, hourly(utc(2026, 10, 23, 22), 73, consumption=1.5))

    body = get_readings(
        client, site, "2026-10-24T00:00:00+02:00", "2026-10-27T00:00:00+01:00", resolution="day"
    )

    assert [(i["ts"], i["n_readings"], i["consumption_kwh"]) for i in body["items"]] == [
        ("2026-10-24T00:00:00+02:00", 24, 36.0),
        ("2026-10-25T00:00:00+02:00", 25, 37.5),
        ("2026-10-26T00:00:00+01:00", 24, 36.0),
    ]


def test_readings_day_buckets_in_half_hour_zone(client: TestClient, session: Session) -> None:
    site = make_site(session, timezone="Asia/Kolkata")
    rows = [(utc(2026, 1, 14) + i * H, float(i), 0.0) for i in range(72)]
    add_readings(session, site, rows)
    kolkata = ZoneInfo("Asia/Kolkata")
    expected: dict[date, float] = {}
    for ts, c, _ in rows:
        day = ts.astimezone(kolkata).date()
        expected[day] = expected.get(day, 0.0) + c

    body = get_readings(
        client, site, "2026-01-14T00:00:00Z", "2026-01-17T00:00:00Z", resolution="day"
    )

    got = {datetime.fromisoformat(i["ts"]): i["consumption_kwh"] for i in body["items"]}
    assert list(got)[1].isoformat() == "2026-01-15T00:00:00+05:30"
    assert {ts.date(): c for ts, c in got.items()} == expected


def test_readings_week_buckets_start_on_monday(client: TestClient, session: Session) -> None:
    site = make_site(session, timezone="Europe/Paris")
    # Sunday 1 March 2026 00:00 CET through Monday 9 March 23:00 CET.
    add_readings(session, site, hourly(utc(2026, 2, 28, 23), 9 * 24))

    body = get_readings(
        client, site, "2026-02-01T00:00:00+01:00", "2026-04-01T00:00:00+02:00", resolution="week"
    )

    assert [(i["ts"], i["n_readings"]) for i in body["items"]] == [
        ("2026-02-23T00:00:00+01:00", 24),
        ("2026-03-02T00:00:00+01:00", 168),
        ("2026-03-09T00:00:00+01:00", 24),
    ]


def test_readings_month_buckets_follow_site_calendar(client: TestClient, session: Session) -> None:
    site = make_site(session, timezone="Europe/Paris")
    # 22:30 UTC is still 31 January in Paris; 23:30 UTC is already 1 February.
    add_readings(
        session, site, [(utc(2026, 1, 31, 22, 30), 1.0, 0.0), (utc(2026, 1, 31, 23, 30), 2.0, 3.0)]
    )

    body = get_readings(
        client, site, "2026-01-01T00:00:00+01:00", "2026-03-01T00:00:00+01:00", resolution="month"
    )

    assert [(i["ts"], i["consumption_kwh"], i["production_kwh"]) for i in body["items"]] == [
        ("2026-01-01T00:00:00+01:00", 1.0, 0.0),
        ("2026-02-01T00:00:00+01:00", 2.0, 3.0),
    ]


def test_readings_range_is_start_inclusive_end_exclusive(
    client: TestClient, session: Session
) -> None:
    site = make_site(session, timezone="UTC")
    add_readings(session, site, hourly(utc(2026, 5, 1, 0), 4))

    body = get_readings(client, site, "2026-05-01T01:00:00Z", "2026-05-01T03:00:00Z")

    assert [i["ts"] for i in body["items"]] == [
        "2026-05-01T01:00:00+00:00",
        "2026-05-01T02:00:00+00:00",
    ]


def test_readings_of_site_without_data_is_empty_list(client: TestClient, session: Session) -> None:
    site = make_site(session)

    body = get_readings(client, site, "2026-05-01T00:00:00Z", "2026-05-02T00:00:00Z")

    assert body["items"] == []
    assert body["site"] == site.code


# --- sources ----------------------------------------------------------------------------------


def three_source_site(session: Session) -> Site:
    """10:00 measured by all three sources, 11:00 by import and simulator, 12:00 simulated only."""
    site = make_site(session, timezone="UTC")
    t = utc(2026, 5, 1, 10)
    add_readings(session, site, [(t, 1.0, 0.0)], source="real")
    add_readings(session, site, [(t, 10.0, 0.0), (t + H, 20.0, 0.0)], source="import")
    add_readings(
        session, site, [(t, 100.0, 0.0), (t + H, 200.0, 0.0), (t + 2 * H, 300.0, 0.0)],
        source="simulated",
    )  # fmt: skip
    return site


def test_readings_without_source_take_one_per_interval_by_precedence(
    client: TestClient, session: Session
) -> None:
    site = three_source_site(session)

    body = get_readings(
        client, site, "2026-05-01T00:00:00Z", "2026-05-02T00:00:00Z", resolution="day"
    )

    assert body["source"] is None
    assert body["items"][0]["consumption_kwh"] == 1.0 + 20.0 + 300.0
    assert body["items"][0]["n_readings"] == 3


@pytest.mark.parametrize(
    ("source", "total", "n"), [("real", 1.0, 1), ("import", 30.0, 2), ("simulated", 600.0, 3)]
)
def test_readings_with_source_use_only_that_source(
    client: TestClient, session: Session, source: str, total: float, n: int
) -> None:
    site = three_source_site(session)

    body = get_readings(
        client, site, "2026-05-01T00:00:00Z", "2026-05-02T00:00:00Z", resolution="day",
        source=source,
    )  # fmt: skip

    assert (body["items"][0]["consumption_kwh"], body["items"][0]["n_readings"]) == (total, n)


def test_balance_applies_source_precedence_too(client: TestClient, session: Session) -> None:
    site = three_source_site(session)

    r = client.get(
        f"/v1/sites/{site.code}/balance",
        params={"start": "2026-05-01T00:00:00Z", "end": "2026-05-02T00:00:00Z"},
    )

    assert r.json()["consumed_kwh"] == 321.0


def test_readings_late_reading_changes_the_day_total(client: TestClient, session: Session) -> None:
    site = make_site(session, timezone="UTC")
    add_readings(session, site, hourly(utc(2026, 5, 1, 12), 12))
    before = get_readings(
        client, site, "2026-05-01T00:00:00Z", "2026-05-02T00:00:00Z", resolution="day"
    )

    # Arrives after the later hours were read: an earlier hour of the same day.
    add_readings(session, site, [(utc(2026, 5, 1, 3), 5.0, 0.0)])
    after = get_readings(
        client, site, "2026-05-01T00:00:00Z", "2026-05-02T00:00:00Z", resolution="day"
    )

    assert before["items"][0]["consumption_kwh"] == 12.0
    assert after["items"][0]["consumption_kwh"] == 17.0
    assert after["items"][0]["n_readings"] == 13


# --- balance ----------------------------------------------------------------------------------


def test_balance_hand_computed_example(client: TestClient, session: Session) -> None:
    site = make_site(session, timezone="Europe/Paris")
    t = utc(2026, 6, 1, 8)  # 10:00 in Paris (CEST)
    add_readings(
        session,
        site,
        [
            (t, 5.0, 2.0),  # deficit 3
            (t + H, 1.0, 4.0),  # surplus
            (t + 2 * H, 6.0, 1.0),  # deficit 5: the peak, 12:00 Paris
            (t + 3 * H, 2.0, 2.0),  # even: not a deficit hour
        ],
    )
    # Two half-hours in one hour: a deficit then a larger surplus; the hour nets a surplus.
    add_readings(session, site, [(t + 4 * H, 2.0, 0.0), (t + 4.5 * H, 0.0, 3.0)], interval_s=1800)

    r = client.get(
        f"/v1/sites/{site.code}/balance",
        params={"start": "2026-06-01T00:00:00+02:00", "end": "2026-06-02T00:00:00+02:00"},
    )

    assert r.status_code == 200, r.text
    body = r.json()
    conforms(BalanceOut, body)
    assert body["consumed_kwh"] == 16.0
    assert body["produced_kwh"] == 12.0
    assert body["coverage_rate"] == pytest.approx(12.0 / 16.0)
    assert body["deficit_kwh"] == 8.0
    assert body["deficit_hours"] == 2
    assert body["peak_deficit_hour"] == "2026-06-01T12:00:00+02:00"
    assert body["peak_deficit_kwh"] == 5.0
    assert body["n_readings"] == 6
    assert body["first_ts"] == "2026-06-01T10:00:00+02:00"
    assert body["last_ts"] == "2026-06-01T14:30:00+02:00"


def test_balance_without_consumption_has_null_coverage(
    client: TestClient, session: Session
) -> None:
    site = make_site(session, timezone="UTC")
    add_readings(session, site, [(utc(2026, 6, 1, 8), 0.0, 4.0)])

    body = client.get(
        f"/v1/sites/{site.code}/balance",
        params={"start": "2026-06-01T00:00:00Z", "end": "2026-06-02T00:00:00Z"},
    ).json()

    assert (body["coverage_rate"], body["deficit_hours"], body["peak_deficit_hour"]) == (
        None,
        0,
        None,
    )


def test_balance_of_empty_range_is_zero(client: TestClient, session: Session) -> None:
    site = make_site(session)

    body = client.get(
        f"/v1/sites/{site.code}/balance",
        params={"start": "2026-06-01T00:00:00Z", "end": "2026-06-02T00:00:00Z"},
    ).json()

    assert (body["consumed_kwh"], body["n_readings"], body["first_ts"]) == (0.0, 0, None)


def test_readings_non_finite_stored_value_is_null_not_invalid_json(
    client: TestClient, session: Session
) -> None:
    site = make_site(session, timezone="UTC")
    # The write path refuses it, but the column accepts it: the read must still be valid JSON.
    add_readings(session, site, [(utc(2026, 5, 1, 10), float("inf"), 1.0)])

    r = client.get(
        f"/v1/sites/{site.code}/readings",
        params={"start": "2026-05-01T00:00:00Z", "end": "2026-05-02T00:00:00Z"},
    )

    assert r.status_code == 200
    assert r.json()["items"][0]["consumption_kwh"] is None
    assert r.json()["items"][0]["production_kwh"] == 1.0


# --- input errors -----------------------------------------------------------------------------


def test_readings_naive_datetime_is_422_asking_for_a_timezone(
    client: TestClient, session: Session
) -> None:
    site = make_site(session)

    r = client.get(
        f"/v1/sites/{site.code}/readings",
        params={"start": "2026-05-01T00:00:00", "end": "2026-05-02T00:00:00Z"},
    )

    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["query", "start"]
    assert "timezone is required" in r.json()["detail"]


def test_readings_unencoded_plus_in_offset_is_understood(
    client: TestClient, session: Session
) -> None:
    site = make_site(session, timezone="UTC")
    add_readings(session, site, [(utc(2026, 5, 1, 10), 1.0, 0.0)])

    # A raw '+' in a query string decodes to a space.
    r = client.get(
        f"/v1/sites/{site.code}/readings?start=2026-05-01T12:00:00+02:00"
        "&end=2026-05-01T13:00:00+02:00"
    )

    assert r.status_code == 200, r.text
    assert r.json()["items"][0]["ts"] == "2026-05-01T10:00:00+00:00"


@pytest.mark.parametrize("path", ["readings", "balance"])
def test_end_before_start_is_422(client: TestClient, session: Session, path: str) -> None:
    site = make_site(session)

    r = client.get(
        f"/v1/sites/{site.code}/{path}",
        params={"start": "2026-05-02T00:00:00Z", "end": "2026-05-01T00:00:00Z"},
    )

    assert r.status_code == 422
    assert r.json()["error"] == "BadInput"
    assert r.json()["errors"][0]["loc"] == ["query", "end"]


@pytest.mark.parametrize("path", ["readings", "balance", "weather"])
def test_unknown_site_is_404(client: TestClient, path: str) -> None:
    r = client.get(
        f"/v1/sites/NOPE/{path}",
        params={"start": "2026-05-01T00:00:00Z", "end": "2026-05-02T00:00:00Z"},
    )

    assert r.status_code == 404
    assert r.json()["error"] == "SiteNotFound"


def test_readings_hourly_over_three_years_is_422_naming_a_coarser_resolution(
    client: TestClient, session: Session
) -> None:
    site = make_site(session)

    r = client.get(
        f"/v1/sites/{site.code}/readings",
        params={"start": "2020-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
    )

    assert r.status_code == 422
    assert "resolution=day" in r.json()["detail"]


def test_readings_raw_over_row_cap_is_422(
    client: TestClient, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = make_site(session, timezone="UTC")
    add_readings(session, site, hourly(utc(2026, 5, 1), 4))
    monkeypatch.setattr(reads, "MAX_RAW_ROWS", 3)

    raw = client.get(
        f"/v1/sites/{site.code}/readings",
        params={
            "start": "2026-05-01T00:00:00Z",
            "end": "2026-05-02T00:00:00Z",
            "resolution": "raw",
        },
    )
    daily = client.get(
        f"/v1/sites/{site.code}/readings",
        params={
            "start": "2026-05-01T00:00:00Z",
            "end": "2026-05-02T00:00:00Z",
            "resolution": "day",
        },
    )

    assert raw.status_code == 422
    assert "resolution=hour" in raw.json()["detail"]
    assert daily.status_code == 200
    assert daily.json()["items"][0]["n_readings"] == 4


@pytest.mark.parametrize(
    "params",
    [
        {"start": "yesterday", "end": "2026-05-02T00:00:00Z"},
        {"start": "2026-05-01T00:00:00Z"},
        {"start": "2026-05-01T00:00:00Z", "end": "2026-05-02T00:00:00Z", "resolution": "year"},
        {"start": "2026-05-01T00:00:00Z", "end": "2026-05-02T00:00:00Z", "source": "meter"},
        {"start": "0001-01-01T00:00:00+14:00", "end": "9999-12-31T23:59:59-14:00"},
        {"start": "2026-05-01T00:00:00Z", "end": "2026-05-01T00:00:00Z"},
        {"start": "2026-05-01T00:00:00+25:00", "end": "2026-05-02T00:00:00Z"},
        {"start": "1e30", "end": "2026-05-02T00:00:00Z"},
        {"start": "1800-01-01T00:00:00Z", "end": "1800-01-02T00:00:00Z", "resolution": "raw"},
        {"start": "1950-01-01T00:00:00Z", "end": "2150-01-01T00:00:00Z", "resolution": "month"},
    ],
)
def test_readings_bad_query_is_a_4xx_in_the_error_shape(
    client: TestClient, session: Session, params: dict[str, str]
) -> None:
    site = make_site(session)

    r = client.get(f"/v1/sites/{site.code}/readings", params=params)

    assert r.status_code == 422, r.text
    assert set(r.json()) >= {"error", "detail"}


def test_readings_need_a_token(client: TestClient, session: Session) -> None:
    site = make_site(session)

    r = client.get(
        f"/v1/sites/{site.code}/readings",
        params={"start": "2026-05-01T00:00:00Z", "end": "2026-05-02T00:00:00Z"},
        headers={"Authorization": ""},
    )

    assert r.status_code == 401


# --- quarantine -------------------------------------------------------------------------------


def add_quarantine(session: Session, n: int, kind: str) -> list[int]:
    batch = uuid.uuid4()
    ids = []
    for i in range(n):
        row = Quarantine(
            batch_id=batch, kind=kind, row_number=i, payload={"row": i}, reason=f"bad {i}"
        )
        session.add(row)
        session.flush()
        ids.append(row.id)
    return ids


def test_quarantine_pages_newest_first_until_next_before_id_is_null(
    client: TestClient, session: Session
) -> None:
    kind = f"q{uuid.uuid4().hex[:8]}"
    ids = add_quarantine(session, 5, kind)
    add_quarantine(session, 2, "other")

    pages, before = [], None
    while True:
        params: dict[str, Any] = {"kind": kind, "limit": 2}
        if before is not None:
            params["before_id"] = before
        body = client.get("/v1/quarantine", params=params).json()
        conforms(QuarantinePage, body)
        pages.append([item["id"] for item in body["items"]])
        before = body["next_before_id"]
        if before is None:
            break

    assert pages == [[ids[4], ids[3]], [ids[2], ids[1]], [ids[0]]]


def test_quarantine_item_carries_payload_and_reason(client: TestClient, session: Session) -> None:
    kind = f"q{uuid.uuid4().hex[:8]}"
    add_quarantine(session, 1, kind)

    item = client.get("/v1/quarantine", params={"kind": kind}).json()["items"][0]

    assert (item["kind"], item["payload"], item["reason"]) == (kind, {"row": 0}, "bad 0")
    uuid.UUID(item["batch_id"])


def test_quarantine_limit_out_of_bounds_is_422(client: TestClient) -> None:
    assert client.get("/v1/quarantine", params={"limit": 0}).status_code == 422
    assert client.get("/v1/quarantine", params={"before_id": 2**70}).status_code == 422


# --- telemetry, weather, anomaly labels -------------------------------------------------------


def test_telemetry_raw_samples_and_hourly_avg_max(client: TestClient, session: Session) -> None:
    site = make_site(session, timezone="Europe/Paris")
    eq = make_equipment(session, site=site)
    t = utc(2026, 5, 1, 8)
    session.execute(
        insert(Telemetry),
        [
            {"equipment_id": eq.id, "ts": t, "source": "real", "flow_m3h": 10.0,
             "pressure_bar": 2.0, "vibration_mm_s": None, "temperature_c": 40.0},
            {"equipment_id": eq.id, "ts": t + timedelta(minutes=30), "source": "real",
             "flow_m3h": 20.0, "pressure_bar": 4.0, "vibration_mm_s": 1.5, "temperature_c": None},
            {"equipment_id": eq.id, "ts": t + H, "source": "real", "flow_m3h": 5.0,
             "pressure_bar": None, "vibration_mm_s": float("nan"), "temperature_c": None},
        ],
    )  # fmt: skip
    params = {"start": "2026-05-01T00:00:00Z", "end": "2026-05-02T00:00:00Z"}

    raw = client.get(f"/v1/equipment/{eq.code}/telemetry", params=params).json()
    hour = client.get(
        f"/v1/equipment/{eq.code}/telemetry", params={**params, "resolution": "hour"}
    ).json()

    conforms(TelemetryOut, raw)
    conforms(TelemetryOut, hour)
    assert [(s["ts"], s["flow_m3h"], s["vibration_mm_s"]) for s in raw["items"]] == [
        ("2026-05-01T10:00:00+02:00", 10.0, None),
        ("2026-05-01T10:30:00+02:00", 20.0, 1.5),
        ("2026-05-01T11:00:00+02:00", 5.0, None),
    ]
    first = hour["items"][0]
    assert (first["ts"], first["n_samples"]) == ("2026-05-01T10:00:00+02:00", 2)
    assert (first["flow_m3h_avg"], first["flow_m3h_max"]) == (15.0, 20.0)
    assert (first["pressure_bar_avg"], first["temperature_c_max"]) == (3.0, 40.0)
    assert hour["items"][1]["pressure_bar_avg"] is None


def test_telemetry_unknown_equipment_is_404(client: TestClient) -> None:
    r = client.get(
        "/v1/equipment/NOPE/telemetry",
        params={"start": "2026-05-01T00:00:00Z", "end": "2026-05-02T00:00:00Z"},
    )

    assert r.status_code == 404
    assert r.json()["error"] == "EquipmentNotFound"


def test_equipment_events_in_range_by_time_in_site_zone(
    client: TestClient, session: Session
) -> None:
    site = make_site(session, timezone="Europe/Paris")
    eq, other = make_equipment(session, site=site), make_equipment(session, site=site)
    t = utc(2026, 5, 1, 8)
    session.execute(
        insert(EquipmentEvent),
        [
            {"equipment_id": eq.id, "ts": t + H, "kind": "failure",
             "description": "bearing seized", "source": "real"},
            {"equipment_id": eq.id, "ts": t, "kind": "maintenance",
             "description": "", "source": "simulated"},
            {"equipment_id": eq.id, "ts": utc(2026, 5, 2), "kind": "inspection",
             "description": "after the range", "source": "real"},
            {"equipment_id": other.id, "ts": t, "kind": "failure",
             "description": "another pump", "source": "real"},
        ],
    )  # fmt: skip
    params = {"start": "2026-05-01T00:00:00Z", "end": "2026-05-02T00:00:00Z"}

    r = client.get(f"/v1/equipment/{eq.code}/events", params=params)

    assert r.status_code == 200, r.text
    body = r.json()
    conforms(EquipmentEventsOut, body)
    assert (body["equipment"], body["start"]) == (eq.code, "2026-05-01T02:00:00+02:00")
    assert body["items"] == [
        {"ts": "2026-05-01T10:00:00+02:00", "kind": "maintenance", "description": "",
         "source": "simulated"},
        {"ts": "2026-05-01T11:00:00+02:00", "kind": "failure",
         "description": "bearing seized", "source": "real"},
    ]  # fmt: skip


def test_equipment_events_unknown_equipment_is_404(client: TestClient) -> None:
    r = client.get(
        "/v1/equipment/NOPE/events",
        params={"start": "2026-05-01T00:00:00Z", "end": "2026-05-02T00:00:00Z"},
    )

    assert r.status_code == 404
    assert r.json()["error"] == "EquipmentNotFound"


def test_equipment_events_naive_datetime_is_422(client: TestClient, session: Session) -> None:
    eq = make_equipment(session, site=make_site(session))

    r = client.get(
        f"/v1/equipment/{eq.code}/events",
        params={"start": "2026-05-01T00:00:00Z", "end": "2026-05-02T00:00:00"},
    )

    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["query", "end"]


def test_equipment_events_end_before_start_is_422(client: TestClient, session: Session) -> None:
    eq = make_equipment(session, site=make_site(session))

    r = client.get(
        f"/v1/equipment/{eq.code}/events",
        params={"start": "2026-05-02T00:00:00Z", "end": "2026-05-01T00:00:00Z"},
    )

    assert r.status_code == 422
    assert "end must be after start" in r.json()["detail"]


def test_weather_rows_one_source_per_hour(client: TestClient, session: Session) -> None:
    site = make_site(session, timezone="UTC")
    t = utc(2026, 5, 1, 10)
    session.execute(
        insert(Weather),
        [
            {"site_id": site.id, "ts": t, "source": "simulated", "temperature_c": 10.0,
             "irradiance_w_m2": 100.0, "wind_speed_m_s": 1.0, "is_forecast": False},
            {"site_id": site.id, "ts": t, "source": "real", "temperature_c": 12.0,
             "irradiance_w_m2": 150.0, "wind_speed_m_s": 2.0, "is_forecast": False},
            {"site_id": site.id, "ts": t + H, "source": "real", "temperature_c": 13.0,
             "irradiance_w_m2": None, "wind_speed_m_s": None, "is_forecast": True},
        ],
    )  # fmt: skip
    params = {"start": "2026-05-01T00:00:00Z", "end": "2026-05-02T00:00:00Z"}

    merged = client.get(f"/v1/sites/{site.code}/weather", params=params).json()
    simulated = client.get(
        f"/v1/sites/{site.code}/weather", params={**params, "source": "simulated"}
    ).json()

    conforms(WeatherOut, merged)
    assert [(w["ts"], w["source"], w["temperature_c"]) for w in merged["items"]] == [
        ("2026-05-01T10:00:00+00:00", "real", 12.0),
        ("2026-05-01T11:00:00+00:00", "real", 13.0),
    ]
    assert merged["items"][1]["is_forecast"] is True
    assert [w["temperature_c"] for w in simulated["items"]] == [10.0]


def test_anomaly_labels_overlapping_range_of_one_site(client: TestClient, session: Session) -> None:
    site, other = make_site(session, timezone="Europe/Paris"), make_site(session)
    t = utc(2026, 5, 1, 10)
    session.execute(
        insert(AnomalyLabel),
        [
            {"site_id": site.id, "kind": "spike", "start_ts": t, "end_ts": t + H,
             "magnitude": 3.0, "source": "simulated"},
            {"site_id": site.id, "kind": "drop", "start_ts": t + 5 * H, "end_ts": t + 6 * H,
             "magnitude": 0.5, "source": "simulated"},
            {"site_id": other.id, "kind": "stuck", "start_ts": t, "end_ts": t + H,
             "magnitude": 0.0, "source": "simulated"},
        ],
    )  # fmt: skip

    r = client.get(
        "/v1/anomaly-labels",
        params={"site": site.code, "start": "2026-05-01T10:30:00Z", "end": "2026-05-01T12:00:00Z"},
    )

    assert r.status_code == 200, r.text
    TypeAdapter(list[AnomalyLabelOut]).validate_json(r.content, strict=True)
    assert r.json() == [
        {
            "site": site.code,
            "kind": "spike",
            "start_ts": "2026-05-01T12:00:00+02:00",
            "end_ts": "2026-05-01T13:00:00+02:00",
            "magnitude": 3.0,
            "source": "simulated",
        }
    ]


def test_anomaly_labels_unknown_site_is_404(client: TestClient) -> None:
    assert client.get("/v1/anomaly-labels", params={"site": "NOPE"}).status_code == 404
