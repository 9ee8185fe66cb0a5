"""File uploads for imports: receive a multipart body within a size limit, then stream its rows.

A file is recognised by its content, not its name: an .xlsx is a zip archive (``PK\\x03\\x04``);
anything else must be UTF-8 text, read as CSV (comma, semicolon or tab separated, guessed
from the header line). Rows come out in chunks of plain dicts keyed by column name, with the
row number a spreadsheet shows (header = 1), so memory stays bounded whatever the file size.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import IO, Any, Literal

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from services.common.errors import AppError, BadInput, PayloadTooLarge, UnsupportedMediaType

FileFormat = Literal["csv", "xlsx"]
CHUNK_ROWS = 10_000
_SNIFF_BYTES = 64 * 1024
# csv's default field limit (128 KiB) is far above any cell of ours; keep it as the bound.


class BadRequest(AppError):
    status_code = 400


async def receive_upload(request: Request, max_bytes: int) -> UploadFile:
    """The ``file`` field of a multipart body, spooled to disk; 413 past ``max_bytes``."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise UnsupportedMediaType(
            "send the file as multipart/form-data, in a form field named 'file' "
            f"(got Content-Type {content_type or 'none'!r})"
        )
    _check_declared_length(request, max_bytes)
    parser = MultiPartParser(
        request.headers, _limited(request.stream(), max_bytes), max_files=1, max_fields=10
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise BadRequest(f"malformed multipart body: {exc.message}") from None
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        await form.close()
        raise BadInput("the form has no file field named 'file'")
    return upload


def _check_declared_length(request: Request, max_bytes: int) -> None:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large(max_bytes)


async def read_limited_body(request: Request, max_bytes: int) -> bytes:
    """The whole request body; 413 as soon as it grows past ``max_bytes``."""
    _check_declared_length(request, max_bytes)
    return b"".join([chunk async for chunk in _limited(request.stream(), max_bytes)])


async def _limited(stream: AsyncIterator[bytes], max_bytes: int) -> AsyncGenerator[bytes, None]:
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > max_bytes:
            raise too_large(max_bytes)
        yield chunk


def too_large(max_bytes: int) -> PayloadTooLarge:
    """The 413 for a body over the limit."""
    return PayloadTooLarge(f"the request body is over the limit of {max_bytes // 2**20} MB")


# --- reading files ---------------------------------------------------------------------------


@dataclass
class Table:
    """An opened file: its format, its column names, and its non-blank rows in chunks.

    A row is ``(row number, cells)``: CSV cells as read (text), spreadsheet cells as
    ``_xlsx_cell`` made them. ``record`` turns cells into the dict they stand for.
    """

    format: FileFormat
    columns: list[str]
    chunks: Iterator[list[tuple[int, list[Any]]]]
    # Decimal commas ("12,5") are usual in semicolon-separated files from French spreadsheets.
    decimal_comma: bool = False

    def record(self, cells: Sequence[Any]) -> dict[str, Any]:
        """The row as sent: its non-empty cells by column name (``column N`` past the header)."""
        width = len(self.columns)
        out = {}
        for j, value in enumerate(cells):
            if isinstance(value, str):
                value = value.strip()
            if value:
                out[self.columns[j] if j < width else f"column {j + 1}"] = value
        return out


def open_table(file: IO[bytes], known: Sequence[str], required: Sequence[str]) -> Table:
    """Recognise the file, check its header against the known columns, stream its rows."""
    head = file.read(8)
    file.seek(0)
    if not head:
        raise BadInput("the file is empty")
    if head.startswith(b"PK\x03\x04"):
        header, rows = _xlsx_rows(file)
        table_format: FileFormat = "xlsx"
        decimal_comma = False
    elif head.startswith(b"\xd0\xcf\x11\xe0"):
        raise UnsupportedMediaType("legacy .xls files are not supported; save it as .xlsx or CSV")
    else:
        header, rows, delimiter = _csv_rows(file)
        table_format, decimal_comma = "csv", delimiter == ";"
    columns = _check_header(header, known, required)
    return Table(table_format, columns, rows, decimal_comma)


def _check_header(header: list[Any], known: Sequence[str], required: Sequence[str]) -> list[str]:
    names = [str(h).strip().lstrip("\ufeff").lower() if h is not None else "" for h in header]
    while names and not names[-1]:  # spreadsheets often carry empty trailing header cells
        names.pop()
    if not any(names):
        raise BadInput(
            "the first row must be a header naming the columns, e.g. " + ", ".join(known)
        )
    if "" in names:
        raise BadInput(f"column {names.index('') + 1} of the header has no name")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BadInput(
            f"unknown column(s): {', '.join(unknown)}; known columns: {', '.join(known)}",
            extra={"unknown_columns": unknown},
        )
    missing = [n for n in required if n not in names]
    if missing:
        raise BadInput(
            f"missing column(s): {', '.join(missing)}", extra={"missing_columns": missing}
        )
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise BadInput(f"duplicated column(s): {', '.join(duplicated)}")
    return names


def _csv_rows(file: IO[bytes]) -> tuple[list[Any], Iterator[list[tuple[int, list[Any]]]], str]:
    sample = file.read(_SNIFF_BYTES)
    file.seek(0)
    if b"\x00" in sample:
        raise UnsupportedMediaType("unsupported file: expected a CSV (UTF-8 text) or .xlsx file")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        raise UnsupportedMediaType(
            "the file is not UTF-8 text (nor .xlsx): save the CSV as UTF-8"
        ) from None
    first_line = sample.split(b"\n", 1)[0].decode("utf-8", "ignore")
    delimiter = max((",", ";", "\t"), key=first_line.count)
    # Plain utf-8 (C speed; utf-8-sig decodes in Python): a BOM is dropped with the header.
    text = io.TextIOWrapper(file, encoding="utf-8", newline="")
    reader = csv.reader(text, delimiter=delimiter)
    try:
        header = next(reader, [])
    except (csv.Error, UnicodeDecodeError) as exc:
        text.detach()
        raise BadInput(f"line 1: {exc}") from None
    return header, _csv_records(reader, text), delimiter


def _csv_records(reader: Any, text: io.TextIOWrapper) -> Iterator[list[tuple[int, list[Any]]]]:
    number = 1  # the header
    chunk: list[tuple[int, list[Any]]] = []
    try:
        for cells in reader:
            number += 1
            if cells:  # csv yields [] for an empty line
                chunk.append((number, cells))
                if len(chunk) >= CHUNK_ROWS:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk
    except UnicodeDecodeError:
        raise UnsupportedMediaType(
            f"line {number + 1} is not valid UTF-8: save the CSV as UTF-8"
        ) from None
    except csv.Error as exc:
        raise BadInput(f"CSV line {number + 1}: {exc}") from None
    finally:
        # Detached, the wrapper no longer closes the upload when it is collected: a second
        # (staged) attempt reads the file again.
        text.detach()


def _xlsx_rows(file: IO[bytes]) -> tuple[list[Any], Iterator[list[tuple[int, list[Any]]]]]:
    import openpyxl  # imported on first use: it is slow to import and most writes are JSON

    try:
        workbook = openpyxl.load_workbook(file, read_only=True, data_only=True)
        rows = workbook.worksheets[0].iter_rows(values_only=True)
        header = list(next(rows, ()))
    except Exception as exc:  # zipfile, XML, openpyxl's own: all mean "not a workbook"
        raise UnsupportedMediaType(
            f"the file is a zip archive but not a readable .xlsx workbook: {exc!r}"
        ) from None

    def records() -> Iterator[list[tuple[int, list[Any]]]]:
        try:
            # read_only iter_rows yields empty rows for gaps, so counting matches the sheet.
            number = 1
            chunk: list[tuple[int, list[Any]]] = []
            for number, cells in enumerate(rows, start=2):  # noqa: B007 - read in except
                values = [_xlsx_cell(c) for c in cells]
                if any(values):
                    chunk.append((number, values))
                    if len(chunk) >= CHUNK_ROWS:
                        yield chunk
                        chunk = []
            if chunk:
                yield chunk
        except AppError:
            raise
        except Exception as exc:  # a damaged sheet fails in the XML or zip layer, any way
            raise UnsupportedMediaType(
                f"the workbook is damaged near row {number + 1}: {exc!r}"
            ) from None
        finally:
            workbook.close()

    return header, records()


def _xlsx_cell(value: Any) -> Any:
    """A cell as CSV would carry it: text, except datetimes (kept for the timezone rule)."""
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):  # before int: bool is an int, and TRUE is not 1 kWh
        return "true" if value else "false"
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)
