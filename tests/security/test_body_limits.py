"""Oversized bodies and files are refused with 413 and a message saying which limit, on every
service, whether the size is declared (Content-Length) or only found while streaming
(chunked, no Content-Length); nothing of a refused request is stored."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.security.conftest import (
    MAX_BATCH_ROWS,
    MAX_BODY_MB,
    MAX_UPLOAD_MB,
    SITE,
    START,
    SecurityStack,
    admin_headers,
)

pytestmark = pytest.mark.e2e
MB = 2**20

# A JSON POST route of each service (the gateway's login needs no token: the limit comes first).
JSON_ROUTES = [
    ("ingest", "/v1/sites"),
    ("forecast", "/v1/jobs/retrain"),
    ("alerts", "/v1/rules"),
    ("gateway", "/api/v1/sites"),
    ("gateway", "/api/v1/auth/login"),
]
IMPORT_ROUTES = [("ingest", "/v1/readings/import"), ("gateway", "/api/v1/readings/import")]
BATCH_ROUTES = [("ingest", "/v1/readings/batch"), ("gateway", "/api/v1/readings/batch")]


def _big_json(size: int) -> bytes:
    return json.dumps({"code": "X", "name": "x" * size}).encode()


def _chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _post(stack: SecurityStack, service: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = admin_headers() | kwargs.pop("headers", {})
    return httpx.post(stack.url(service) + path, headers=headers, timeout=30, **kwargs)


def _assert_413(r: httpx.Response, setting: str, unit: str = "MB") -> None:
    assert r.status_code == 413, r.text[:300]
    body = r.json()
    assert body["error"] == "PayloadTooLarge"
    assert setting in body["detail"] and unit in body["detail"], body


@pytest.mark.parametrize(("service", "path"), JSON_ROUTES)
@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
def test_json_body_over_max_body_mb_is_413(
    service: str, path: str, streamed: bool, security_stack: SecurityStack
) -> None:
    body = _big_json(MAX_BODY_MB * MB + 1024)
    content: Any = _chunks(body) if streamed else body

    r = _post(security_stack, service, path, content=content,
              headers={"Content-Type": "application/json"})  # fmt: skip

    _assert_413(r, "MAX_BODY_MB")


@pytest.mark.parametrize(("service", "path"), JSON_ROUTES[:4])
def test_json_body_under_the_limit_is_not_refused_for_size(
    service: str, path: str, security_stack: SecurityStack
) -> None:
    r = _post(security_stack, service, path, content=_big_json(MAX_BODY_MB * MB // 2),
              headers={"Content-Type": "application/json"})  # fmt: skip

    assert r.status_code == 422, r.text[:300]  # read whole and judged on its content


@pytest.mark.parametrize(("service", "path"), BATCH_ROUTES)
def test_json_batch_over_max_rows_is_413_and_stores_nothing(
    service: str, path: str, security_stack: SecurityStack
) -> None:
    before = security_stack.count("ingest.reading")
    rows = [
        {
            "site": SITE,
            "ts": f"2025-01-01T00:{i % 60:02d}:{i // 60:02d}Z",
            "consumption_kwh": 1.0,
            "interval_s": 60,
            "source": "real",
        }  # fmt: skip
        for i in range(MAX_BATCH_ROWS + 1)
    ]

    r = _post(security_stack, service, path, json=rows)

    _assert_413(r, "INGEST_MAX_BATCH_ROWS", unit="rows")
    assert f"at most {MAX_BATCH_ROWS}" in r.json()["detail"]
    assert security_stack.count("ingest.reading") == before


def _csv(size: int) -> bytes:
    header = b"site,ts,consumption_kwh\n"
    line = f"{SITE},{START.isoformat()},1.0\n".encode()
    return header + line * (size // len(line) + 1)


def _xlsx(size: int) -> bytes:
    import openpyxl

    wb = openpyxl.Workbook()
    wb.active.append(["site", "ts", "consumption_kwh"])
    out = io.BytesIO()
    wb.save(out)
    # A real workbook, padded past the limit: refused on its size before it is opened.
    return out.getvalue() + b"\0" * size


def _multipart(name: str, data: bytes, mime: str) -> tuple[bytes, str]:
    request = httpx.Request("POST", "http://x", files={"file": (name, data, mime)})
    return request.read(), request.headers["content-type"]


FILES = {
    "csv": lambda size: _multipart("big.csv", _csv(size), "text/csv"),
    "xlsx": lambda size: _multipart(
        "big.xlsx", _xlsx(size), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    ),
}


@pytest.mark.parametrize(("service", "path"), IMPORT_ROUTES)
@pytest.mark.parametrize("kind", sorted(FILES))
@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
def test_upload_over_ingest_max_upload_mb_is_413_and_stores_nothing(
    service: str, path: str, kind: str, streamed: bool, security_stack: SecurityStack
) -> None:
    before = security_stack.count("ingest.reading")
    body, content_type = FILES[kind](MAX_UPLOAD_MB * MB + 1024)
    content: Any = _chunks(body) if streamed else body

    r = _post(security_stack, service, path, content=content,
              headers={"Content-Type": content_type})  # fmt: skip

    _assert_413(r, "INGEST_MAX_UPLOAD_MB")
    assert security_stack.count("ingest.reading") == before


@pytest.mark.parametrize(("service", "path"), IMPORT_ROUTES)
def test_upload_between_the_two_limits_is_read(
    service: str, path: str, security_stack: SecurityStack
) -> None:
    # Imports have their own limit: a file over MAX_BODY_MB but under INGEST_MAX_UPLOAD_MB is
    # read whole and judged on its content (here: a header with an unknown column).
    size = (MAX_BODY_MB + MAX_UPLOAD_MB) * MB // 2
    data = b"site,ts,consumption_kwh,colour\n" + b"x,y,1,red\n" * (size // 10)
    body, content_type = _multipart("mid.csv", data, "text/csv")

    r = _post(security_stack, service, path, content=body, headers={"Content-Type": content_type})

    assert r.status_code == 422, r.text[:300]
    assert "colour" in r.json()["detail"]
