"""Certified exports: readings as CSV (streamed, any size), the Excel and the PDF report.

Each states its site, period, source, generation time and the SHA-256 of its data rows:
the CSV in its comment lines (the checksum in the last line, since it is known only once
every row has been sent), the Excel file in its 'Certificate' sheet, the PDF in its
certificate block and page footers. Excel and PDF, built whole before they are sent, also
carry it in the ``X-Data-SHA256`` header. Every export is recorded in the audit log.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from services.common.db import SessionDep
from services.common.openapi import ErrorOut
from services.gateway.authn import Caller, ViewerDep, client_addr
from services.gateway.config import GatewaySettings
from services.gateway.export_data import (
    Resolution,
    Source,
    collect_report,
    parse_range,
    reading_windows,
    site_info,
)
from services.gateway.proxy import UpstreamFailed
from services.gateway.public_api import CODE_PATTERN
from services.gateway.report_pdf import build_pdf
from services.gateway.reports import (
    CSV_CHECKSUM_METHOD,
    SOURCE_ALL,
    XLSX_MEDIA_TYPE,
    ReportData,
    build_xlsx,
    csv_line,
    dataset_sha256,
)
from services.gateway.service import audit

log = logging.getLogger("spe.gateway.exports")
ReportFormat = Literal["pdf", "xlsx"]
CSV_COLUMNS = ["ts", "consumption_kwh", "production_kwh", "balance_kwh", "n_readings"]
DATA_SHA256_HEADER = "X-Data-SHA256"

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "missing, invalid, expired or revoked credentials"},
    404: {"model": ErrorOut, "description": "unknown site"},
    422: {"model": ErrorOut, "description": "invalid site, period, source or resolution"},
    503: {"model": ErrorOut, "description": "ingest or alerts is down or slow; see Retry-After"},
}
router = APIRouter(prefix="/api/v1/exports", tags=["exports"], responses=_ERRORS)

SiteQuery = Annotated[
    str, Query(max_length=32, pattern=CODE_PATTERN, description="site code", examples=["LYON1"])
]
StartQuery = Annotated[
    str,
    Query(
        max_length=64,
        description="first instant, ISO 8601 with offset (write '+' as %2B in a URL)",
        examples=["2026-01-01T00:00:00+01:00"],
    ),
]
EndQuery = Annotated[
    str,
    Query(
        max_length=64,
        description="end instant, exclusive, ISO 8601 with offset",
        examples=["2026-02-01T00:00:00+01:00"],
    ),
]
SourceQuery = Annotated[
    Source | None,
    Query(description="only this source; omitted: one per interval, real > import > simulated"),
]

_CSV_EXAMPLE = (
    "# SP-E certified export: readings\n"
    "# site: LYON1 (Lyon depot), timezone Europe/Paris\n"
    "# period: 2026-01-01T00:00:00+01:00 to 2026-01-01T02:00:00+01:00 (end exclusive)\n"
    "# source: all (one per interval: real > import > simulated)\n"
    "# resolution: hour\n"
    "# generated_at: 2026-01-02T06:00:00+00:00\n"
    "# generated_by: token:power-bi\n"
    f"# checksum: {CSV_CHECKSUM_METHOD}\n"
    "ts,consumption_kwh,production_kwh,balance_kwh,n_readings\n"
    "2026-01-01T00:00:00+01:00,40.2,0,-40.2,1\n"
    "2026-01-01T01:00:00+01:00,38.9,0,-38.9,1\n"
    "# rows: 2\n"
    "# sha256: 5f2b…(64 hex digits)\n"
)


class ExportInterrupted(RuntimeError):
    """An internal service failed mid-stream: the connection is cut so no client mistakes
    the partial file for a complete one (it also lacks its ``# sha256`` line)."""


def _filename(kind: str, site: str, start: datetime, end: datetime, ext: str) -> str:
    return f"spe-{kind}-{site}-{start:%Y%m%d}-{end:%Y%m%d}.{ext}"


def _audit_with_own_session(app: FastAPI, **entry: Any) -> None:
    """An audit entry written after the request's session has closed (end of a stream)."""
    with app.state.db.sessionmaker.begin() as session:
        audit(session, **entry)


@router.get(
    "/readings.csv",
    summary="A site's readings as certified CSV, streamed (any period length)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "comment lines (#) state site, period, source, generation; the last "
            "line is the SHA-256 of the data lines",
            "content": {"text/csv": {"example": _CSV_EXAMPLE}},
        }
    },
)
async def readings_csv(
    request: Request,
    session: SessionDep,
    caller: ViewerDep,
    site: SiteQuery,
    start: StartQuery,
    end: EndQuery,
    resolution: Resolution = "hour",
    source: SourceQuery = None,
) -> Response:
    """Readings paged from ingest window by window, never held whole. Role: viewer."""
    first, last = parse_range(start, end)
    app: FastAPI = request.app
    try:
        info = await site_info(app, caller, site)
    except UpstreamFailed as exc:
        return exc.response
    tz = ZoneInfo(info["timezone"])
    tz_first, tz_last = first.astimezone(tz), last.astimezone(tz)
    generated_at = datetime.now(UTC)
    params = {"start": tz_first.isoformat(), "end": tz_last.isoformat(), "source": source,
              "resolution": resolution}  # fmt: skip
    audit(
        session,
        actor=caller.actor,
        action="export.readings_csv",
        target=f"site:{site}",
        detail=params,
        client_addr=client_addr(request),
    )
    preamble = "".join(
        f"# {line}\n"
        for line in (
            "SP-E certified export: readings",
            f"site: {info['code']} ({info.get('name', '')}), timezone {info['timezone']}",
            f"period: {tz_first.isoformat()} to {tz_last.isoformat()} (end exclusive)",
            f"source: {source or SOURCE_ALL}",
            f"resolution: {resolution}",
            f"generated_at: {generated_at.isoformat(timespec='seconds')}",
            f"generated_by: {caller.actor}",
            f"checksum: {CSV_CHECKSUM_METHOD}",
        )
    ) + csv_line(CSV_COLUMNS)

    async def body() -> AsyncIterator[bytes]:
        yield preamble.encode()
        digest, rows = hashlib.sha256(), 0
        try:
            async for items in reading_windows(app, caller, info, first, last, resolution, source):
                if not items:
                    continue
                chunk = "".join(
                    csv_line([i["ts"], i["consumption_kwh"], i["production_kwh"],
                              i["balance_kwh"], i["n_readings"]])
                    for i in items
                ).encode()  # fmt: skip
                digest.update(chunk)
                rows += len(items)
                yield chunk
        except UpstreamFailed as exc:
            log.warning("readings export interrupted", extra={"site": site, "error": exc.detail})
            yield f"# ERROR: export incomplete after {rows} rows: {exc.detail}\n".encode()
            raise ExportInterrupted(exc.detail) from None
        checksum = digest.hexdigest()
        yield f"# rows: {rows}\n# sha256: {checksum}\n".encode()
        await run_in_threadpool(
            _audit_with_own_session,
            app,
            actor=caller.actor,
            action="export.readings_csv.completed",
            target=f"site:{site}",
            detail={**params, "rows": rows, "sha256": checksum},
            client_addr=client_addr(request),
        )

    disposition = f'attachment; filename="{_filename("readings", site, tz_first, tz_last, "csv")}"'
    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": disposition},
    )


async def render_report(
    app: FastAPI,
    caller: Caller,
    site: str,
    start: datetime,
    end: datetime,
    source: str | None,
    fmt: ReportFormat,
) -> tuple[bytes, str, ReportData]:
    """The report document's bytes, its data checksum and its data (raises UpstreamFailed)."""
    data = await collect_report(app, caller, site, start, end, source)
    checksum = dataset_sha256(data.tables)
    build = build_pdf if fmt == "pdf" else build_xlsx
    content = await run_in_threadpool(build, data, checksum)  # CPU work off the event loop
    return content, checksum, data


_MEDIA_TYPES = {"pdf": "application/pdf", "xlsx": XLSX_MEDIA_TYPE}


async def _report_response(
    request: Request,
    session: Any,
    caller: Caller,
    site: str,
    start: str,
    end: str,
    source: str | None,
    fmt: ReportFormat,
) -> Response:
    settings: GatewaySettings = request.app.state.settings
    first, last = parse_range(start, end, settings.report_max_days)
    try:
        content, checksum, data = await render_report(
            request.app, caller, site, first, last, source, fmt
        )
    except UpstreamFailed as exc:
        return exc.response
    audit(
        session,
        actor=caller.actor,
        action=f"export.report_{fmt}",
        target=f"site:{site}",
        detail={
            "start": data.start.isoformat(),
            "end": data.end.isoformat(),
            "source": source,
            "sha256": checksum,
            "bytes": len(content),
            "rows": {t.name: len(t.rows) for t in data.tables},
        },
        client_addr=client_addr(request),
    )
    name = _filename("report", site, data.start, data.end, fmt)
    file_digest = base64.b64encode(hashlib.sha256(content).digest()).decode()
    return Response(
        content,
        media_type=_MEDIA_TYPES[fmt],
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            DATA_SHA256_HEADER: checksum,
            # RFC 9530: the digest of the file's bytes (the data checksum is the header above).
            "Content-Digest": f"sha-256=:{file_digest}:",
        },
    )


_REPORT_DOC = (
    "Hourly balance, daily totals and incidents of a site over a period (at most "
    "REPORT_MAX_DAYS, 366 by default). Role: viewer."
)


@router.get(
    "/report.xlsx",
    summary="Certified Excel report: hourly balance, daily totals, incidents, certificate",
    response_class=Response,
    responses={200: {"description": "the workbook", "content": {XLSX_MEDIA_TYPE: {}}}},
    description=_REPORT_DOC,
)
async def report_xlsx(
    request: Request,
    session: SessionDep,
    caller: ViewerDep,
    site: SiteQuery,
    start: StartQuery,
    end: EndQuery,
    source: SourceQuery = None,
) -> Response:
    return await _report_response(request, session, caller, site, start, end, source, "xlsx")


@router.get(
    "/report.pdf",
    summary="Certified PDF report: KPIs, daily chart, incidents, daily totals, certificate",
    response_class=Response,
    responses={200: {"description": "the report", "content": {"application/pdf": {}}}},
    description=_REPORT_DOC,
)
async def report_pdf(
    request: Request,
    session: SessionDep,
    caller: ViewerDep,
    site: SiteQuery,
    start: StartQuery,
    end: EndQuery,
    source: SourceQuery = None,
) -> Response:
    return await _report_response(request, session, caller, site, start, end, source, "pdf")
