"""Certified exports: the report's tables, their checksum, and the Excel and PDF documents.

Plain functions with no web or database import: the data comes in as ``ReportData`` (fetched
from the internal services by ``services.gateway.export_data``), bytes go out.

"Certified" means each document states its site, period, source, generation time and the
SHA-256 of its data rows, computed over a canonical text form that anyone can rebuild from
the document itself (see ``dataset_text`` and docs/integrations.md):

- numbers are written rounded to 6 decimals (the mWh of a kWh value), without trailing
  zeros (``42``, ``42.5``, ``-0.125``); integers as they are; an empty cell as nothing;
  booleans as ``true`` / ``false``; text and timestamps (ISO 8601 with the site's offset) as
  they are;
- each row is one CSV line (RFC 4180 quoting when needed, ``\\n`` line ends);
- a report's data set is, for each table in order, a line ``[table name]``, its header line
  and its rows.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CHECKSUM_METHOD = (
    "SHA-256 of the UTF-8 text made of, for each data table in order, a line '[name]', the "
    "header line and the rows as CSV lines ending in \\n; numbers rounded to 6 decimals "
    "without trailing zeros, empty cells empty, booleans true/false"
)
CSV_CHECKSUM_METHOD = (
    "SHA-256 of the bytes of the data lines: every line after the column header that does "
    "not start with '#', line ends included"
)
SOURCE_ALL = "all (one per interval: real > import > simulated)"


def round6(value: float) -> float:
    """A kWh value as exported: rounded to the mWh (6 decimals), -0 as 0."""
    rounded = round(float(value), 6)
    return 0.0 if rounded == 0 else rounded


def cell_text(value: Any) -> str:
    """The canonical text of one cell (the same for a value and its Excel read-back)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        text = f"{round6(value):.6f}".rstrip("0").rstrip(".")
        return "0" if text in ("", "-0") else text
    return str(value)


_NEEDS_QUOTING = re.compile(r'[",\r\n]')


def csv_line(values: Iterable[Any]) -> str:
    """One canonical CSV line, ``\\n``-terminated (RFC 4180 quoting only where needed)."""
    texts = [cell_text(v) for v in values]
    if len(texts) > 1 and not any(_NEEDS_QUOTING.search(t) for t in texts):
        return ",".join(texts) + "\n"  # the common case, without a csv.writer per row
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(texts)
    return buf.getvalue()


@dataclass
class Table:
    """One data table of a report: a sheet of the workbook, a section of the PDF."""

    name: str
    columns: list[str]
    rows: list[list[Any]]


def dataset_text(tables: Sequence[Table]) -> str:
    """The canonical text the data checksum is computed over."""
    parts = []
    for table in tables:
        parts.append(f"[{table.name}]\n")
        parts.append(csv_line(table.columns))
        parts.extend(csv_line(row) for row in table.rows)
    return "".join(parts)


def dataset_sha256(tables: Sequence[Table]) -> str:
    """SHA-256 (hex) of the report's data set."""
    return hashlib.sha256(dataset_text(tables).encode()).hexdigest()


@dataclass
class ReportData:
    """Everything a report states, as fetched from ingest and alerts."""

    site: dict[str, Any]  # code, name, timezone...
    start: datetime
    end: datetime
    source: str | None
    generated_at: datetime
    generated_by: str
    balance: dict[str, Any]  # ingest's /balance answer: the KPIs
    hourly: list[dict[str, Any]]  # ingest's hourly buckets
    daily: list[dict[str, Any]]  # ingest's daily buckets
    incidents: list[dict[str, Any]]  # alerts' incidents active in the period
    tables: list[Table] = field(default_factory=list)

    @property
    def source_label(self) -> str:
        return self.source or SOURCE_ALL


HOURLY_COLUMNS = [
    "ts", "consumption_kwh", "production_kwh", "balance_kwh", "deficit_kwh", "n_readings",
]  # fmt: skip
DAILY_COLUMNS = [
    "date", "consumption_kwh", "production_kwh", "balance_kwh", "deficit_kwh",
    "deficit_hours", "coverage_rate", "n_readings",
]  # fmt: skip
INCIDENT_COLUMNS = [
    "id", "severity", "status", "kind", "title", "first_seen_at", "last_seen_at",
    "peak_value", "unit", "threshold", "acknowledged_by", "acknowledged_at", "resolved_by",
    "resolved_at", "feedback",
]  # fmt: skip


def _num(value: Any) -> float | None:
    return round6(value) if isinstance(value, int | float) else None


def build_tables(data: ReportData) -> list[Table]:
    """The report's tables: hourly balance, daily totals (with deficits), incidents."""
    hourly_rows = []
    deficits: dict[str, tuple[float, int]] = {}
    for h in data.hourly:
        c, p = h.get("consumption_kwh"), h.get("production_kwh")
        deficit = max(c - p, 0.0) if c is not None and p is not None else None
        hourly_rows.append(
            [h["ts"], _num(c), _num(p), _num(h.get("balance_kwh")), _num(deficit),
             h.get("n_readings")]
        )  # fmt: skip
        if deficit is not None:
            day = h["ts"][:10]  # the bucket's local date: ts carries the site's offset
            kwh, hours = deficits.get(day, (0.0, 0))
            deficits[day] = (kwh + deficit, hours + (deficit > 0))
    daily_rows = []
    for d in data.daily:
        day = d["ts"][:10]
        c, p = d.get("consumption_kwh"), d.get("production_kwh")
        kwh, hours = deficits.get(day, (0.0, 0))
        coverage = round(p / c, 6) if c and p is not None and c > 0 else None
        daily_rows.append(
            [day, _num(c), _num(p), _num(d.get("balance_kwh")), _num(kwh), hours, coverage,
             d.get("n_readings")]
        )  # fmt: skip
    incident_rows = [
        [i["id"], i["severity"], i["status"], i["kind"], i["title"], i["first_seen_at"],
         i["last_seen_at"], _num(i.get("peak_value")), i.get("unit"), _num(i.get("threshold")),
         i.get("acknowledged_by"), i.get("acknowledged_at"), i.get("resolved_by"),
         i.get("resolved_at"), i.get("feedback")]
        for i in data.incidents
    ]  # fmt: skip
    return [
        Table("hourly_balance", HOURLY_COLUMNS, hourly_rows),
        Table("daily_totals", DAILY_COLUMNS, daily_rows),
        Table("incidents", INCIDENT_COLUMNS, incident_rows),
    ]


def certificate(data: ReportData, checksum: str, document: str) -> list[tuple[str, str]]:
    """The certificate's fields, in the order every document shows them."""
    site = data.site
    return [
        ("document", document),
        ("site", f"{site['code']} ({site.get('name', '')})"),
        ("timezone", site.get("timezone", "")),
        ("period_start", data.balance.get("start") or data.start.isoformat()),
        ("period_end (exclusive)", data.balance.get("end") or data.end.isoformat()),
        ("source", data.source_label),
        ("generated_at", data.generated_at.isoformat(timespec="seconds")),
        ("generated_by", data.generated_by),
        *((f"rows: {t.name}", str(len(t.rows))) for t in data.tables),
        ("data_sha256", checksum),
        ("checksum_method", CHECKSUM_METHOD),
    ]


def kpis(data: ReportData) -> list[tuple[str, str]]:
    """The headline figures, formatted as the PDF prints them (from ingest's balance)."""
    b = data.balance
    coverage = b.get("coverage_rate")
    critical = sum(1 for i in data.incidents if i["severity"] == "critical")
    return [
        ("Consumed (kWh)", f"{b.get('consumed_kwh') or 0.0:.3f}"),
        ("Produced (kWh)", f"{b.get('produced_kwh') or 0.0:.3f}"),
        ("Coverage rate", f"{coverage * 100:.2f} %" if coverage is not None else "n/a"),
        ("Deficit (kWh)", f"{b.get('deficit_kwh') or 0.0:.3f}"),
        ("Hours in deficit", str(b.get("deficit_hours") or 0)),
        ("Peak hourly deficit (kWh)", f"{b.get('peak_deficit_kwh') or 0.0:.3f}"),
        ("Peak deficit hour", b.get("peak_deficit_hour") or "none"),
        ("Readings", str(b.get("n_readings") or 0)),
        ("Incidents (critical)", f"{len(data.incidents)} ({critical})"),
    ]


# --- Excel -----------------------------------------------------------------------------------

_SHEET_TITLES = {
    "hourly_balance": "Hourly balance",
    "daily_totals": "Daily totals",
    "incidents": "Incidents",
}
_WIDTHS = {"ts": 27, "date": 12, "title": 48, "first_seen_at": 27, "last_seen_at": 27}


def build_xlsx(data: ReportData, checksum: str) -> bytes:
    """The workbook: one sheet per table, then 'Certificate' with the metadata and checksum."""
    wb = Workbook(write_only=True)  # rows are streamed to the file, not kept as cell objects
    bold = Font(bold=True)
    for table in data.tables:
        ws = wb.create_sheet(_SHEET_TITLES[table.name])
        ws.freeze_panes = "A2"
        for i, column in enumerate(table.columns, start=1):
            ws.column_dimensions[get_column_letter(i)].width = _WIDTHS.get(column, 16)
        ws.append(table.columns)
        for row in table.rows:
            ws.append(row)
    cert = wb.create_sheet("Certificate")
    cert.column_dimensions["A"].width = 26
    cert.column_dimensions["B"].width = 80
    for key, value in certificate(data, checksum, "SP-E energy report (Excel)"):
        label = WriteOnlyCell(cert, value=key)
        label.font = bold
        cert.append([label, value])
    cert.append([])
    for key, value in kpis(data):
        cert.append([key, value])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
