"""Certified exports through the gateway, on a real ingest and alerts with known data."""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader

from services.gateway.export_data import windows
from services.gateway.reports import Table, dataset_sha256
from tests.gateway.conftest import STACK_END, STACK_SITE, STACK_START, Stack, stack_headers

pytestmark = pytest.mark.e2e
PERIOD = {"site": STACK_SITE, "start": STACK_START.isoformat(), "end": STACK_END.isoformat()}
HOURS = 95  # four local days, one of them 23 hours long (DST)


@pytest.fixture(scope="module")
def viewer(stack_gateway: TestClient) -> dict[str, str]:
    return stack_headers(stack_gateway, "viewer")


def _balance(client: TestClient, headers: dict[str, str], **extra: str) -> dict[str, Any]:
    r = client.get(
        f"/api/v1/sites/{STACK_SITE}/balance",
        params={"start": PERIOD["start"], "end": PERIOD["end"], **extra},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _split_csv(text: str) -> tuple[list[str], list[str], list[str], list[str]]:
    """(leading comments, header + data lines, trailer comments, data lines), newlines kept."""
    lines = text.splitlines(keepends=True)
    lead = [line for line in lines[: next(i for i, x in enumerate(lines) if x[0] != "#")]]
    body = [line for line in lines[len(lead) :] if not line.startswith("#")]
    trailer = [line for line in lines[len(lead) :] if line.startswith("#")]
    return lead, body, trailer, body[1:]


def _trailer(trailer: list[str], key: str) -> str:
    return next(line.split(": ", 1)[1].strip() for line in trailer if line.startswith(f"# {key}:"))


# --- CSV ---------------------------------------------------------------------------------------


def test_readings_csv_checksum_recomputes_and_rows_match_ingest(
    stack_gateway: TestClient, viewer: dict[str, str]
) -> None:
    # Act
    r = stack_gateway.get("/api/v1/exports/readings.csv", params=PERIOD, headers=viewer)
    readings = stack_gateway.get(
        f"/api/v1/sites/{STACK_SITE}/readings", params={**PERIOD, "resolution": "hour"},
        headers=viewer,
    )  # fmt: skip

    # Assert
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    lead, body, trailer, data = _split_csv(r.text)
    head = "".join(lead)
    assert f"site: {STACK_SITE} (Export depot), timezone Europe/Paris" in head
    assert f"period: {STACK_START.isoformat()} to {STACK_END.isoformat()}" in head
    assert "source: all" in head and "resolution: hour" in head and "generated_at: " in head
    assert body[0] == "ts,consumption_kwh,production_kwh,balance_kwh,n_readings\n"
    assert _trailer(trailer, "sha256") == hashlib.sha256("".join(data).encode()).hexdigest()
    assert int(_trailer(trailer, "rows")) == len(data) == HOURS
    items = readings.json()["items"]
    parsed = list(csv.DictReader(io.StringIO("".join(body))))
    assert [row["ts"] for row in parsed] == [i["ts"] for i in items]
    assert [float(row["consumption_kwh"]) for row in parsed] == [
        i["consumption_kwh"] for i in items
    ]


def test_readings_csv_raw_pages_through_many_windows(
    stack_gateway: TestClient, viewer: dict[str, str]
) -> None:
    # Arrange: five months, so the raw export is fetched in ~22 weekly windows.
    params = {**PERIOD, "start": "2026-01-01T00:00:00+01:00", "end": "2026-06-01T00:00:00+02:00"}

    # Act
    r = stack_gateway.get(
        "/api/v1/exports/readings.csv", params={**params, "resolution": "raw"}, headers=viewer
    )

    # Assert: every reading once, and their sum equals the balance endpoint's.
    assert r.status_code == 200, r.text
    _, body, trailer, data = _split_csv(r.text)
    rows = list(csv.DictReader(io.StringIO("".join(body))))
    assert len(rows) == HOURS and len({row["ts"] for row in rows}) == HOURS
    balance = _balance(stack_gateway, viewer)
    consumed = sum(float(row["consumption_kwh"]) for row in rows)
    assert consumed == pytest.approx(balance["consumed_kwh"], abs=1e-6)
    assert _trailer(trailer, "sha256") == hashlib.sha256("".join(data).encode()).hexdigest()


def test_readings_csv_of_one_source(stack_gateway: TestClient, viewer: dict[str, str]) -> None:
    r = stack_gateway.get(
        "/api/v1/exports/readings.csv", params={**PERIOD, "source": "simulated"}, headers=viewer
    )

    assert r.status_code == 200, r.text
    lead, body, _, data = _split_csv(r.text)
    assert "source: simulated" in "".join(lead)
    rows = list(csv.DictReader(io.StringIO("".join(body))))
    assert len(rows) == 24 and {row["consumption_kwh"] for row in rows} == {"999"}


@pytest.mark.parametrize(
    ("params", "status", "error"),
    [
        ({"site": "NOPE"}, 404, "SiteNotFound"),
        ({"start": "2026-03-27T00:00:00"}, 422, "BadInput"),
        ({"end": "2026-03-26T00:00:00+01:00"}, 422, "BadInput"),
        ({"start": "yesterday"}, 422, "BadInput"),
        ({"resolution": "minute"}, 422, "ValidationError"),
        ({"source": "meter"}, 422, "ValidationError"),
        ({"site": "../etc"}, 422, "ValidationError"),
    ],
)
def test_readings_csv_refuses_bad_input(
    params: dict[str, str], status: int, error: str, stack_gateway: TestClient,
    viewer: dict[str, str],
) -> None:  # fmt: skip
    r = stack_gateway.get(
        "/api/v1/exports/readings.csv", params={**PERIOD, **params}, headers=viewer
    )

    assert r.status_code == status, r.text
    assert r.json()["error"] == error


def test_windows_cut_on_local_bucket_boundaries() -> None:
    tz = ZoneInfo("Asia/Kolkata")  # a half-hour offset: UTC hours are not local hours
    start = datetime(2026, 1, 1, 10, 30, tzinfo=tz)
    end = datetime(2026, 3, 15, tzinfo=tz)

    spans = {res: windows(start, end, res, tz) for res in ("raw", "hour", "day", "week", "month")}

    for res, cut in spans.items():
        assert cut[0][0] == start and cut[-1][1] == end, res
        assert all(a < b for a, b in cut) and all(
            p[1] == n[0] for p, n in zip(cut, cut[1:], strict=False)
        ), res
        inner = [b.astimezone(tz) for _, b in cut[:-1]]
        assert all(t.hour == 0 and t.minute == 0 for t in inner), res
    assert all(b.astimezone(tz).weekday() == 0 for _, b in spans["week"][:-1])
    assert len(spans["raw"]) == 12 and len(spans["hour"]) == 4 and len(spans["month"]) == 1


# --- Excel and PDF -----------------------------------------------------------------------------


def _sheet_rows(wb: openpyxl.Workbook, title: str) -> tuple[list[str], list[list[Any]]]:
    """Header and rows; padded to the header's width (a reader drops trailing empty cells)."""
    rows = [list(r) for r in wb[title].iter_rows(values_only=True)]
    width = len(rows[0])
    return [str(c) for c in rows[0]], [r + [None] * (width - len(r)) for r in rows[1:]]


def test_report_xlsx_has_its_sheets_and_a_verifiable_certificate(
    stack_gateway: TestClient, viewer: dict[str, str]
) -> None:
    # Act
    r = stack_gateway.get("/api/v1/exports/report.xlsx", params=PERIOD, headers=viewer)

    # Assert
    assert r.status_code == 200, r.text
    wb = openpyxl.load_workbook(io.BytesIO(r.content), read_only=True)
    assert wb.sheetnames == ["Hourly balance", "Daily totals", "Incidents", "Certificate"]
    tables = [
        Table(name, *_sheet_rows(wb, title))
        for name, title in (("hourly_balance", "Hourly balance"), ("daily_totals", "Daily totals"),
                            ("incidents", "Incidents"))
    ]  # fmt: skip
    cert = {row[0]: row[1] for row in wb["Certificate"].iter_rows(values_only=True) if row}
    checksum = dataset_sha256(tables)
    assert cert["data_sha256"] == checksum == r.headers["x-data-sha256"]
    assert cert["site"] == f"{STACK_SITE} (Export depot)"
    assert cert["period_start"] == STACK_START.isoformat()
    assert cert["source"].startswith("all")
    assert datetime.fromisoformat(cert["generated_at"]) <= datetime.now(UTC)
    hourly, daily, incidents = (t.rows for t in tables)
    assert len(hourly) == HOURS and [d[0] for d in daily] == [
        "2026-03-27", "2026-03-28", "2026-03-29", "2026-03-30",
    ]  # fmt: skip
    assert [d[7] for d in daily] == [24, 24, 23, 24]
    balance = _balance(stack_gateway, viewer)
    assert cert["Consumed (kWh)"] == f"{balance['consumed_kwh']:.3f}"
    assert sum(d[1] for d in daily) == pytest.approx(balance["consumed_kwh"], abs=1e-5)
    assert sum(d[4] for d in daily) == pytest.approx(balance["deficit_kwh"], abs=1e-5)
    assert sum(d[5] for d in daily) == balance["deficit_hours"]
    assert incidents and all(i[0] is not None and i[5].startswith("2026-03") for i in incidents)


def test_report_pdf_states_the_balance_figures_and_the_xlsx_checksum(
    stack_gateway: TestClient, viewer: dict[str, str]
) -> None:
    # Act
    pdf = stack_gateway.get("/api/v1/exports/report.pdf", params=PERIOD, headers=viewer)
    xlsx = stack_gateway.get("/api/v1/exports/report.xlsx", params=PERIOD, headers=viewer)

    # Assert
    assert pdf.status_code == 200, pdf.text
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content[:5] == b"%PDF-"
    pages = PdfReader(io.BytesIO(pdf.content)).pages
    text = " ".join(" ".join(page.extract_text() for page in pages).split())
    balance = _balance(stack_gateway, viewer)
    for key in ("consumed_kwh", "produced_kwh", "deficit_kwh", "peak_deficit_kwh"):
        assert f"{balance[key]:.3f}" in text, key
    assert f"{balance['coverage_rate'] * 100:.2f} %" in text
    assert f"Hours in deficit {balance['deficit_hours']}" in text
    checksum = pdf.headers["x-data-sha256"]
    assert checksum == xlsx.headers["x-data-sha256"]
    assert checksum in text
    assert "Daily consumption vs production" in text and STACK_SITE in text
    file_digest = pdf.headers["content-digest"]
    assert file_digest.startswith("sha-256=:")


def test_report_period_is_bounded(stack_gateway: TestClient, viewer: dict[str, str]) -> None:
    params = {**PERIOD, "start": "2025-01-01T00:00:00Z", "end": "2026-03-01T00:00:00Z"}

    r = stack_gateway.get("/api/v1/exports/report.pdf", params=params, headers=viewer)

    assert r.status_code == 422 and "366 days" in r.json()["detail"]


def test_exports_are_in_the_audit_log_with_their_checksum(
    stack_gateway: TestClient, viewer: dict[str, str]
) -> None:
    # Arrange
    admin = stack_headers(stack_gateway, "admin")

    # Act
    pdf = stack_gateway.get("/api/v1/exports/report.pdf", params=PERIOD, headers=viewer)
    csv_export = stack_gateway.get("/api/v1/exports/readings.csv", params=PERIOD, headers=viewer)
    entries = {
        action: stack_gateway.get(
            "/api/v1/audit", params={"action": action, "limit": 1}, headers=admin
        ).json()[0]
        for action in ("export.report_pdf", "export.readings_csv",
                       "export.readings_csv.completed")
    }  # fmt: skip

    # Assert
    assert entries["export.report_pdf"]["detail"]["sha256"] == pdf.headers["x-data-sha256"]
    assert entries["export.report_pdf"]["target"] == f"site:{STACK_SITE}"
    _, _, trailer, _ = _split_csv(csv_export.text)
    done = entries["export.readings_csv.completed"]["detail"]
    assert done["sha256"] == _trailer(trailer, "sha256") and done["rows"] == HOURS
    actors = {entry["actor"] for entry in entries.values()}
    assert len(actors) == 1 and actors.pop().startswith("user")  # the viewer, every time


def test_exports_need_credentials(stack_gateway: TestClient, stack: Stack) -> None:
    for path in ("readings.csv", "report.xlsx", "report.pdf"):
        r = stack_gateway.get(f"/api/v1/exports/{path}", params=PERIOD)

        assert r.status_code == 401, path
