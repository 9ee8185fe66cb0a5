from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.ingest.conftest import make_site


def test_create_site_then_list_it(client: TestClient) -> None:
    body = {"code": "LYON1", "name": "Lyon", "timezone": "Europe/Paris", "capacity_kw": 250.0}

    created = client.post("/v1/sites", json=body)
    listed = client.get("/v1/sites")

    assert created.status_code == 201, created.text
    assert created.json()["code"] == "LYON1"
    assert [s["code"] for s in listed.json()] == ["LYON1"]


def test_create_site_twice_is_conflict(client: TestClient, session: Session) -> None:
    site = make_site(session)
    body = {"code": site.code, "name": "again", "timezone": "UTC"}

    r = client.post("/v1/sites", json=body)

    assert r.status_code == 409
    assert r.json()["error"] == "Conflict"


def test_create_site_with_unknown_timezone_is_422_with_field(client: TestClient) -> None:
    r = client.post("/v1/sites", json={"code": "X1", "name": "x", "timezone": "Mars/Olympus"})

    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "ValidationError"
    assert body["errors"][0]["loc"] == ["body", "timezone"]
    assert "Mars/Olympus" in body["detail"]


def test_unknown_site_is_404_in_the_error_shape(client: TestClient) -> None:
    r = client.get("/v1/sites/NOPE")

    assert r.status_code == 404
    assert r.json() == {
        "error": "SiteNotFound",
        "detail": "no site with code 'NOPE'; list sites with GET /v1/sites",
    }


def test_viewer_cannot_create_site(client: TestClient, auth) -> None:
    r = client.post(
        "/v1/sites", json={"code": "V1", "name": "v", "timezone": "UTC"}, headers=auth("viewer")
    )

    assert r.status_code == 403
    assert r.json()["error"] == "Forbidden"


def test_request_without_token_is_401(client: TestClient) -> None:
    r = client.get("/v1/sites", headers={"Authorization": ""})

    assert r.status_code == 401
    assert r.json()["error"] == "NotAuthenticated"


def test_site_with_readings_cannot_be_deleted(session: Session) -> None:
    from datetime import UTC, datetime

    import pytest
    from sqlalchemy import delete
    from sqlalchemy.exc import IntegrityError

    from services.ingest.models import Reading, Site

    site = make_site(session)
    session.add(
        Reading(site_id=site.id, ts=datetime(2026, 1, 1, tzinfo=UTC), source="real",
                consumption_kwh=1.0, production_kwh=0.0, interval_s=3600)
    )  # fmt: skip
    session.flush()

    with pytest.raises(IntegrityError, match="still has measurements"), session.begin_nested():
        session.execute(delete(Site).where(Site.id == site.id))


def test_site_without_measurements_can_be_deleted(session: Session) -> None:
    from sqlalchemy import delete, select

    from services.ingest.models import Site

    site = make_site(session)

    session.execute(delete(Site).where(Site.id == site.id))

    assert session.scalar(select(Site).where(Site.id == site.id)) is None
