"""Prestart step: wait for the database, then apply migrations.

``python -m services.common.migrate [service ...]`` (all services when none is named).
"""

from __future__ import annotations

import sys
import time

from sqlalchemy import text

from services.common.db import get_engine
from services.common.migrations import SERVICES, upgrade
from services.common.settings import ServiceSettings


def wait_for_database(url: str, timeout_s: float = 60.0) -> None:
    """Poll until the database accepts a query (it may still be starting in compose)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with get_engine(url).connect() as conn:
                conn.execute(text("SELECT 1"))
            return
        except Exception as exc:  # any connection failure: retry until the deadline
            if time.monotonic() > deadline:
                raise SystemExit(f"database not reachable after {timeout_s:.0f}s: {exc}") from exc
            time.sleep(1)


def main(argv: list[str]) -> int:
    names = argv or list(SERVICES)
    unknown = set(names) - set(SERVICES)
    if unknown:
        print(f"unknown service(s): {', '.join(sorted(unknown))}; known: {', '.join(SERVICES)}")
        return 2
    url = ServiceSettings().database_url
    wait_for_database(url)
    for name in names:
        upgrade(name, url)
        print(f"{name}: migrations at head")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
