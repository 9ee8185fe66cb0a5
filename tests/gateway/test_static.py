"""The gateway serving the built UI: files, SPA fallback, cache headers, API paths untouched."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.gateway.static import IMMUTABLE, NO_CACHE, SpaFallback

INDEX = "<!doctype html><title>SP-E</title><div id=root></div>"


@pytest.fixture
def ui_dir(tmp_path: Path) -> Path:
    """A built UI as Vite lays it out: index.html, hashed assets/, public files."""
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text(INDEX)
    (tmp_path / "assets" / "index-AbC123.js").write_text("console.log('spe')")
    (tmp_path / "favicon.svg").write_text("<svg/>")
    (tmp_path.parent / "secret.txt").write_text("outside the UI folder")
    return tmp_path


@pytest.fixture
def ui_client(make_client: Callable[..., TestClient], ui_dir: Path) -> TestClient:
    return make_client(gateway_static_dir=str(ui_dir))


def test_static_index_at_root_is_never_cached(ui_client: TestClient) -> None:
    response = ui_client.get("/")

    assert response.status_code == 200
    assert response.text == INDEX
    assert response.headers["cache-control"] == NO_CACHE
    assert response.headers["content-type"].startswith("text/html")


def test_static_client_side_route_falls_back_to_index(ui_client: TestClient) -> None:
    response = ui_client.get("/alerts?incident=3")

    assert response.status_code == 200
    assert response.text == INDEX
    assert response.headers["cache-control"] == NO_CACHE


def test_static_hashed_asset_is_cached_for_a_year(ui_client: TestClient) -> None:
    response = ui_client.get("/assets/index-AbC123.js")

    assert response.status_code == 200
    assert response.text == "console.log('spe')"
    assert response.headers["cache-control"] == IMMUTABLE
    assert "javascript" in response.headers["content-type"]


def test_static_public_file_is_revalidated(ui_client: TestClient) -> None:
    response = ui_client.get("/favicon.svg")

    assert response.status_code == 200
    assert response.headers["cache-control"] == NO_CACHE


def test_static_missing_asset_is_404_not_the_page(ui_client: TestClient) -> None:
    old_asset = ui_client.get("/assets/index-OLD.js")
    missing_file = ui_client.get("/robots.txt")

    assert old_asset.status_code == 404 and old_asset.json()["error"] == "NotFound"
    assert missing_file.status_code == 404


def test_static_unknown_api_path_stays_a_json_404(ui_client: TestClient) -> None:
    response = ui_client.get("/api/v1/no-such-route")
    bare = ui_client.get("/api")

    assert response.status_code == 404
    assert response.json() == {"error": "NotFound", "detail": "Not Found"}
    assert bare.status_code == 404 and bare.json()["error"] == "NotFound"


def test_static_api_probes_and_docs_keep_priority(ui_client: TestClient) -> None:
    health = ui_client.get("/health")
    metrics = ui_client.get("/metrics")
    openapi = ui_client.get("/openapi.json")
    api = ui_client.get("/api/v1/auth/me")

    assert health.json()["status"] == "ok"
    assert "http_requests_total" in metrics.text
    assert openapi.json()["info"]["title"] == "SP-E gateway"
    assert api.status_code == 401 and api.json()["error"] == "NotAuthenticated"


def test_static_path_traversal_is_refused(ui_client: TestClient, ui_dir: Path) -> None:
    response = ui_client.get("/assets/%2e%2e/%2e%2e/secret.txt")
    dotted = ui_client.get("/..%2fsecret.txt")
    fallback = SpaFallback(ui_dir.resolve(), ui_client.app)

    assert "outside the UI folder" not in response.text
    assert "outside the UI folder" not in dotted.text
    assert fallback._file("/../secret.txt") is None
    assert fallback._file("/assets/../../secret.txt") is None
    assert fallback._file("/favicon.svg") == (ui_dir / "favicon.svg").resolve()


def test_static_post_to_a_page_is_not_the_page(ui_client: TestClient) -> None:
    response = ui_client.post("/alerts")

    assert response.status_code == 404
    assert response.json()["error"] == "NotFound"


def test_static_security_headers_on_the_page(ui_client: TestClient) -> None:
    response = ui_client.get("/cockpit")

    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"


def test_static_unbuilt_ui_says_how_to_build_it(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = make_client(gateway_static_dir=str(tmp_path / "nothing"))

    response = client.get("/")

    assert response.status_code == 404
    assert "npm run build" in response.json()["detail"]
