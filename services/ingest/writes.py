"""Ingest writes: single rows, JSON batches and CSV / XLSX imports of every measured kind.

Every row is validated against the physical bounds of ``schemas``; the good rows of a request
are upserted and each bad row is kept in ``ingest.quarantine`` with its reason, in the same
transaction, and listed in the response. Routes are ``async`` only to read the body; parsing,
validation and database work run in the threadpool, never on the event loop.
"""

from __future__ import annotations

import gc
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import IO, Annotated, Any, Literal
from zoneinfo import ZoneInfo

import psycopg
from fastapi import APIRouter, BackgroundTasks, Query, Request, status
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from services.common.auth import WriterDep
from services.common.db import SessionDep
from services.common.errors import AppError, BadInput, PayloadTooLarge, error_body
from services.ingest import bulk, rollup, uploads
from services.ingest.bulk import Target
from services.ingest.config import IngestSettings
from services.ingest.notify import Span
from services.ingest.schemas import (
    MEASUREMENT_FUTURE_SLACK,
    WEATHER_FUTURE_SLACK,
    AnomalyLabelIn,
    EquipmentEventIn,
    MeasuredAt,
    ReadingIn,
    RejectedRow,
    TelemetryIn,
    TimezoneName,
    WeatherAt,
    WeatherIn,
    WriteResult,
)
from services.ingest.validation import (
    BodyError,
    FastValidator,
    Judged,
    TimeBound,
    judge_json,
    judge_python,
    parse_single,
)

router = APIRouter()

ROWS = Counter(
    "ingest_rows_total",
    "Rows received by ingest writes, by kind and outcome (accepted or quarantined)",
    ["kind", "outcome"],
)
BATCH_ROWS = Histogram(
    "ingest_batch_rows",
    "Rows per write request, by kind and input format",
    ["kind", "format"],
    buckets=(1, 10, 100, 1_000, 10_000, 50_000, 100_000, 1_000_000, 10_000_000),
)

# A response lists at most this many rejected rows; all of them are in the quarantine table.
MAX_LISTED_REJECTIONS = 1_000
# Production above capacity x interval by more than this factor is physically impossible
# (the margin covers meter rounding and short peaks above nameplate capacity).
CAPACITY_MARGIN = 1.2
# An import's open COPY is synced this often (rows), and its quarantined rows written when
# this many are pending: bounds both the work redone after a late key conflict and memory.
_STREAM_SYNC_ROWS = 100_000
_QUARANTINE_FLUSH_ROWS = 10_000

Format = Literal["json", "csv", "xlsx"]


class MalformedBody(AppError):
    """The body is not JSON at all (400); a JSON body of the wrong shape is a 422."""

    status_code = 400


# --- the kinds of rows -----------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One kind of row: its model, the table it lands in, and how a validated row maps to it."""

    name: str  # quarantine ``kind`` and metric label
    model: type[BaseModel]
    entity: Literal["site", "equipment"]  # the code each row names, resolved to an id
    target: Target
    # Validated rows and the ids of their codes -> tuples in ``target.columns`` order.
    to_tuples: Callable[[Sequence[Any], Mapping[str, int]], list[tuple[Any, ...]]]
    fast: FastValidator
    # A row the fast path cannot judge alone (a model validator it does not mirror).
    suspect: Callable[[Any], bool] | None = None
    time_fields: tuple[str, ...] = ("ts",)
    float_fields: tuple[str, ...] = field(default=())

    @property
    def columns(self) -> tuple[str, ...]:
        """Field names, which are also the column names an imported file may use."""
        return tuple(self.model.model_fields)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(n for n, f in self.model.model_fields.items() if f.is_required())


def _measured(model: type[BaseModel], **kw: Any) -> FastValidator:
    return FastValidator(
        model, time_bounds={"ts": TimeBound(MeasuredAt, MEASUREMENT_FUTURE_SLACK)}, **kw
    )


def _floats(model: type[BaseModel]) -> tuple[str, ...]:
    return tuple(n for n, f in model.model_fields.items() if f.annotation in (float, float | None))


_TS, _TYPES_COMMON = "timestamptz", ("int4", "timestamptz", "text")

READING = Kind(
    name="reading",
    model=ReadingIn,
    entity="site",
    target=Target(
        "ingest.reading",
        ("site_id", "ts", "source", "consumption_kwh", "production_kwh", "interval_s"),
        (*_TYPES_COMMON, "float8", "float8", "int4"),
        key=("site_id", "ts", "source"),
    ),
    to_tuples=lambda rows, ids: [
        (ids[r.site], r.ts, r.source, r.consumption_kwh, r.production_kwh, r.interval_s)
        for r in rows
    ],
    fast=_measured(ReadingIn),
    float_fields=_floats(ReadingIn),
)

_SENSORS = ("flow_m3h", "pressure_bar", "vibration_mm_s", "temperature_c")
TELEMETRY = Kind(
    name="telemetry",
    model=TelemetryIn,
    entity="equipment",
    target=Target(
        "ingest.telemetry",
        ("equipment_id", "ts", "source", *_SENSORS),
        (*_TYPES_COMMON, "float8", "float8", "float8", "float8"),
        key=("equipment_id", "ts", "source"),
    ),
    to_tuples=lambda rows, ids: [
        (
            ids[r.equipment],
            r.ts,
            r.source,
            r.flow_m3h,
            r.pressure_bar,
            r.vibration_mm_s,
            r.temperature_c,
        )
        for r in rows
    ],
    # TelemetryIn._some_value (a sensor value is required) is left to the model: see suspect.
    fast=_measured(TelemetryIn, covered_model_validators=frozenset({"_some_value"})),
    suspect=lambda r: (
        r.flow_m3h is None
        and r.pressure_bar is None
        and r.vibration_mm_s is None
        and r.temperature_c is None
    ),
    float_fields=_floats(TelemetryIn),
)

WEATHER = Kind(
    name="weather",
    model=WeatherIn,
    entity="site",
    target=Target(
        "ingest.weather",
        (
            "site_id",
            "ts",
            "source",
            "temperature_c",
            "irradiance_w_m2",
            "wind_speed_m_s",
            "is_forecast",
        ),
        (*_TYPES_COMMON, "float8", "float8", "float8", "bool"),
        key=("site_id", "ts", "source"),
    ),  # fmt: skip
    to_tuples=lambda rows, ids: [
        (
            ids[r.site],
            r.ts,
            r.source,
            r.temperature_c,
            r.irradiance_w_m2,
            r.wind_speed_m_s,
            r.is_forecast,
        )
        for r in rows
    ],
    fast=FastValidator(WeatherIn, time_bounds={"ts": TimeBound(WeatherAt, WEATHER_FUTURE_SLACK)}),
    float_fields=_floats(WeatherIn),
)

EQUIPMENT_EVENT = Kind(
    name="equipment_event",
    model=EquipmentEventIn,
    entity="equipment",
    target=Target(
        "ingest.equipment_event",
        ("equipment_id", "ts", "kind", "description", "source"),
        ("int4", _TS, "text", "text", "text"),
        key=("equipment_id", "ts", "kind"),
        copy_first=False,  # identity ids: a failed COPY would burn them; events are few
    ),
    to_tuples=lambda rows, ids: [
        # PostgreSQL text cannot hold NUL, which JSON strings can: replaced, not a 500.
        (ids[r.equipment], r.ts, r.kind, bulk.clean_text(r.description), r.source)
        for r in rows
    ],
    fast=_measured(EquipmentEventIn),
)

ANOMALY_LABEL = Kind(
    name="anomaly_label",
    model=AnomalyLabelIn,
    entity="site",
    target=Target(
        "ingest.anomaly_label",
        ("site_id", "kind", "start_ts", "end_ts", "magnitude", "source"),
        ("int4", "text", _TS, _TS, "float8", "text"),
        key=("site_id", "kind", "start_ts"),
        touch=None,
        copy_first=False,
    ),
    to_tuples=lambda rows, ids: [
        (ids[r.site], r.kind, r.start_ts, r.end_ts, r.magnitude, r.source) for r in rows
    ],
    # Labels are few and AnomalyLabelIn orders its timestamps in a model validator.
    fast=FastValidator(AnomalyLabelIn, time_bounds={}),
    time_fields=("start_ts", "end_ts"),
)


# --- garbage collection during bulk work ---------------------------------------------------

# A chunk holds tens of thousands of fresh containers (rows, dicts, tuples) that all live until
# it is written. With CPython's default thresholds (700, 10, 10) the collector runs every 700
# allocations and keeps re-scanning them: measured, half the Python time of a CSV import. Bulk
# work raises the thresholds (collections stay on, just rarer) and puts them back after.
_BULK_GC_THRESHOLD = (50_000, 20, 20)
_gc_lock = threading.Lock()
_gc_users = 0
_gc_saved: tuple[int, int, int] = gc.get_threshold()


@contextmanager
def _bulk_gc() -> Iterator[None]:
    """Rarer garbage collections while bulk rows are in memory (shared by concurrent requests)."""
    global _gc_users, _gc_saved
    with _gc_lock:
        if _gc_users == 0:
            _gc_saved = gc.get_threshold()
            gc.set_threshold(*_BULK_GC_THRESHOLD)
        _gc_users += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0:
                gc.set_threshold(*_gc_saved)


# --- one write request -----------------------------------------------------------------------


@dataclass
class _Entity:
    id: int
    capacity_kw: float


class WriteRun:
    """One write request: resolves codes, stores chunks, quarantines, tallies the outcome."""

    def __init__(
        self, conn: psycopg.Connection[Any], kind: Kind, fmt: Format, *, copy: bool
    ) -> None:
        self.conn = conn
        self.kind = kind
        self.format = fmt
        self.batch_id = uuid.uuid4()
        self.received = self.accepted = self.duplicates = self.quarantined = 0
        self.listed: list[RejectedRow] = []
        self._entities: dict[str, _Entity | None] = {}
        # Copy mode: one COPY spans chunks, closed when the connection is needed otherwise.
        self._stream = bulk.CopyStream(conn, kind.target) if copy else None
        self._chunks = 0
        self._rejections: list[tuple[int, Any, str]] = []
        # Per site, the first and last reading stored: what the alerts service must re-check,
        # and what the roll-ups must re-materialise (services/ingest/rollup.py).
        self.spans: dict[str, Span] = {}
        # Readings and telemetry before this are refused (retention); read on the first chunk.
        self._refused_before: datetime | None = None
        self._horizon_read = False

    def store(
        self,
        judged: Judged,
        raw_item: Callable[[int], Any],
        row_number: Callable[[int], int],
        received: int,
    ) -> None:
        """Store the good rows of a judged chunk and quarantine the bad ones."""
        self.received += received
        rejected = list(judged.rejected)
        rows, index = judged.rows, judged.index
        code_of = attrgetter(self.kind.entity)
        codes = set(map(code_of, rows))
        entities = self._resolve(codes)
        if any(entities[c] is None for c in codes):
            keep = []
            for i, r in enumerate(rows):
                code = code_of(r)
                if entities[code] is None:
                    rejected.append((index[i], f"unknown {self.kind.entity} {code!r}"))
                else:
                    keep.append(i)
            rows, index = [rows[i] for i in keep], [index[i] for i in keep]
        if self.kind is READING and rows:
            rows, index = self._check_capacity(rows, index, entities, rejected)
            rows, index = self._check_horizon(rows, index, rejected)
            self._note_spans(rows)
        elif self.kind is TELEMETRY and rows:
            rows, index = self._check_horizon(rows, index, rejected)
        ids = {c: e.id for c, e in entities.items() if e is not None}
        tuples = self.kind.to_tuples(rows, ids)
        if self._stream is not None:
            self._stream.write(tuples)
            # Closing waits for the server: after the first chunk, so a re-sent file meets its
            # taken keys at once, then every so often, so it is never far behind.
            if self._chunks == 0 or self._stream.rows >= _STREAM_SYNC_ROWS:
                self._stream.close()
        else:
            written = bulk.write_rows(self.conn, self.kind.target, tuples, copy=False)
            self.duplicates += written.duplicates
        self._chunks += 1
        self.accepted += len(tuples)
        if rejected:
            rejected.sort()
            self._rejections.extend((row_number(i), raw_item(i), r) for i, r in rejected)
            if self._stream is None or len(self._rejections) >= _QUARANTINE_FLUSH_ROWS:
                self._flush_rejections()

    def finish(self) -> None:
        """Wait for every row to be stored (raises ``bulk.KEY_CONFLICTS`` in copy mode)."""
        self._flush_rejections()
        if self._stream is not None:
            self._stream.close()
        if self.kind is READING and self.spans:
            self._invalidate_rollups()

    def _invalidate_rollups(self) -> None:
        # One row per site per request, whatever the watermark: the roll-up job folds it in
        # (or drops it, above the watermark); reads skip the roll-ups from it on meanwhile.
        ids, los, his = [], [], []
        for code, (lo, hi) in self.spans.items():
            entity = self._entities.get(code)
            if entity is not None:
                ids.append(entity.id)
                los.append(lo)
                his.append(hi)
        self.conn.execute(
            "INSERT INTO ingest.rollup_invalidation (site_id, lo, hi) "
            "SELECT * FROM unnest(%s::int[], %s::timestamptz[], %s::timestamptz[])",
            (ids, los, his),
        )

    def _check_horizon(
        self, rows: list[Any], index: Sequence[int], rejected: list[tuple[int, str]]
    ) -> tuple[list[Any], Sequence[int]]:
        """Refuse rows the raw-data retention has made read-only (kept as roll-ups only)."""
        if not self._horizon_read:
            self._horizon_read = True
            if self._stream is not None:
                self._stream.close()  # the lock and the lookup need the connection
            # Held shared until commit: the retention job moves the horizon only between writes.
            self.conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (rollup.WRITE_LOCK,))
            row = self.conn.execute(
                "SELECT nullif(write_horizon, '-infinity') FROM ingest.rollup_state"
            ).fetchone()
            if row is not None and row[0] is not None:
                self._refused_before = row[0] + rollup.HOUR
        limit = self._refused_before
        if limit is None or not rows or min(map(attrgetter("ts"), rows)) >= limit:
            return rows, index
        keep = []
        for i, r in enumerate(rows):
            if r.ts < limit:
                rejected.append(
                    (
                        index[i],
                        f"ts: before {limit.isoformat()}, the raw-data retention horizon "
                        "(INGEST_RAW_RETENTION_DAYS) + 1 h: data that old is kept as hourly "
                        "roll-ups only and can no longer be changed",
                    )
                )
            else:
                keep.append(i)
        return [rows[i] for i in keep], [index[i] for i in keep]

    def _flush_rejections(self) -> None:
        if self._rejections:
            if self._stream is not None:
                self._stream.close()  # the quarantine COPY needs the connection
            self._quarantine(self._rejections)
            self._rejections = []

    def _resolve(self, codes: set[str]) -> dict[str, _Entity | None]:
        missing = [c for c in codes if c not in self._entities]
        if missing:
            if self._stream is not None:
                self._stream.close()  # the lookup needs the connection
            table = "ingest.site" if self.kind.entity == "site" else "ingest.equipment"
            capacity = "capacity_kw" if self.kind.entity == "site" else "0.0"
            with self.conn.cursor() as cur:
                cur.execute(
                    f"SELECT code, id, {capacity} FROM {table} WHERE code = ANY(%s)", (missing,)
                )
                found = {code: _Entity(id_, cap) for code, id_, cap in cur}
            for code in missing:
                self._entities[code] = found.get(code)
        return self._entities

    def _check_capacity(
        self,
        rows: list[Any],
        index: Sequence[int],
        entities: dict[str, _Entity | None],
        rejected: list[tuple[int, str]],
    ) -> tuple[list[Any], Sequence[int]]:
        # kWh a site can produce per second of interval; no limit for a site of unknown capacity.
        per_s = {
            code: e.capacity_kw * CAPACITY_MARGIN / 3600
            for code, e in entities.items()
            if e is not None and e.capacity_kw > 0
        }
        if not per_s:
            return rows, index
        # Two C-speed passes settle the usual chunk, far below every site's limit.
        most = max(map(attrgetter("production_kwh"), rows))
        if most <= min(per_s.values()) * min(map(attrgetter("interval_s"), rows)):
            return rows, index
        inf = float("inf")
        over = [
            i
            for i, r in enumerate(rows)
            if r.production_kwh > per_s.get(r.site, inf) * r.interval_s
        ]
        if not over:
            return rows, index
        for i in over:
            r = rows[i]
            entity = entities[r.site]
            assert entity is not None
            rejected.append(
                (
                    index[i],
                    f"production_kwh: {r.production_kwh:g} kWh in {r.interval_s} s is more than "
                    f"site {r.site!r} can produce (capacity {entity.capacity_kw:g} kW: at most "
                    f"{per_s[r.site] * r.interval_s:g} kWh with a {CAPACITY_MARGIN:g}x margin)",
                )
            )
        drop = set(over)
        keep = [i for i in range(len(rows)) if i not in drop]
        return [rows[i] for i in keep], [index[i] for i in keep]

    def _note_spans(self, rows: list[Any]) -> None:
        spans = self.spans
        for r in rows:
            span = spans.get(r.site)
            if span is None:
                spans[r.site] = (r.ts, r.ts)
            elif r.ts < span[0] or r.ts > span[1]:
                spans[r.site] = (min(span[0], r.ts), max(span[1], r.ts))

    def _quarantine(self, rejected: list[tuple[int, Any, str]]) -> None:
        bulk.write_quarantine(self.conn, self.batch_id, self.kind.name, rejected)
        self.quarantined += len(rejected)
        room = MAX_LISTED_REJECTIONS - len(self.listed)
        self.listed.extend(RejectedRow(row=n, reason=r) for n, _, r in rejected[:room])

    def result(self) -> WriteResult:
        """The response body, and the metrics of this request."""
        ROWS.labels(self.kind.name, "accepted").inc(self.accepted)
        ROWS.labels(self.kind.name, "quarantined").inc(self.quarantined)
        BATCH_ROWS.labels(self.kind.name, self.format).observe(self.received)
        result = WriteResult(
            batch_id=str(self.batch_id),
            received=self.received,
            accepted=self.accepted,
            quarantined=self.quarantined,
            rejected=self.listed,
            rejected_truncated=self.quarantined - len(self.listed),
            duplicates=self.duplicates,
        )
        result._spans = self.spans
        return result


# --- JSON ------------------------------------------------------------------------------------


def _driver_connection(session: Session) -> psycopg.Connection[Any]:
    """The psycopg connection under the request's session (its transaction is the request's)."""
    conn: psycopg.Connection[Any] = session.connection().connection.driver_connection  # type: ignore[assignment]
    return conn


def _write(
    session: Session,
    kind: Kind,
    fmt: Format,
    write: Callable[[WriteRun], None],
    *,
    optimistic: bool = True,
) -> WriteResult:
    """Run ``write`` with COPY straight into the table; if a key was taken, again staged."""
    conn = _driver_connection(session)
    if optimistic and kind.target.copy_first:
        run = WriteRun(conn, kind, fmt, copy=True)
        with bulk.optimistic(conn) as attempt:
            write(run)
            run.finish()
        if not attempt.failed:
            return run.result()
    run = WriteRun(conn, kind, fmt, copy=False)
    write(run)
    run.finish()
    return run.result()


def write_json_batch(session: Session, kind: Kind, body: bytes, max_rows: int) -> WriteResult:
    """Validate and store a JSON array of rows (runs in the threadpool)."""
    with _bulk_gc():
        return _write_json_batch(session, kind, body, max_rows)


def _write_json_batch(session: Session, kind: Kind, body: bytes, max_rows: int) -> WriteResult:
    try:
        judged, raw_items = judge_json(kind.fast, body, kind.suspect)
    except BodyError as exc:
        raise (MalformedBody if exc.malformed else BadInput)(exc.detail) from None
    received = len(judged.rows) + len(judged.rejected)
    if received > max_rows:
        raise PayloadTooLarge(
            f"{received} rows in one batch; send at most {max_rows} (INGEST_MAX_BATCH_ROWS)"
        )
    return _write(
        session,
        kind,
        "json",
        lambda run: run.store(judged, lambda i: raw_items()[i], lambda i: i, received),
        optimistic=len(judged.rows) >= bulk.SMALL_CHUNK,
    )


def write_json_single(session: Session, kind: Kind, body: bytes) -> WriteResult | JSONResponse:
    """Validate and store one JSON row; a bad row is quarantined and answered with a 422."""
    try:
        raw, row, reason = parse_single(kind.model, body)
    except BodyError as exc:
        raise MalformedBody(exc.detail) from None
    if isinstance(raw, list):  # not one bad row but a misdirected batch: nothing to keep
        raise BadInput("send one JSON object here; arrays of rows go to the /batch route")
    judged = Judged([row], [0], []) if row is not None else Judged([], [], [(0, reason or "")])
    result = _write(
        session,
        kind,
        "json",
        lambda run: run.store(judged, lambda _: raw, lambda _: 0, 1),
        optimistic=False,
    )
    if result.quarantined:
        # Answered, not raised: raising would roll back the quarantine row with the request.
        detail = result.rejected[0].reason
        return JSONResponse(
            error_body("RowRejected", detail, batch_id=result.batch_id, quarantined=True),
            status_code=422,
        )
    return result


# --- files -----------------------------------------------------------------------------------


def write_file(session: Session, kind: Kind, file: IO[bytes], timezone: str | None) -> WriteResult:
    """Validate and store a CSV or XLSX file chunk by chunk (runs in the threadpool)."""
    zone = ZoneInfo(timezone) if timezone else None

    def write(run: WriteRun) -> None:
        file.seek(0)  # a second attempt (staged) reads the file again
        table = uploads.open_table(file, kind.columns, kind.required)
        run.format = table.format
        build = _item_builder(kind, table, zone)
        # One thread parses and writes in turn: a writer thread overlapping the two measured
        # slower here, its COPY starved of the GIL by the parser (the convoy effect).
        for chunk in table.chunks:
            numbers = [n for n, _ in chunk]
            cells = [c for _, c in chunk]
            items = [build(c) for c in cells]
            if not all(items):  # rows of blank cells only: nothing was sent on those lines
                kept = [i for i, item in enumerate(items) if item]
                numbers = [numbers[i] for i in kept]
                cells = [cells[i] for i in kept]
                items = [items[i] for i in kept]
            judged = judge_python(kind.fast, items, kind.suspect)
            run.store(
                judged,
                lambda i, cells=cells: table.record(cells[i]),  # type: ignore[misc]
                numbers.__getitem__,
                len(items),
            )

    with _bulk_gc():
        return _write(session, kind, "csv", write)


def _item_builder(
    kind: Kind, table: uploads.Table, zone: ZoneInfo | None
) -> Callable[[list[Any]], dict[str, Any]]:
    """How a file row's cells become the dict the model validates (empty for a blank row).

    Runs once per row of a file of any size, hence one comprehension on the usual path.
    """
    columns, width, csv = table.columns, len(table.columns), table.format == "csv"
    floats = kind.float_fields if table.decimal_comma else ()
    times = kind.time_fields if zone is not None else ()

    def build(cells: list[Any]) -> dict[str, Any]:
        if len(cells) > width:
            item = table.record(cells)  # the cells past the header are reported as unknown
        elif csv:
            item = {n: s for n, v in zip(columns, cells, strict=False) if (s := v.strip())}
        else:
            item = {n: v for n, v in zip(columns, cells, strict=False) if v}
        if item:
            item.setdefault("source", "import")
            for name in times:
                if name in item:
                    item[name] = _in_zone(item[name], zone)  # type: ignore[arg-type]
            for name in floats:
                value = item.get(name)
                if isinstance(value, str):
                    item[name] = value.replace(",", ".")
        return item

    return build


def _in_zone(value: Any, zone: ZoneInfo) -> Any:
    """A naive timestamp read as local time in ``zone``; anything else unchanged."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value  # the model reports what is wrong with it
    if isinstance(value, datetime) and value.tzinfo is None:
        # fold=0: an ambiguous local time (the hour repeated when DST ends) is its first pass.
        return value.replace(tzinfo=zone)
    return value


# --- routes ----------------------------------------------------------------------------------


def _settings(request: Request) -> IngestSettings:
    settings: IngestSettings = request.app.state.settings
    return settings


def _max_body(request: Request) -> int:
    return _settings(request).ingest_max_upload_mb * 2**20


def _check_json_content_type(request: Request) -> None:
    content_type = request.headers.get("content-type")
    if content_type is None:
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise uploads.UnsupportedMediaType(
            f"send rows as application/json (got {media!r}); files go to the /import route"
        )


async def _json_body(request: Request) -> bytes:
    _check_json_content_type(request)
    return await uploads.read_limited_body(request, _max_body(request))


def _json_schema(model: type[BaseModel], *, array: bool) -> dict[str, Any]:
    schema = model.model_json_schema()
    assert "$defs" not in schema, "inline row schemas only: the raw-body routes cannot $ref"
    if array:
        schema = {"type": "array", "items": schema}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


_UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "a .csv (UTF-8) or .xlsx file with a header row",
                        }
                    },
                    "required": ["file"],
                }
            }
        },
    }
}

_BATCH_DOC = (
    "Up to INGEST_MAX_BATCH_ROWS rows (50,000 by default; more is a 413). Good rows are "
    "upserted on their key (re-sending is safe, the last write wins); each bad row is kept in "
    "quarantine and listed in `rejected` with its 0-based index and the reason. Not JSON: 400; "
    "not an array: 422."
)
_SINGLE_DOC = (
    "201 with the write result; a bad row is kept in quarantine and answered with a 422 "
    "naming the field and the bound."
)
_IMPORT_DOC = (
    "A .csv (UTF-8; comma, semicolon or tab separated) or .xlsx file (first sheet) in the "
    "multipart field `file`, with a header row naming the columns like the JSON fields; "
    "`source` defaults to `import`. Timestamps need an offset (ISO 8601) unless `timezone` "
    "says how to read naive ones (spreadsheet date cells are naive). `row` in `rejected` is "
    "the row number a spreadsheet shows (header = 1). Streamed: any size up to "
    "INGEST_MAX_UPLOAD_MB (413 past it)."
)
ZoneQuery = Annotated[
    TimezoneName | None,
    Query(
        max_length=64,
        description="IANA zone to read naive timestamps in (e.g. Europe/Paris); "
        "without it a naive timestamp is a bad row",
    ),
]
_ROW_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "the body is not JSON"},
    413: {"description": "over the row or size limit"},
    415: {"description": "not JSON"},
    422: {"description": "not an array of objects, or (single row) the row was rejected"},
}
_FILE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "malformed multipart body"},
    413: {"description": "file over INGEST_MAX_UPLOAD_MB"},
    415: {"description": "not multipart, or a file that is neither CSV (UTF-8) nor .xlsx"},
    422: {"description": "empty file, or header with missing or unknown columns"},
}


def _notify_after_commit(request: Request, background: BackgroundTasks, result: Any) -> Any:
    """Queue the alerts notice; background tasks run after the response, so after the commit."""
    notifier = getattr(request.app.state, "notifier", None)
    spans = getattr(result, "_spans", None)
    if notifier is not None and spans:
        background.add_task(notifier.notify, spans)
    return result


def _add_routes(path: str, kind: Kind, tag: str, *, single: bool, batch: bool, files: bool) -> None:
    """Register the write routes of one kind under ``/v1/{path}``."""
    label = kind.model.__name__

    if single:

        async def write_one(
            request: Request, session: SessionDep, _: WriterDep, background: BackgroundTasks
        ) -> Any:
            body = await _json_body(request)
            result = await run_in_threadpool(write_json_single, session, kind, body)
            return _notify_after_commit(request, background, result)

        router.add_api_route(
            f"/{path}",
            write_one,
            methods=["POST"],
            response_model=WriteResult,
            status_code=status.HTTP_201_CREATED,
            tags=[tag],
            summary=f"Write one row ({label})",
            description=_SINGLE_DOC,
            responses=_ROW_ERRORS,
            openapi_extra=_json_schema(kind.model, array=False),
            name=f"write_{kind.name}",
        )

    if batch:

        async def write_batch(
            request: Request, session: SessionDep, _: WriterDep, background: BackgroundTasks
        ) -> Any:
            body = await _json_body(request)
            max_rows = _settings(request).ingest_max_batch_rows
            result = await run_in_threadpool(write_json_batch, session, kind, body, max_rows)
            return _notify_after_commit(request, background, result)

        router.add_api_route(
            f"/{path}/batch",
            write_batch,
            methods=["POST"],
            response_model=WriteResult,
            tags=[tag],
            summary=f"Write a JSON batch of rows ({label})",
            description=_BATCH_DOC,
            responses=_ROW_ERRORS,
            openapi_extra=_json_schema(kind.model, array=True),
            name=f"write_{kind.name}_batch",
        )

    if files:

        async def import_file(
            request: Request,
            session: SessionDep,
            _: WriterDep,
            background: BackgroundTasks,
            timezone: ZoneQuery = None,
        ) -> Any:
            upload = await uploads.receive_upload(request, _max_body(request))
            try:
                result = await run_in_threadpool(write_file, session, kind, upload.file, timezone)
            finally:
                await upload.close()
            return _notify_after_commit(request, background, result)

        router.add_api_route(
            f"/{path}/import",
            import_file,
            methods=["POST"],
            response_model=WriteResult,
            tags=[tag],
            summary=f"Import a CSV or XLSX file of rows ({label})",
            description=_IMPORT_DOC,
            responses=_FILE_ERRORS,
            openapi_extra=_UPLOAD_SCHEMA,
            name=f"import_{kind.name}",
        )


_add_routes("readings", READING, "readings", single=True, batch=True, files=True)
_add_routes("telemetry", TELEMETRY, "telemetry", single=True, batch=True, files=True)
_add_routes("weather", WEATHER, "weather", single=True, batch=True, files=True)
_add_routes("equipment-events", EQUIPMENT_EVENT, "equipment", single=True, batch=True, files=False)
_add_routes(
    "anomaly-labels", ANOMALY_LABEL, "anomaly labels", single=False, batch=True, files=False
)
