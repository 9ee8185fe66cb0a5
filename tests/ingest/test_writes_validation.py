"""The fast batch validator agrees with the row models, and no input makes a write answer 5xx."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, TypeAdapter, ValidationError, field_validator
from sqlalchemy.orm import Session

from services.ingest.validation import FastValidator, judge_json, reason_of
from services.ingest.writes import EQUIPMENT_EVENT, READING, TELEMETRY, WEATHER, Kind
from tests.ingest.conftest import make_equipment, make_site

NOW = datetime.now(UTC).replace(microsecond=0)
TS = "2024-03-01T00:00:00+00:00"

# Rows probing every field and bound of each kind; the model's verdict is the reference.
CASES: dict[str, list[Any]] = {
    "reading": [
        {"site": "S1", "ts": TS, "consumption_kwh": 1.5},
        {"site": "S1", "ts": TS, "consumption_kwh": 0, "production_kwh": 1e6, "interval_s": 60},
        {"site": "S1", "ts": TS, "consumption_kwh": 1, "source": "simulated"},
        {"site": " S1 ", "ts": TS, "consumption_kwh": 1},
        {"site": "", "ts": TS, "consumption_kwh": 1},
        {"site": "S 1", "ts": TS, "consumption_kwh": 1},
        {"site": "S" * 33, "ts": TS, "consumption_kwh": 1},
        {"site": 7, "ts": TS, "consumption_kwh": 1},
        {"site": "S1", "ts": "1999-12-31T23:59:59Z", "consumption_kwh": 1},
        {"site": "S1", "ts": (NOW + timedelta(hours=1)).isoformat(), "consumption_kwh": 1},
        {"site": "S1", "ts": (NOW + timedelta(hours=3)).isoformat(), "consumption_kwh": 1},
        {"site": "S1", "ts": "2024-03-01T00:00:00", "consumption_kwh": 1},
        {"site": "S1", "ts": 1709251200, "consumption_kwh": 1},
        {"site": "S1", "ts": "yesterday", "consumption_kwh": 1},
        {"site": "S1", "ts": TS, "consumption_kwh": -0.001},
        {"site": "S1", "ts": TS, "consumption_kwh": 1e6 + 1},
        {"site": "S1", "ts": TS, "consumption_kwh": "1"},
        {"site": "S1", "ts": TS, "consumption_kwh": True},
        {"site": "S1", "ts": TS, "consumption_kwh": None},
        {"site": "S1", "ts": TS},
        {"site": "S1", "ts": TS, "consumption_kwh": 1, "interval_s": 59},
        {"site": "S1", "ts": TS, "consumption_kwh": 1, "interval_s": 900.0},
        {"site": "S1", "ts": TS, "consumption_kwh": 1, "source": "other"},
        {"site": "S1", "ts": TS, "consumption_kwh": 1, "extra": 1},
        [],
        "row",
    ],
    "telemetry": [
        {"equipment": "P1", "ts": TS, "flow_m3h": 1.0},
        {"equipment": "P1", "ts": TS, "temperature_c": -60, "pressure_bar": None},
        {"equipment": "P1", "ts": TS},
        {"equipment": "P1", "ts": TS, "flow_m3h": None, "vibration_mm_s": None},
        {"equipment": "P1", "ts": TS, "vibration_mm_s": 100.01},
        {"equipment": "P1", "ts": TS, "temperature_c": -61},
        {"equipment": "P1", "ts": "2024-03-01T00:00:00", "flow_m3h": 1.0},
    ],
    "weather": [
        {"site": "S1", "ts": (NOW + timedelta(days=10)).isoformat(), "temperature_c": 5},
        {"site": "S1", "ts": (NOW + timedelta(days=17)).isoformat(), "temperature_c": 5},
        {"site": "S1", "ts": TS, "irradiance_w_m2": 1500.5},
        {"site": "S1", "ts": TS, "is_forecast": "true"},
    ],
    "equipment_event": [
        {"equipment": "P1", "ts": TS, "kind": "failure"},
        {"equipment": "P1", "ts": TS, "kind": "explosion"},
        {"equipment": "P1", "ts": TS, "kind": "maintenance", "description": "x" * 2001},
    ],
}
KINDS: dict[str, Kind] = {k.name: k for k in (READING, TELEMETRY, WEATHER, EQUIPMENT_EVENT)}


def _model_verdict(kind: Kind, row: Any) -> str | None:
    try:
        kind.model.model_validate_json(json.dumps(row))
    except ValidationError as exc:
        return reason_of(exc)
    return None


@pytest.mark.parametrize(
    ("kind_name", "row"),
    [(k, row) for k, rows in CASES.items() for row in rows],
)
def test_fast_validator_batch_verdict_matches_model(kind_name: str, row: Any) -> None:
    kind = KINDS[kind_name]
    good = CASES[kind_name][0]
    body = json.dumps([good, row, good]).encode()

    judged, _ = judge_json(kind.fast, body, kind.suspect)

    expected = _model_verdict(kind, row)
    assert kind.fast.enabled
    if expected is None:
        assert list(judged.index) == [0, 1, 2] and judged.rejected == []
    else:
        assert list(judged.index) == [0, 2] and judged.rejected == [(1, expected)]


def test_fast_validator_stale_time_bound_rejection_rejudged_by_model() -> None:
    validator = FastValidator(READING.model, time_bounds=READING.fast.time_bounds)
    # A twin built an hour ago accepts only up to (an hour ago) + 2 h; the model up to now + 2 h.
    validator._adapter = TypeAdapter(list[validator._twin(NOW - timedelta(hours=1))])  # type: ignore[misc,arg-type]
    validator._built_at = float("inf")
    row = {"site": "S1", "ts": (NOW + timedelta(minutes=90)).isoformat(), "consumption_kwh": 1}

    judged, _ = judge_json(validator, json.dumps([row]).encode(), None)

    assert list(judged.index) == [0] and judged.rejected == []


def test_fast_validator_disabled_for_a_model_it_cannot_mirror() -> None:
    class Odd(BaseModel):
        value: int

        @field_validator("value")
        @classmethod
        def _even(cls, v: int) -> int:
            if v % 2:
                raise ValueError("must be even")
            return v

    validator = FastValidator(Odd, time_bounds={})

    judged, _ = judge_json(validator, b'[{"value": 2}, {"value": 3}]', None)

    assert not validator.enabled
    assert list(judged.index) == [0] and judged.rejected == [(1, "value: must be even")]


HOSTILE_BODIES = [
    b"",
    b"{",
    b"[" * 5000 + b"]" * 5000,
    b'[{"site": "\\ud800"}]',
    b'[{"ts": "' + b"9" * 10_000 + b'"}]',
    b'[{"site": "S", "ts": "2024-01-01T00:00:00+99:00", "consumption_kwh": 1}]',
    b'[{"site": "S", "ts": "2024-02-30T00:00:00Z", "consumption_kwh": 1}]',
    b'[{"site": "S", "interval_s": 99999999999999999999999999}]',
    b'[{"\\u0000": "\\u0000", "description": "a\\u0000b"}]',
    b"\xff\xfe\x00[",
    json.dumps([{"x": [[[[[[]]]]]]}]).encode(),
    b"[1e999999, -0.0, null, true]",
]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/readings",
        "/v1/readings/batch",
        "/v1/telemetry",
        "/v1/telemetry/batch",
        "/v1/weather/batch",
        "/v1/equipment-events",
        "/v1/equipment-events/batch",
        "/v1/anomaly-labels/batch",
    ],
)
def test_write_hostile_bodies_never_5xx(client: TestClient, path: str) -> None:
    statuses = [
        client.post(path, content=body, headers={"Content-Type": "application/json"}).status_code
        for body in HOSTILE_BODIES
    ]

    assert all(400 <= s < 500 or s in (200, 201) for s in statuses), statuses


def test_write_equipment_event_nul_in_description_stored_not_5xx(
    client: TestClient, session: Session
) -> None:
    pump = make_equipment(session, site=make_site(session))
    event = {"equipment": pump.code, "ts": TS, "kind": "inspection", "description": "a\x00b"}

    r = client.post("/v1/equipment-events", json=event)

    assert r.status_code == 201, r.text


def test_bulk_gc_raises_thresholds_while_in_use_and_restores_them() -> None:
    import gc

    from services.ingest import writes

    before = gc.get_threshold()

    with writes._bulk_gc():
        with writes._bulk_gc():  # a concurrent request
            inside = gc.get_threshold()
        still = gc.get_threshold()

    assert inside == still == writes._BULK_GC_THRESHOLD
    assert gc.get_threshold() == before
