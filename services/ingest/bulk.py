"""Bulk writes on the request's psycopg 3 connection: COPY, staged upserts, quarantine rows.

Two ways to store validated rows, both idempotent on the table's key:

* ``copy``: a binary COPY straight into the table (readings, telemetry, weather), or one
  ``CopyStream`` spanning the chunks of an import. New measurements, the usual case, never
  conflict, and COPY's batched heap and index inserts cost PostgreSQL about 40 % less than
  ``INSERT ... ON CONFLICT``, which inserts speculatively row by row. A key that exists, or
  repeats in the input, aborts the COPY with ``KEY_CONFLICTS``: the caller runs the whole
  request inside one savepoint (``optimistic``), rolls it back and writes again the staged
  way. One savepoint per request, never one per chunk of a long import: past 64
  subtransactions a backend's subxid cache overflows and every other session's snapshots
  slow down.
* staged upsert: COPY into a temporary table, then one ``INSERT ... SELECT DISTINCT ON (key)
  ... ORDER BY key, n DESC ... ON CONFLICT (key) DO UPDATE``. ``DISTINCT ON`` keeps the last
  occurrence of a key repeated within the chunk (an upsert may not touch a row twice), and
  the key order makes concurrent upserts lock rows in the same order, so they cannot
  deadlock each other. A handful of rows is upserted statement by statement instead.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.types.json import Jsonb

from services.common.errors import Conflict


@dataclass(frozen=True)
class Target:
    """A table rows are written to, and how a row that is already there is replaced."""

    table: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    key: tuple[str, ...]
    # Set to now() when a stored row is replaced (None: the table has no such column).
    touch: str | None = "received_at"
    copy_first: bool = True

    @property
    def updates(self) -> tuple[str, ...]:
        """Columns an upsert overwrites: everything outside the key."""
        return tuple(c for c in self.columns if c not in self.key)


@dataclass(frozen=True)
class Written:
    """What one write stored: distinct keys, and rows superseded by a later one of the chunk."""

    stored: int
    duplicates: int


# A COPY straight into the table met an existing or repeated key (deadlock: a concurrent
# request COPYing overlapping keys in another order).
KEY_CONFLICTS = (pg_errors.UniqueViolation, pg_errors.DeadlockDetected)
# Fewer rows than this are upserted one statement each: cheaper than a temporary table.
SMALL_CHUNK = 64


def write_rows(
    conn: psycopg.Connection[Any],
    target: Target,
    rows: Sequence[tuple[Any, ...]],
    *,
    copy: bool,
) -> Written:
    """Store ``rows`` (tuples in ``target.columns`` order), replacing rows with the same key.

    ``copy``: COPY them straight in, raising one of ``KEY_CONFLICTS`` if a key is taken.
    """
    if not rows:
        return Written(0, 0)
    with _missing_reference_is_conflict():
        if len(rows) < SMALL_CHUNK:
            return upsert_each(conn, target, rows)
        if copy:
            with conn.cursor() as cur:
                _copy(cur, sql.SQL(target.table), target.columns, target.types, rows)
            return Written(len(rows), 0)
        return _staged_upsert(conn, target, rows)


class CopyStream:
    """A COPY into the table kept open across the chunks of an import.

    PostgreSQL stores one chunk while the next is parsed, the socket buffers acting as the
    queue. The server's errors, a taken key among them, surface only when the stream is
    closed; the owner closes it whenever it needs the connection for something else.
    """

    def __init__(self, conn: psycopg.Connection[Any], target: Target) -> None:
        self.conn = conn
        self.target = target
        self.rows = 0  # written since the stream was opened
        self._cursor: psycopg.Cursor[Any] | None = None
        self._context: Any = None
        self._copy: Any = None

    def write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Send ``rows``; the COPY starts on the first rows after a close."""
        if self._copy is None:
            self._cursor = self.conn.cursor()
            self._context = self._cursor.copy(
                sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
                    sql.SQL(self.target.table),
                    sql.SQL(", ").join(map(sql.Identifier, self.target.columns)),
                )
            )
            self._copy = self._context.__enter__()
            self._copy.set_types(list(self.target.types))
        write = self._copy.write_row
        try:
            for row in rows:
                write(row)
        except BaseException as exc:
            self._end(exc)
            raise
        self.rows += len(rows)

    def close(self) -> None:
        """End the COPY and wait for the server: raises ``KEY_CONFLICTS`` if a key was taken."""
        if self._copy is not None:
            with _missing_reference_is_conflict():
                self._end(None)

    def _end(self, exc: BaseException | None) -> None:
        context, cursor = self._context, self._cursor
        self._context = self._cursor = self._copy = None
        self.rows = 0
        try:
            if exc is None:
                context.__exit__(None, None, None)
            else:  # abort the COPY; the error that got us here is the one to report
                with suppress(psycopg.Error):
                    context.__exit__(type(exc), exc, exc.__traceback__)
        finally:
            assert cursor is not None
            cursor.close()


@contextmanager
def _missing_reference_is_conflict() -> Iterator[None]:
    try:
        yield
    except pg_errors.ForeignKeyViolation:
        # The codes were resolved moments ago in this transaction; only a concurrent delete
        # of the site or equipment gets here.
        raise Conflict(
            "a site or equipment referenced by these rows was removed meanwhile; retry"
        ) from None


class optimistic:  # noqa: N801 - used like a function: ``with optimistic(conn) as attempt``
    """A savepoint around a write with ``copy=True``; ``attempt.failed`` says to redo it staged.

    Swallows ``KEY_CONFLICTS`` (rolling back to the savepoint); anything else propagates.
    """

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.failed = False

    def __enter__(self) -> optimistic:
        self.conn.execute("SAVEPOINT ingest_copy")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, _: Any
    ) -> bool:
        if exc_type is None:
            self.conn.execute("RELEASE SAVEPOINT ingest_copy")
            return False
        if issubclass(exc_type, KEY_CONFLICTS):
            self.conn.execute("ROLLBACK TO SAVEPOINT ingest_copy")
            self.conn.execute("RELEASE SAVEPOINT ingest_copy")
            self.failed = True
            return True
        return False


def upsert_each(
    conn: psycopg.Connection[Any], target: Target, rows: Sequence[tuple[Any, ...]]
) -> Written:
    """Upsert a few rows one statement each (pipelined): no temporary table for a handful."""
    positions = [target.columns.index(c) for c in target.key]

    def key(row: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(row[p] for p in positions)

    # Key order, as in the staged upsert, so concurrent writers lock rows in the same order;
    # the sort is stable, so a key repeated in the chunk still ends with its last occurrence.
    ordered = sorted(rows, key=key)
    placeholders = sql.SQL(", ").join(sql.Placeholder() * len(target.columns))
    statement = sql.SQL(
        "INSERT INTO {table} ({cols}) VALUES ({values}) ON CONFLICT ({key}) DO UPDATE SET {sets}"
    ).format(
        table=sql.SQL(target.table),
        cols=sql.SQL(", ").join(map(sql.Identifier, target.columns)),
        values=placeholders,
        key=sql.SQL(", ").join(map(sql.Identifier, target.key)),
        sets=_assignments(target),
    )
    with conn.cursor() as cur:
        cur.executemany(statement, ordered)
    distinct = len({key(r) for r in rows})
    return Written(distinct, len(rows) - distinct)


def _assignments(target: Target) -> sql.Composable:
    sets = [sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in target.updates]
    if target.touch:
        sets.append(sql.SQL("{} = now()").format(sql.Identifier(target.touch)))
    return sql.SQL(", ").join(sets)


def _staged_upsert(
    conn: psycopg.Connection[Any], target: Target, rows: Sequence[tuple[Any, ...]]
) -> Written:
    stage = sql.Identifier(f"_stage_{target.table.rpartition('.')[2]}")
    cols = sql.SQL(", ").join(map(sql.Identifier, target.columns))
    key = sql.SQL(", ").join(map(sql.Identifier, target.key))
    definition = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t))
        for c, t in zip(("n", *target.columns), ("int4", *target.types), strict=True)
    )
    with conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(stage, definition))
        _copy(
            cur,
            stage,
            ("n", *target.columns),
            ("int4", *target.types),
            [(n, *row) for n, row in enumerate(rows)],
        )
        cur.execute(
            sql.SQL(
                "INSERT INTO {table} ({cols}) SELECT DISTINCT ON ({key}) {cols} FROM {stage} "
                "ORDER BY {key}, n DESC ON CONFLICT ({key}) DO UPDATE SET {sets}"
            ).format(
                table=sql.SQL(target.table),
                cols=cols,
                key=key,
                stage=stage,
                sets=_assignments(target),
            )
        )
        stored = cur.rowcount
        # Dropped now rather than at commit: a request may stage several chunks.
        cur.execute(sql.SQL("DROP TABLE {}").format(stage))
    return Written(stored, len(rows) - stored)


def _copy(
    cur: psycopg.Cursor[Any],
    table: sql.Composable,
    columns: Sequence[str],
    types: Sequence[str],
    rows: Iterable[tuple[Any, ...]],
) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        table, sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with cur.copy(statement) as copy:
        copy.set_types(list(types))
        write = copy.write_row
        for row in rows:
            write(row)


# --- quarantine ------------------------------------------------------------------------------

_QUARANTINE_COLUMNS = ("batch_id", "kind", "row_number", "payload", "reason")
_QUARANTINE_TYPES = ("uuid", "text", "int4", "jsonb", "text")


def write_quarantine(
    conn: psycopg.Connection[Any],
    batch_id: uuid.UUID,
    kind: str,
    rejected: Iterable[tuple[int, Any, str]],
) -> None:
    """Keep rejected rows ``(row_number, payload, reason)`` in ``ingest.quarantine``."""
    rows = [
        (batch_id, kind, number, Jsonb(storable_json(payload)), clean_text(reason))
        for number, payload, reason in rejected
    ]
    if rows:
        with conn.cursor() as cur:
            _copy(cur, sql.SQL("ingest.quarantine"), _QUARANTINE_COLUMNS, _QUARANTINE_TYPES, rows)


def storable_json(value: Any) -> Any:
    """``value`` made storable as jsonb, as close to what was sent as PostgreSQL allows.

    jsonb refuses NaN and infinities (JSON parsers accept them), the NUL character and lone
    surrogates; other Python values (spreadsheet dates) become their ISO or str form.
    """
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): storable_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_json(v) for v in value]
    isoformat = getattr(value, "isoformat", None)
    return clean_text(isoformat() if callable(isoformat) else str(value))


def clean_text(text: str) -> str:
    """``text`` without what PostgreSQL text cannot hold (NUL, unpaired surrogates)."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text
