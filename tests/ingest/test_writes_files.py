"""CSV and XLSX imports: format by content, header checks, row numbers, time zones, limits."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.ingest import uploads
from services.ingest.models import Quarantine, Reading, Site, Telemetry, Weather
from tests.ingest.conftest import make_equipment, make_site

T0 = datetime(2024, 3, 1, tzinfo=UTC)
H = timedelta(hours=1)


def upload(client: TestClient, path: str, content: bytes, name: str = "rows.csv", **params: Any):
    return client.post(
        path, files={"file": (name, content, "application/octet-stream")}, params=params
    )


def readings_of(session: Session, site: Site) -> list[Reading]:
    return list(
        session.scalars(select(Reading).where(Reading.site_id == site.id).order_by(Reading.ts))
    )


def xlsx(rows: list[list[Any]]) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def test_import_readings_csv_good_and_bad_rows_with_line_numbers(
    client: TestClient, session: Session
) -> None:
    site = make_site(session)
    csv = (
        "site,ts,consumption_kwh,production_kwh,interval_s\n"
        f"{site.code},2024-03-01T00:00:00+00:00,10.5,1,3600\n"  # line 2
        f"{site.code},2024-03-01T01:00:00+00:00,-3,1,3600\n"  # line 3: negative
        "\n"  # line 4: blank, skipped but counted like a spreadsheet does
        f"{site.code},2024-03-01T02:00:00,4,1,3600\n"  # line 5: no timezone
        f"{site.code},2024-03-01T03:00:00Z,abc,,\n"  # line 6: not a number
        f"GHOST,2024-03-01T04:00:00Z,1,,\n"  # line 7: unknown site
        f"{site.code},2024-03-01T05:00:00+01:00,7,,900\n"  # line 8
    )

    r = upload(client, "/v1/readings/import", csv.encode())

    assert r.status_code == 200, r.text
    result = r.json()
    assert (result["received"], result["accepted"], result["quarantined"]) == (6, 2, 4)
    reasons = {x["row"]: x["reason"] for x in result["rejected"]}
    assert sorted(reasons) == [3, 5, 6, 7]
    assert reasons[3].startswith("consumption_kwh: Input should be greater than or equal to 0")
    assert reasons[5].startswith("ts: timestamp has no timezone")
    assert reasons[6].startswith("consumption_kwh: Input should be a valid number")
    assert reasons[7] == "unknown site 'GHOST'"
    stored = readings_of(session, site)
    assert [(s.ts, s.consumption_kwh, s.interval_s, s.source) for s in stored] == [
        (T0, 10.5, 3600, "import"),
        (T0 + 4 * H, 7.0, 900, "import"),
    ]
    kept = session.scalars(
        select(Quarantine)
        .where(Quarantine.batch_id == result["batch_id"])
        .order_by(Quarantine.row_number)
    ).all()
    assert kept[0].payload == {
        "site": site.code,
        "ts": "2024-03-01T01:00:00+00:00",
        "consumption_kwh": "-3",
        "production_kwh": "1",
        "interval_s": "3600",
    }


def test_import_readings_csv_semicolons_decimal_commas_and_bom(
    client: TestClient, session: Session
) -> None:
    site = make_site(session)
    csv = f"\ufeffSite;TS;Consumption_kWh\n{site.code};2024-03-01T00:00:00Z;12,5\n"

    r = upload(client, "/v1/readings/import", csv.encode())

    assert r.status_code == 200, r.text
    assert [s.consumption_kwh for s in readings_of(session, site)] == [12.5]


def test_import_readings_csv_timezone_reads_naive_timestamps(
    client: TestClient, session: Session
) -> None:
    site = make_site(session)
    csv = (
        "site,ts,consumption_kwh\n"
        f"{site.code},2024-07-01 12:00,1\n"  # naive: read in Europe/Paris (UTC+2 in July)
        f"{site.code},2024-07-01T12:00Z,2\n"
    )

    r = upload(client, "/v1/readings/import", csv.encode(), timezone="Europe/Paris")

    assert r.status_code == 200 and r.json()["accepted"] == 2, r.text
    assert [s.ts for s in readings_of(session, site)] == [
        datetime(2024, 7, 1, 10, tzinfo=UTC),
        datetime(2024, 7, 1, 12, tzinfo=UTC),
    ]


def test_import_readings_unknown_timezone_422(client: TestClient) -> None:
    r = upload(client, "/v1/readings/import", b"site,ts,consumption_kwh\n", timezone="Mars/Base")

    assert r.status_code == 422


def test_import_readings_csv_resent_stored_once(client: TestClient, session: Session) -> None:
    site = make_site(session)
    lines = [f"{site.code},{(T0 + i * H).isoformat()},{i}" for i in range(150)]
    csv = ("site,ts,consumption_kwh\n" + "\n".join(lines)).encode()

    upload(client, "/v1/readings/import", csv)
    r = upload(client, "/v1/readings/import", csv)

    assert r.status_code == 200 and r.json()["accepted"] == 150
    assert len(readings_of(session, site)) == 150


def test_import_readings_csv_many_chunks(
    client: TestClient, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = make_site(session)
    monkeypatch.setattr(uploads, "CHUNK_ROWS", 100)
    lines = [f"{site.code},{(T0 + i * H).isoformat()},{i % 7}" for i in range(1_050)]
    lines[700] = f"{site.code},{T0.isoformat()},-1"  # line 702, in the 8th chunk
    csv = ("site,ts,consumption_kwh\n" + "\n".join(lines)).encode()

    r = upload(client, "/v1/readings/import", csv)

    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1_049
    assert [x["row"] for x in r.json()["rejected"]] == [702]
    assert len(readings_of(session, site)) == 1_049


def test_import_readings_xlsx_with_timezone(client: TestClient, session: Session) -> None:
    site = make_site(session)
    content = xlsx(
        [
            ["site", "ts", "consumption_kwh", "production_kwh"],
            [site.code, datetime(2024, 1, 15, 8, 0), 3.5, 0],
            [site.code, "2024-01-15T09:00:00+00:00", 4, 1.25],
            [],
            [site.code, datetime(2024, 1, 15, 10, 0), -2, 0],  # row 5
            [site.code, datetime(2024, 1, 15, 11, 0), True, 0],  # row 6: TRUE is not kWh
        ]
    )

    r = upload(client, "/v1/readings/import", content, "data.xlsx", timezone="Europe/Paris")

    assert r.status_code == 200, r.text
    assert [x["row"] for x in r.json()["rejected"]] == [5, 6]
    assert [(s.ts, s.consumption_kwh) for s in readings_of(session, site)] == [
        (datetime(2024, 1, 15, 8, tzinfo=ZoneInfo("Europe/Paris")), 3.5),
        (datetime(2024, 1, 15, 9, tzinfo=UTC), 4.0),
    ]


def test_import_readings_xlsx_naive_dates_without_timezone_quarantined(
    client: TestClient, session: Session
) -> None:
    site = make_site(session)
    content = xlsx([["site", "ts", "consumption_kwh"], [site.code, datetime(2024, 1, 15, 8), 1]])

    r = upload(client, "/v1/readings/import", content, "data.csv")  # the name does not matter

    assert r.status_code == 200
    assert r.json()["rejected"][0]["row"] == 2
    assert r.json()["rejected"][0]["reason"].startswith("ts: timestamp has no timezone")


@pytest.mark.parametrize(
    "content",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00",
        b"PK\x03\x04 this is not really a zip",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1 legacy xls",
        "site,ts,consumption_kwh\nSITE,2024-03-01T00:00Z,1\nÉté".encode("latin-1"),
    ],
    ids=["png", "fake-zip", "xls", "latin-1"],
)
def test_import_readings_unsupported_file_415(client: TestClient, content: bytes) -> None:
    r = upload(client, "/v1/readings/import", content)

    assert r.status_code == 415, r.text
    assert r.json()["error"] == "UnsupportedMediaType"


def test_import_readings_not_multipart_415(client: TestClient) -> None:
    r = client.post(
        "/v1/readings/import", content=b"site,ts\n", headers={"Content-Type": "text/csv"}
    )

    assert r.status_code == 415


def test_import_readings_no_file_field_422(client: TestClient) -> None:
    r = client.post("/v1/readings/import", files={"other": ("a.csv", b"x")})

    assert r.status_code == 422


def test_import_readings_empty_file_422(client: TestClient) -> None:
    r = upload(client, "/v1/readings/import", b"")

    assert r.status_code == 422 and "empty" in r.json()["detail"]


def test_import_readings_missing_column_422_names_it(client: TestClient) -> None:
    r = upload(client, "/v1/readings/import", b"site,ts,production_kwh\nA,2024-03-01T00:00Z,1\n")

    assert r.status_code == 422
    assert r.json()["missing_columns"] == ["consumption_kwh"]
    assert "consumption_kwh" in r.json()["detail"]


def test_import_readings_unknown_column_422_names_it(client: TestClient) -> None:
    r = upload(client, "/v1/readings/import", b"site,ts,consumption_kwh,colour\n")

    assert r.status_code == 422 and r.json()["unknown_columns"] == ["colour"]


def test_import_readings_over_upload_limit_413(client: TestClient) -> None:
    client.app.state.settings.ingest_max_upload_mb = 1  # type: ignore[attr-defined]

    r = upload(client, "/v1/readings/import", b"site,ts,consumption_kwh\n" + b"x" * 2**20)

    assert r.status_code == 413


def test_import_readings_invalid_utf8_late_in_file_415(
    client: TestClient, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = make_site(session)
    monkeypatch.setattr(uploads, "CHUNK_ROWS", 10)
    good = "".join(f"{site.code},{(T0 + i * H).isoformat()},1\n" for i in range(5_000))
    content = ("site,ts,consumption_kwh\n" + good).encode() + b"\xff\xfe,bad,1\n"

    r = upload(client, "/v1/readings/import", content)

    assert r.status_code == 415
    assert "UTF-8" in r.json()["detail"]


def test_import_telemetry_and_weather_csv(client: TestClient, session: Session) -> None:
    site = make_site(session)
    pump = make_equipment(session, site=site)
    telemetry = (
        "equipment,ts,pressure_bar\n"
        f"{pump.code},2024-03-01T00:00Z,4.5\n"
        f"{pump.code},2024-03-01T01:00Z,\n"  # line 3: no sensor value
    )
    weather = f"site,ts,temperature_c,is_forecast\n{site.code},2024-03-01T00:00Z,8.5,false\n"

    t = upload(client, "/v1/telemetry/import", telemetry.encode())
    w = upload(client, "/v1/weather/import", weather.encode())

    assert t.status_code == 200 and w.status_code == 200, (t.text, w.text)
    assert t.json()["accepted"] == 1 and t.json()["rejected"][0]["row"] == 3
    assert session.scalar(select(func.count()).select_from(Telemetry)) == 1
    [stored] = session.scalars(select(Weather).where(Weather.site_id == site.id))
    assert (stored.temperature_c, stored.is_forecast, stored.source) == (8.5, False, "import")


def test_import_readings_key_taken_in_a_late_chunk_stored_once(
    client: TestClient, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = make_site(session)
    other = make_site(session)
    monkeypatch.setattr(uploads, "CHUNK_ROWS", 100)
    client.post(
        "/v1/readings/batch",
        json=[
            {"site": site.code, "ts": (T0 + i * H).isoformat(), "consumption_kwh": 1.0,
             "source": "import"}
            for i in range(250, 260, 2)  # rows of the first site in the file below
        ],
    )  # fmt: skip
    # The second site first appears in the third chunk: its code is looked up mid-import.
    lines = [
        f"{site.code if i < 200 else other.code if i % 2 else site.code},"
        f"{(T0 + i * H).isoformat()},{i}"
        for i in range(300)
    ]
    csv = ("site,ts,consumption_kwh\n" + "\n".join(lines)).encode()

    r = upload(client, "/v1/readings/import", csv)

    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 300 and r.json()["quarantined"] == 0
    stored = readings_of(session, site) + readings_of(session, other)
    assert len(stored) == 300
    assert {s.consumption_kwh for s in stored if s.ts == T0 + 252 * H} == {252.0}


def test_import_readings_damaged_xlsx_sheet_415(client: TestClient) -> None:
    good = xlsx([["site", "ts", "consumption_kwh"], ["S", "2024-03-01T00:00:00Z", 1]])
    source, damaged = zipfile.ZipFile(io.BytesIO(good)), io.BytesIO()
    with zipfile.ZipFile(damaged, "w") as out:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.startswith("xl/worksheets/"):
                data = data[: len(data) // 2]  # the sheet's XML cut in the middle
            out.writestr(item, data)

    r = upload(client, "/v1/readings/import", damaged.getvalue(), "data.xlsx")

    assert r.status_code == 415, r.text


def test_import_readings_csv_field_over_size_limit_422(client: TestClient) -> None:
    content = b'site,ts,consumption_kwh\nS,"' + b"x" * 200_000 + b'",1\n'

    r = upload(client, "/v1/readings/import", content)

    assert r.status_code == 422 and "line 2" in r.json()["detail"]
