"""Hostile file names on imports (ingest directly and through the gateway): the name is only
a label, so nothing is written anywhere it points, uploads are spooled under the service's
temporary folder with names of its own and removed afterwards, and the name is neither
echoed back nor stored (response body, gateway audit log, ingest quarantine)."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from services.common.settings import to_sqlalchemy_url
from services.common.stack import ROOT
from tests.security.conftest import SITE, START, SecurityStack, admin_headers

pytestmark = pytest.mark.e2e

NAMES = {
    "dot_dot": b"../../../../../../etc/passwd",
    "dot_dot_deep": b"../../../../../../../../tmp/spe-traversal-marker.csv",
    "absolute": b"/etc/cron.d/spe-traversal",
    "backslashes": b"..\\..\\..\\windows\\win.ini",
    "drive_letter": b"C:\\Windows\\System32\\spe.csv",
    "nul_byte": b"readings.csv\x00../../etc/passwd",
    "encoded": b"%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "dot_dot_slashes": b"....//....//....//spe-traversal.csv",
    "unicode_dots": "\u2025/\u2025/spe-traversal.csv".encode(),
}
# Past Starlette's 1 MB in-memory spool, so the upload is really written to disk (in the
# services' TMPDIR); blank lines carry no row, so the file stays one reading.
PADDING = b"\n" * (1100 * 1024)
_n = iter(range(1, 10_000))


def _csv() -> bytes:
    ts = (START - timedelta(days=30, hours=next(_n))).isoformat()
    return f"site,ts,consumption_kwh,production_kwh\n{SITE},{ts},12.5,1.0\n".encode() + PADDING


def _multipart(filename: bytes, data: bytes) -> tuple[bytes, str]:
    boundary = b"spe-traversal-boundary"
    body = (
        b"--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n'
        b"Content-Type: text/csv\r\n\r\n" + data + b"\r\n--" + boundary + b"--\r\n"
    )
    return body, f"multipart/form-data; boundary={boundary.decode()}"


def _targets(name: bytes, stack: SecurityStack) -> list[Path]:
    """Where a service that trusted the name might have written: from its cwd, its TMPDIR."""
    text_name = name.split(b"\x00")[0].decode("utf-8", "replace").replace("\\", "/")
    out = []
    for base in (ROOT, stack.tmp_dir / "spool"):
        out.append(Path(os.path.normpath(base / text_name)))
    out.append(Path(os.path.normpath("/" + text_name.lstrip("/"))))
    return out


def _mtimes(paths: list[Path]) -> dict[Path, float | None]:
    return {p: (p.stat().st_mtime if p.exists() else None) for p in paths}


@pytest.mark.parametrize("via", ["ingest", "gateway"])
@pytest.mark.parametrize("label", sorted(NAMES))
def test_hostile_file_name_writes_nothing_and_is_not_echoed(
    via: str, label: str, security_stack: SecurityStack
) -> None:
    name = NAMES[label]
    targets = _targets(name, security_stack)
    before = _mtimes(targets)
    path = "/v1/readings/import" if via == "ingest" else "/api/v1/readings/import"
    started = time.time()
    body, content_type = _multipart(name, _csv())

    r = httpx.post(
        security_stack.url(via) + path,
        content=body,
        headers=admin_headers() | {"Content-Type": content_type},
        timeout=60,
    )

    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1 and r.json()["quarantined"] == 0, r.text
    for fragment in (b"passwd", b"win.ini", b"traversal", b".."):
        if fragment in name:
            assert fragment.decode() not in r.text
    assert _mtimes(targets) == before, "a file was written where the name pointed"
    spool = security_stack.tmp_dir / "spool"
    assert not list(spool.iterdir()), "a spooled upload was left behind"
    assert not [p for p in ROOT.glob("*") if p.stat().st_mtime >= started and "traversal" in p.name]


def test_file_names_are_stored_nowhere(security_stack: SecurityStack) -> None:
    # After the imports above: neither the audit log nor the quarantine holds a name.
    engine = create_engine(to_sqlalchemy_url(security_stack.database_url))
    try:
        with engine.connect() as conn:
            audit = conn.execute(text("SELECT detail::text FROM auth.audit_log")).scalars().all()
            quarantine = (
                conn.execute(text("SELECT payload::text FROM ingest.quarantine")).scalars().all()
            )
    finally:
        engine.dispose()
    stored = " ".join(audit + quarantine)
    for fragment in ("passwd", "win.ini", "spe-traversal", "System32"):
        assert fragment not in stored
