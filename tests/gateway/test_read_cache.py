"""The gateway's micro-cache of cockpit reads, its invalidation on writes, and ETag / 304.

The upstream here is a small real HTTP server whose answers change on every call (a counter),
so a repeated answer can only have come from the gateway's memory.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.common.auth import issue_token
from services.common.settings import ServiceSettings
from services.gateway.config import GatewaySettings
from services.gateway.fastread import CachedReadMiddleware
from services.gateway.readcache import CachedRead, ReadCache, etag_of, matches
from tests.conftest import TEST_SECRET, serve_app
from tests.gateway.conftest import access_token, make_user

BALANCE = "/api/v1/sites/LYON1/balance?start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z"
OTHER_SITE = "/api/v1/sites/PARIS2/balance?start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z"


class Counting:
    """Upstream answers: every call gets the next number, so a cached answer shows."""

    def __init__(self) -> None:
        self.calls = itertools.count(1)
        self.last = 0

    async def handle(self, request: Request) -> Response:
        from services.common.auth import verify_token

        principal = verify_token(
            ServiceSettings(secret_key=TEST_SECRET, environment="test"),
            request.headers["authorization"].removeprefix("Bearer "),
        )
        self.last = n = next(self.calls)
        if "MISSING" in request.url.path:
            return JSONResponse({"error": "SiteNotFound", "detail": "no site"}, 404)
        if "SLOW" in request.url.path:
            await asyncio.sleep(0.3)
        if request.method != "GET":
            await request.body()
            return JSONResponse({"received": 1, "accepted": 1, "quarantined": 0}, 200)
        return JSONResponse({"n": n, "path": request.url.path, "role": principal.role})


@pytest.fixture(scope="module")
def counting() -> Iterator[tuple[str, Counting]]:
    upstream = Counting()
    app = Starlette(
        routes=[Route("/{path:path}", upstream.handle, methods=["GET", "POST", "PATCH"])]
    )
    with serve_app(app) as url:
        yield url, upstream


@pytest.fixture
def cached_client(
    make_client: Callable[..., TestClient], counting: tuple[str, Counting]
) -> Callable[..., TestClient]:
    return lambda **kw: make_client(ingest_url=counting[0], alerts_url=counting[0], **kw)


@pytest.fixture
def as_role(session: Session, gateway_settings: GatewaySettings) -> Callable[[str], dict[str, str]]:
    def _headers(role: str) -> dict[str, str]:
        user = make_user(session, role=role)
        return {"Authorization": f"Bearer {access_token(gateway_settings, user)}"}

    return _headers


def test_repeated_read_is_served_from_memory_until_the_ttl(
    cached_client: Callable[..., TestClient], as_role: Callable[[str], dict[str, str]]
) -> None:
    client, viewer = cached_client(gateway_read_cache_s=0.5), as_role("viewer")

    first = client.get(BALANCE, headers=viewer)
    again = client.get(BALANCE, headers=viewer)
    time.sleep(0.6)
    later = client.get(BALANCE, headers=viewer)

    assert first.status_code == again.status_code == later.status_code == 200
    assert again.json()["n"] == first.json()["n"]
    assert later.json()["n"] > first.json()["n"]
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["content-type"] == "application/json"
    assert first.headers["cache-control"] == "no-store"  # browsers still never store API data


def test_write_through_the_gateway_drops_that_sites_reads_only(
    cached_client: Callable[..., TestClient], as_role: Callable[[str], dict[str, str]]
) -> None:
    client, admin = cached_client(gateway_read_cache_s=30), as_role("admin")
    lyon, paris = client.get(BALANCE, headers=admin), client.get(OTHER_SITE, headers=admin)

    patched = client.patch("/api/v1/sites/LYON1", json={"name": "Lyon"}, headers=admin)
    lyon_after, paris_after = (
        client.get(BALANCE, headers=admin),
        client.get(OTHER_SITE, headers=admin),
    )
    batch = client.post("/api/v1/readings/batch", json=[], headers=admin)  # names no site
    paris_last = client.get(OTHER_SITE, headers=admin)

    assert patched.status_code == batch.status_code == 200
    assert lyon_after.json()["n"] > lyon.json()["n"]  # LYON1 was written: asked again
    assert paris_after.json()["n"] == paris.json()["n"]  # PARIS2 was not
    assert paris_last.json()["n"] > paris.json()["n"]  # a batch may touch any site


def test_cache_key_includes_the_callers_role(
    cached_client: Callable[..., TestClient], as_role: Callable[[str], dict[str, str]]
) -> None:
    client = cached_client(gateway_read_cache_s=30)

    viewer = client.get(BALANCE, headers=as_role("viewer"))
    operator = client.get(BALANCE, headers=as_role("operator"))
    viewer_again = client.get(BALANCE, headers=as_role("viewer"))  # another viewer: shared

    assert viewer.json()["role"] == "viewer" and operator.json()["role"] == "operator"
    assert operator.json()["n"] != viewer.json()["n"]
    assert viewer_again.json()["n"] == viewer.json()["n"]


def test_if_none_match_with_the_current_etag_is_304_without_body(
    cached_client: Callable[..., TestClient], as_role: Callable[[str], dict[str, str]]
) -> None:
    client, viewer = cached_client(gateway_read_cache_s=30), as_role("viewer")
    first = client.get(BALANCE, headers=viewer)
    etag = first.headers["etag"]

    current = client.get(BALANCE, headers={**viewer, "If-None-Match": etag})
    other = client.get(BALANCE, headers={**viewer, "If-None-Match": '"something-else"'})

    assert current.status_code == 304 and current.content == b""
    assert current.headers["etag"] == etag
    assert other.status_code == 200 and other.json() == first.json()


def test_etag_follows_the_data_when_the_cache_is_off(
    cached_client: Callable[..., TestClient], as_role: Callable[[str], dict[str, str]]
) -> None:
    client, viewer = cached_client(gateway_read_cache_s=0), as_role("viewer")
    first = client.get(BALANCE, headers=viewer)

    changed = client.get(BALANCE, headers={**viewer, "If-None-Match": first.headers["etag"]})

    assert changed.status_code == 200 and changed.json()["n"] > first.json()["n"]
    assert changed.headers["etag"] != first.headers["etag"]


def test_errors_are_never_cached(
    cached_client: Callable[..., TestClient],
    as_role: Callable[[str], dict[str, str]],
    counting: tuple[str, Counting],
) -> None:
    client, viewer = cached_client(gateway_read_cache_s=30), as_role("viewer")
    path = BALANCE.replace("LYON1", "MISSING")

    first = client.get(path, headers=viewer)
    calls = counting[1].last
    second = client.get(path, headers=viewer)

    assert first.status_code == second.status_code == 404
    assert "etag" not in first.headers
    assert counting[1].last == calls + 1


def test_concurrent_misses_of_one_read_make_one_upstream_call(
    cached_client: Callable[..., TestClient],
    as_role: Callable[[str], dict[str, str]],
    counting: tuple[str, Counting],
) -> None:
    client, viewer = cached_client(gateway_read_cache_s=30), as_role("viewer")
    path = BALANCE.replace("LYON1", "SLOW")
    # Warm the caller's authentication first: the concurrent requests then share no database
    # session work (the test's single session cannot be used by requests in parallel).
    assert client.get(BALANCE, headers=viewer).status_code == 200
    before = counting[1].last

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: client.get(path, headers=viewer), range(6)))

    assert {r.status_code for r in answers} == {200}
    assert len({r.json()["n"] for r in answers}) == 1
    assert counting[1].last == before + 1


def test_a_read_asked_for_near_its_expiry_is_refreshed_behind_the_caller(
    cached_client: Callable[..., TestClient],
    as_role: Callable[[str], dict[str, str]],
    counting: tuple[str, Counting],
) -> None:
    # Arrange: a 2 s entry (its last quarter starts at 1.5 s) of a read upstream answers slowly.
    client, viewer = cached_client(gateway_read_cache_s=2.0), as_role("viewer")
    path = BALANCE.replace("LYON1", "SLOW")
    first = client.get(path, headers=viewer)
    kept_at, calls = time.monotonic(), counting[1].last

    # Act: asked for by 6 callers at once in its last quarter, then past its expiry.
    time.sleep(1.6)
    with ThreadPoolExecutor(6) as pool:
        near_expiry = list(pool.map(lambda _: client.get(path, headers=viewer), range(6)))
    while counting[1].last == calls and time.monotonic() < kept_at + 2.0:
        time.sleep(0.01)
    renewed_at = time.monotonic()
    time.sleep(max(0.0, kept_at + 2.0 - time.monotonic()) + 0.4)  # past it; the call takes 0.3
    calls_before = counting[1].last
    after_expiry = client.get(path, headers=viewer)

    # Assert: nobody waited for upstream; one call, made before the expiry, renewed the entry;
    # past the first entry's expiry the renewed one is served from memory (no call).
    assert [r.json()["n"] for r in near_expiry] == [first.json()["n"]] * 6
    assert renewed_at < kept_at + 2.0
    assert calls_before == calls + 1
    assert after_expiry.status_code == 200
    assert after_expiry.json()["n"] == calls + 1 and counting[1].last == calls_before
    assert after_expiry.headers["etag"] != first.headers["etag"]


def _entry(body: bytes, site: str | None = "A") -> CachedRead:
    return CachedRead(body, {"content-type": "application/json"}, etag_of(body), site)


def test_hits_start_one_renewal_and_only_in_the_last_quarter() -> None:
    cache = ReadCache(ttl_s=4)
    key: Any = ("viewer", (), "ingest", "/v1/sites/A/balance", b"")
    cache.put(key, _entry(b'{"n": 1}'), cache.generation)
    entry = cache.entries[key]
    renewals: list[int] = []

    async def renew() -> None:
        renewals.append(1)

    async def hits() -> None:
        cache.hit(key, entry, None, renew)  # fresh: 3 s before its last quarter
        await asyncio.sleep(0)
        entry.expires = time.monotonic() + 0.5  # in its last second now
        for _ in range(3):  # in one go: the renewal's task has not run yet
            cache.hit(key, entry, None, renew)
        await asyncio.gather(*cache.refreshing.values())

    asyncio.run(hits())

    assert renewals == [1] and not cache.refreshing


def test_read_under_way_during_a_write_is_not_kept() -> None:
    cache = ReadCache(ttl_s=30)
    key: Any = ("viewer", (), "ingest", "/v1/sites/A/balance", b"")
    generation = cache.generation  # the upstream call begins

    cache.invalidate("A")  # a write to the site lands meanwhile
    cache.put(key, _entry(b'{"old": true}'), generation)

    assert cache.get(key) is None


def test_cache_is_bounded_in_entries_and_bytes() -> None:
    cache = ReadCache(ttl_s=30, max_bytes=8 * 1000, max_entries=3)
    for i in range(5):
        cache.put(("r", (), "s", f"/{i}", b""), _entry(b"x" * 10), cache.generation)
    cache.put(("r", (), "s", "/big", b""), _entry(b"x" * 1001), cache.generation)  # > max/8

    assert [k[3] for k in cache.entries] == ["/2", "/3", "/4"]
    assert cache.size == 30


def test_if_none_match_forms() -> None:
    tag = etag_of(b"{}")

    assert matches(tag, tag) and matches(f'"x", W/{tag}', tag) and matches("*", tag)
    assert not matches('"other"', tag) and not matches(None, tag)


# --- hits answered before routing (services/gateway/fastread.py) ------------------------------


def test_a_cached_read_is_refused_to_whoever_would_be_refused_without_it(
    cached_client: Callable[..., TestClient],
    session: Session,
    gateway_settings: GatewaySettings,
    as_role: Callable[[str], dict[str, str]],
) -> None:
    client, admin = cached_client(gateway_read_cache_s=30), as_role("admin")
    user = make_user(session, role="viewer")
    viewer = {"Authorization": f"Bearer {access_token(gateway_settings, user)}"}
    first = client.get(BALANCE, headers=viewer)
    other_secret = gateway_settings.model_copy(update={"secret_key": "another-secret-" + "x" * 32})
    forged = access_token(other_secret, user)
    expired = issue_token(
        gateway_settings, subject=user.username, role="viewer", token_type="access", ttl_s=-10
    )
    ghost = make_user(session, role="viewer")
    ghost_headers = {"Authorization": f"Bearer {access_token(gateway_settings, ghost)}"}
    client.delete(f"/api/v1/users/{ghost.username}", headers=admin)

    hit = client.get(BALANCE, headers=viewer)
    refused = {
        "no credentials": client.get(BALANCE),
        "wrong signature": client.get(BALANCE, headers={"Authorization": f"Bearer {forged}"}),
        "expired": client.get(BALANCE, headers={"Authorization": f"Bearer {expired}"}),
        "deleted user": client.get(BALANCE, headers=ghost_headers),
        "not a bearer": client.get(BALANCE, headers={"Authorization": "Basic dXNlcjpwYXNz"}),
    }
    deactivated = client.patch(
        f"/api/v1/users/{user.username}", json={"active": False}, headers=admin
    )
    after = client.get(BALANCE, headers=viewer)

    assert first.status_code == hit.status_code == 200 and hit.json() == first.json()
    assert hit.headers["x-content-type-options"] == "nosniff"  # the common middlewares ran
    for case, response in refused.items():
        assert response.status_code == 401, case
    assert deactivated.status_code == 200
    assert after.status_code == 401 and after.json()["error"] == "NotAuthenticated"


def test_api_token_reads_come_from_memory_until_the_token_is_revoked(
    cached_client: Callable[..., TestClient], as_role: Callable[[str], dict[str, str]]
) -> None:
    client, admin = cached_client(gateway_read_cache_s=30), as_role("admin")
    created = client.post("/api/v1/tokens", json={"name": "power-bi"}, headers=admin).json()
    key = {"X-API-Key": created["token"]}
    bearer = {"Authorization": f"Bearer {created['token']}"}

    first, again, as_bearer = (
        client.get(BALANCE, headers=key),
        client.get(BALANCE, headers=key),
        client.get(BALANCE, headers=bearer),
    )
    revoked = client.delete(f"/api/v1/tokens/{created['id']}", headers=admin)
    after = client.get(BALANCE, headers=key)

    assert first.status_code == again.status_code == as_bearer.status_code == 200
    assert again.json()["n"] == as_bearer.json()["n"] == first.json()["n"]
    assert revoked.status_code == 200
    assert after.status_code == 401


def test_hits_are_counted_under_their_route_template(
    cached_client: Callable[..., TestClient], as_role: Callable[[str], dict[str, str]]
) -> None:
    client, viewer = cached_client(gateway_read_cache_s=30), as_role("viewer")
    route = 'route="/api/v1/sites/{code}/balance"'

    def served() -> float:
        text = client.get("/metrics").text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("http_requests_total{") and route in line and 'status="200"' in line
        )

    before = served()
    for _ in range(3):
        assert client.get(BALANCE, headers=viewer).status_code == 200

    assert served() - before == 3
    assert "<unmatched>" not in "".join(
        line for line in client.get("/metrics").text.splitlines() if "/balance" in line
    )


def test_hits_are_answered_before_the_app_and_the_rest_goes_on_to_it(
    cached_client: Callable[..., TestClient], as_role: Callable[[str], dict[str, str]]
) -> None:
    # Arrange: the gateway's cache warmed the full way, then its middleware in front of an app
    # that only says it was reached.
    client, viewer = cached_client(gateway_read_cache_s=30), as_role("viewer")
    first = client.get(BALANCE, headers=viewer)

    async def reached(scope: Any, receive: Any, send: Any) -> None:
        await Response(b"reached the app", status_code=299)(scope, receive, send)

    front = TestClient(CachedReadMiddleware(reached, fastapi_app=client.app))  # type: ignore[arg-type]

    # Act
    hit = front.get(BALANCE, headers=viewer)
    other_site = front.get(OTHER_SITE, headers=viewer)  # not cached yet
    anonymous = front.get(BALANCE)
    write = front.post(BALANCE, headers=viewer)

    # Assert
    assert hit.status_code == 200 and hit.json() == first.json()
    assert hit.headers["etag"] == first.headers["etag"]
    for response in (other_site, anonymous, write):
        assert response.status_code == 299
