"""The ingest write path against real PostgreSQL: upserts, quarantine, limits, metrics."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.ingest.models import (
    AnomalyLabel,
    EquipmentEvent,
    Quarantine,
    Reading,
    Site,
    Telemetry,
    Weather,
)
from tests.ingest.conftest import make_equipment, make_site

T0 = datetime(2024, 3, 1, tzinfo=UTC)
H = timedelta(hours=1)
ZONE_PLUS2 = timezone(timedelta(hours=2))
JSON = {"Content-Type": "application/json"}


def iso(ts: datetime) -> str:
    return ts.isoformat()


def reading(site: Site | str, ts: datetime, consumption: Any = 10.0, **extra: Any) -> dict:
    code = site if isinstance(site, str) else site.code
    return {"site": code, "ts": iso(ts), "consumption_kwh": consumption, **extra}


def readings_of(session: Session, site: Site) -> list[Reading]:
    return list(
        session.scalars(select(Reading).where(Reading.site_id == site.id).order_by(Reading.ts))
    )


def quarantined(session: Session, batch_id: str) -> list[Quarantine]:
    return list(
        session.scalars(
            select(Quarantine)
            .where(Quarantine.batch_id == batch_id)
            .order_by(Quarantine.row_number)
        )
    )


def count(session: Session, model: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


# --- single rows ---------------------------------------------------------------------------


def test_write_reading_single_row_stored(client: TestClient, session: Session) -> None:
    site = make_site(session)

    r = client.post("/v1/readings", json=reading(site, T0, 12.5, production_kwh=3.0))

    assert r.status_code == 201, r.text
    assert r.json()["accepted"] == 1 and r.json()["quarantined"] == 0
    [row] = readings_of(session, site)
    assert (row.ts, row.consumption_kwh, row.production_kwh, row.source) == (
        T0,
        12.5,
        3.0,
        "real",
    )


def test_write_reading_single_bad_row_422_and_kept_in_quarantine(
    client: TestClient, session: Session
) -> None:
    site = make_site(session)

    r = client.post("/v1/readings", json=reading(site, T0, -1.0))

    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "RowRejected"
    assert "consumption_kwh" in body["detail"] and "greater than or equal to 0" in body["detail"]
    [q] = quarantined(session, body["batch_id"])
    assert q.kind == "reading" and q.row_number == 0
    assert q.payload == reading(site, T0, -1.0)
    assert readings_of(session, site) == []


def test_write_reading_single_unknown_site_quarantined(
    client: TestClient, session: Session
) -> None:
    r = client.post("/v1/readings", json=reading("NOPE", T0))

    assert r.status_code == 422
    assert r.json()["detail"] == "unknown site 'NOPE'"
    assert quarantined(session, r.json()["batch_id"])[0].reason == "unknown site 'NOPE'"


def test_write_reading_single_array_422_not_quarantined(
    client: TestClient, session: Session
) -> None:
    site = make_site(session)
    before = count(session, Quarantine)

    r = client.post("/v1/readings", json=[reading(site, T0)])

    assert r.status_code == 422 and "/batch" in r.json()["detail"]
    assert count(session, Quarantine) == before


# --- JSON batches --------------------------------------------------------------------------


def test_write_readings_batch_good_rows_stored(client: TestClient, session: Session) -> None:
    site = make_site(session)
    rows = [reading(site, T0 + i * H, 10.0 + i, interval_s=3600) for i in range(200)]

    r = client.post("/v1/readings/batch", json=rows)

    assert r.status_code == 200, r.text
    assert r.json() | {"batch_id": None} == {
        "batch_id": None,
        "received": 200,
        "accepted": 200,
        "quarantined": 0,
        "rejected": [],
        "rejected_truncated": 0,
        "duplicates": 0,
    }
    stored = readings_of(session, site)
    assert [s.consumption_kwh for s in stored] == [10.0 + i for i in range(200)]


def test_write_readings_batch_resent_stored_once_last_write_wins(
    client: TestClient, session: Session
) -> None:
    site = make_site(session)
    rows = [reading(site, T0 + i * H, 1.0) for i in range(300)]
    client.post("/v1/readings/batch", json=rows)
    first = readings_of(session, site)[0].received_at

    changed = [reading(site, T0 + i * H, 2.0) for i in range(300)]
    r = client.post("/v1/readings/batch", json=changed)

    assert r.status_code == 200 and r.json()["accepted"] == 300
    stored = readings_of(session, site)
    assert len(stored) == 300
    assert {s.consumption_kwh for s in stored} == {2.0}
    assert stored[0].received_at >= first


def test_write_readings_small_batch_resent_stored_once(
    client: TestClient, session: Session
) -> None:
    site = make_site(session)
    rows = [reading(site, T0 + i * H, 1.0) for i in range(3)]

    client.post("/v1/readings/batch", json=rows)
    r = client.post("/v1/readings/batch", json=rows)

    assert r.status_code == 200
    assert len(readings_of(session, site)) == 3


def test_write_readings_batch_mixed_rows_good_stored_bad_quarantined(
    client: TestClient, session: Session
) -> None:
    site = make_site(session)
    good = [reading(site, T0 + i * H) for i in range(100)]
    bad: list[tuple[Any, str]] = [
        (reading(site, T0 - H, -5.0), "consumption_kwh: Input should be greater than or equal"),
        (reading(site, T0 - 2 * H, 1e9), "consumption_kwh: Input should be less than or equal"),
        (reading(site, datetime(2150, 1, 1, tzinfo=UTC)), "ts: timestamp must lie between"),
        (
            {"site": site.code, "ts": "2024-03-01T00:00:00", "consumption_kwh": 1.0},
            "ts: timestamp has no timezone",
        ),
        (reading("NOWHERE", T0), "unknown site 'NOWHERE'"),
        (reading(site, T0 - 3 * H, "12"), "consumption_kwh: Input should be a valid number"),
        (reading(site, T0 - 4 * H, 1.0, colour="red"), "colour: unknown field"),
        (42, "row is not a JSON object"),
        (reading(site, T0 - 5 * H, 1.0, interval_s=5), "interval_s: Input should be greater"),
    ]
    # Bad rows spread through the batch, at known positions.
    rows: list[Any] = list(good)
    positions = []
    for n, (row, _) in enumerate(bad):
        positions.append(n * 11 + 3)
        rows.insert(n * 11 + 3, row)

    r = client.post("/v1/readings/batch", json=rows)

    assert r.status_code == 200, r.text
    result = r.json()
    assert (result["received"], result["accepted"], result["quarantined"]) == (109, 100, 9)
    assert [x["row"] for x in result["rejected"]] == positions
    for listed, (_, reason) in zip(result["rejected"], bad, strict=True):
        assert listed["reason"].startswith(reason), listed
    stored = readings_of(session, site)
    assert [s.ts for s in stored] == [T0 + i * H for i in range(100)]
    kept = quarantined(session, result["batch_id"])
    assert [q.row_number for q in kept] == positions
    assert [q.payload for q in kept] == [row for row, _ in bad]
    assert all(q.kind == "reading" for q in kept)


def test_write_readings_batch_same_key_twice_last_one_stored(
    client: TestClient, session: Session
) -> None:
    site = make_site(session)
    rows = [reading(site, T0 + i * H, 1.0) for i in range(100)]
    rows.append(reading(site, T0 + 5 * H, 99.0))
    # The same instant written with another offset is the same key.
    rows.append(reading(site, (T0 + 7 * H).astimezone(ZONE_PLUS2), 77.0))

    r = client.post("/v1/readings/batch", json=rows)

    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 102 and r.json()["duplicates"] == 2
    stored = {s.ts: s.consumption_kwh for s in readings_of(session, site)}
    assert len(stored) == 100
    assert stored[T0 + 5 * H] == 99.0 and stored[T0 + 7 * H] == 77.0


def test_write_readings_batch_same_key_twice_in_small_batch_last_one_stored(
    client: TestClient, session: Session
) -> None:
    site = make_site(session)

    r = client.post("/v1/readings/batch", json=[reading(site, T0, 1.0), reading(site, T0, 2.0)])

    assert r.status_code == 200 and r.json()["duplicates"] == 1
    assert [s.consumption_kwh for s in readings_of(session, site)] == [2.0]


def test_write_readings_batch_late_out_of_order_reading_accepted(
    client: TestClient, session: Session
) -> None:
    site = make_site(session)
    client.post("/v1/readings/batch", json=[reading(site, T0 + i * H) for i in range(10, 100)])

    r = client.post("/v1/readings/batch", json=[reading(site, T0 + 3 * H, 5.0)])

    assert r.status_code == 200 and r.json()["accepted"] == 1
    assert readings_of(session, site)[0].ts == T0 + 3 * H


def test_write_readings_batch_production_over_capacity_quarantined(
    client: TestClient, session: Session
) -> None:
    site = make_site(session, capacity_kw=100.0)
    rows = [
        reading(site, T0, 1.0, production_kwh=120.0),  # 100 kW x 1 h x 1.2: the limit
        reading(site, T0 + H, 1.0, production_kwh=121.0),
        reading(site, T0 + 2 * H, 1.0, production_kwh=40.0, interval_s=900),  # limit 30
    ]

    r = client.post("/v1/readings/batch", json=rows)

    rejected = r.json()["rejected"]
    assert [x["row"] for x in rejected] == [1, 2]
    assert "can produce" in rejected[0]["reason"] and "capacity 100 kW" in rejected[0]["reason"]
    assert [s.ts for s in readings_of(session, site)] == [T0]


def test_write_readings_batch_malformed_json_400(client: TestClient) -> None:
    r = client.post(
        "/v1/readings/batch",
        content=b'[{"site": "A",',
        headers={"Content-Type": "application/json"},
    )

    assert r.status_code == 400
    assert r.json()["error"] == "MalformedBody"


@pytest.mark.parametrize("body", [b'{"site": "A"}', b'"rows"', b"3", b"null"])
def test_write_readings_batch_not_an_array_422(client: TestClient, body: bytes) -> None:
    r = client.post("/v1/readings/batch", content=body, headers=JSON)

    assert r.status_code == 422
    assert "JSON array" in r.json()["detail"]


def test_write_readings_batch_empty_array_stores_nothing(client: TestClient) -> None:
    r = client.post("/v1/readings/batch", json=[])

    assert r.status_code == 200 and r.json()["received"] == 0


def test_write_readings_batch_over_row_limit_413(client: TestClient, session: Session) -> None:
    site = make_site(session)
    client.app.state.settings.ingest_max_batch_rows = 10  # type: ignore[attr-defined]

    r = client.post("/v1/readings/batch", json=[reading(site, T0 + i * H) for i in range(11)])

    assert r.status_code == 413
    assert "at most 10" in r.json()["detail"]
    assert readings_of(session, site) == []


def test_write_readings_batch_over_body_limit_413(client: TestClient) -> None:
    client.app.state.settings.ingest_max_upload_mb = 1  # type: ignore[attr-defined]

    r = client.post(
        "/v1/readings/batch",
        content=b"[" + b" " * (2**20) + b"]",
        headers={"Content-Type": "application/json"},
    )

    assert r.status_code == 413


def test_write_readings_batch_form_content_type_415(client: TestClient) -> None:
    r = client.post("/v1/readings/batch", data={"site": "A"})

    assert r.status_code == 415


def test_write_readings_batch_needs_operator(client: TestClient, auth: Any) -> None:
    r = client.post("/v1/readings/batch", json=[], headers=auth("viewer"))

    assert r.status_code == 403


def test_write_readings_batch_hostile_payloads_quarantined_without_5xx(
    client: TestClient, session: Session
) -> None:
    site = make_site(session)
    body = (
        b'[{"site": "%s", "ts": "2024-03-01T00:00:00Z", "consumption_kwh": NaN},'
        b' {"site": "%s", "ts": "2024-03-01T01:00:00Z", "consumption_kwh": 1e999},'
        b' {"site": "bad\\u0000code", "ts": "2024-03-01T00:00:00Z", "consumption_kwh": 1},'
        b' [1, 2], "text", null, {}]'
    ) % (site.code.encode(), site.code.encode())

    r = client.post(
        "/v1/readings/batch", content=body, headers={"Content-Type": "application/json"}
    )

    assert r.status_code == 200, r.text
    assert r.json()["quarantined"] == 7
    payloads = [q.payload for q in quarantined(session, r.json()["batch_id"])]
    assert payloads[0]["consumption_kwh"] == "nan"
    assert payloads[3:6] == [[1, 2], "text", None]


# --- telemetry, weather, events, labels ----------------------------------------------------


def test_write_telemetry_batch_stored_and_bad_rows_quarantined(
    client: TestClient, session: Session
) -> None:
    site = make_site(session)
    pump = make_equipment(session, site=site)
    rows = [
        {"equipment": pump.code, "ts": iso(T0 + i * H), "vibration_mm_s": 2.0, "flow_m3h": 30.0}
        for i in range(80)
    ]
    rows[10]["vibration_mm_s"] = 1e9
    rows[20] = {"equipment": pump.code, "ts": iso(T0 + 20 * H)}  # no sensor value at all
    rows[30]["equipment"] = "GHOST"

    r = client.post("/v1/telemetry/batch", json=rows)

    assert r.status_code == 200, r.text
    rejected = r.json()["rejected"]
    assert [x["row"] for x in rejected] == [10, 20, 30]
    assert rejected[0]["reason"].startswith("vibration_mm_s: Input should be less than or equal")
    assert "at least one sensor value" in rejected[1]["reason"]
    assert rejected[2]["reason"] == "unknown equipment 'GHOST'"
    stored = session.scalar(
        select(func.count()).select_from(Telemetry).where(Telemetry.equipment_id == pump.id)
    )
    assert stored == 77


def test_write_weather_batch_forecast_ahead_accepted(client: TestClient, session: Session) -> None:
    site = make_site(session)
    tomorrow = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    rows = [
        {"site": site.code, "ts": iso(tomorrow + i * H), "temperature_c": 12.0, "is_forecast": True}
        for i in range(70)
    ]
    rows.append({"site": site.code, "ts": iso(T0), "temperature_c": 99.0})

    r = client.post("/v1/weather/batch", json=rows)

    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 70
    assert r.json()["rejected"][0]["reason"].startswith("temperature_c: Input should be less")
    forecast = session.scalar(
        select(func.count())
        .select_from(Weather)
        .where(Weather.site_id == site.id, Weather.is_forecast.is_(True))
    )
    assert forecast == 70


def test_write_equipment_events_upsert_description(client: TestClient, session: Session) -> None:
    site = make_site(session)
    pump = make_equipment(session, site=site)
    event = {"equipment": pump.code, "ts": iso(T0), "kind": "failure", "description": "seized"}

    first = client.post("/v1/equipment-events", json=event)
    again = client.post(
        "/v1/equipment-events/batch",
        json=[event | {"description": "bearing seized"}, event | {"kind": "repair"}],
    )

    assert first.status_code == 201
    assert again.status_code == 200 and again.json()["quarantined"] == 1
    assert again.json()["rejected"][0]["reason"].startswith("kind: Input should be")
    [stored] = session.scalars(select(EquipmentEvent).where(EquipmentEvent.equipment_id == pump.id))
    assert stored.description == "bearing seized"


def test_write_equipment_event_unknown_equipment_422(client: TestClient) -> None:
    r = client.post(
        "/v1/equipment-events", json={"equipment": "GHOST", "ts": iso(T0), "kind": "inspection"}
    )

    assert r.status_code == 422 and r.json()["detail"] == "unknown equipment 'GHOST'"


def test_write_anomaly_labels_batch_upsert_and_order_checked(
    client: TestClient, session: Session
) -> None:
    site = make_site(session)
    label = {
        "site": site.code,
        "kind": "spike",
        "start_ts": iso(T0),
        "end_ts": iso(T0 + H),
        "magnitude": 2.0,
    }

    client.post("/v1/anomaly-labels/batch", json=[label])
    r = client.post(
        "/v1/anomaly-labels/batch",
        json=[label | {"magnitude": 3.0}, label | {"start_ts": iso(T0 + 2 * H)}],
    )

    assert r.status_code == 200, r.text
    assert r.json()["rejected"][0]["reason"] == "end_ts must be after start_ts"
    [stored] = session.scalars(select(AnomalyLabel).where(AnomalyLabel.site_id == site.id))
    assert stored.magnitude == 3.0


# --- metrics and OpenAPI -------------------------------------------------------------------


def _sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_write_metrics_counters_move(client: TestClient, session: Session) -> None:
    site = make_site(session)
    accepted = {"kind": "reading", "outcome": "accepted"}
    rejected = {"kind": "reading", "outcome": "quarantined"}
    before = (
        _sample("ingest_rows_total", accepted),
        _sample("ingest_rows_total", rejected),
        _sample("ingest_batch_rows_count", {"kind": "reading", "format": "json"}),
    )

    client.post("/v1/readings/batch", json=[reading(site, T0), reading(site, T0 + H, -1.0)])

    after = (
        _sample("ingest_rows_total", accepted),
        _sample("ingest_rows_total", rejected),
        _sample("ingest_batch_rows_count", {"kind": "reading", "format": "json"}),
    )
    assert [a - b for a, b in zip(after, before, strict=True)] == [1.0, 1.0, 1.0]
    assert "ingest_rows_total" in client.get("/metrics").text


def test_write_openapi_documents_raw_bodies(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    batch = paths["/v1/readings/batch"]["post"]["requestBody"]["content"]["application/json"]
    upload = paths["/v1/readings/import"]["post"]["requestBody"]["content"]
    assert batch["schema"]["type"] == "array"
    assert "consumption_kwh" in batch["schema"]["items"]["properties"]
    assert "file" in upload["multipart/form-data"]["schema"]["properties"]


def test_write_body_json_roundtrip_of_payload_helpers() -> None:
    from services.ingest.bulk import storable_json

    value = {"a\x00": [float("inf"), "x\ud800", datetime(2024, 1, 1)]}

    assert json.loads(json.dumps(storable_json(value))) == {
        "a\ufffd": ["inf", "x?", "2024-01-01T00:00:00"]
    }
