from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from services.ingest.config import IngestSettings
from services.ingest.main import build_app
from services.ingest.models import Equipment, Site
from tests.conftest import bind_session, token_for

_seq = itertools.count(1)


@pytest.fixture
def client(session: Session, settings_env: dict[str, Any]) -> Iterator[TestClient]:
    """The ingest app on the test's rolled-back transaction, as an operator.

    No alerts notices: rolled-back rows must not reach another service (tests/e2e covers it).
    """
    app = build_app(IngestSettings(**settings_env, ingest_notify_alerts=False))
    with bind_session(app, session) as c:
        c.headers["Authorization"] = f"Bearer {token_for('operator')}"
        yield c


def make_site(session: Session, **overrides: Any) -> Site:
    """A site with sensible defaults; override any column by keyword."""
    n = next(_seq)
    values: dict[str, Any] = {
        "code": f"SITE{n}",
        "name": f"Site {n}",
        "timezone": "Europe/Paris",
        "country_code": "FR",
        "capacity_kw": 500.0,
        "latitude": 45.0,
        "longitude": 5.0,
    }
    site = Site(**(values | overrides))
    session.add(site)
    session.flush()
    return site


def make_equipment(session: Session, *, site: Site, **overrides: Any) -> Equipment:
    """A pump at ``site`` unless overridden."""
    n = next(_seq)
    values: dict[str, Any] = {"code": f"EQ{n}", "name": f"Pump {n}", "kind": "pump"}
    eq = Equipment(site_id=site.id, **(values | overrides))
    session.add(eq)
    session.flush()
    return eq
