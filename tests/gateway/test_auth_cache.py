"""The gateway's cache of who its callers are: one lookup for concurrent requests of a caller,
an entry renewed by one request before it expires, and changes seen within AUTH_CACHE_S."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from services.gateway.authn import AuthCache, Caller, _Entry
from services.gateway.config import GatewaySettings
from tests.gateway.conftest import access_token, make_user

VIEWER = Caller("user", "ana", "viewer")


class Lookups:
    """A loader that counts its calls, takes a while, and can fail its first call."""

    def __init__(self, cache: AuthCache, *, fail_first: bool = False, delay_s: float = 0.1):
        self.cache, self.fail_first, self.delay_s = cache, fail_first, delay_s
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self) -> _Entry:
        with self.lock:
            self.calls += 1
            first = self.calls == 1
        time.sleep(self.delay_s)
        if first and self.fail_first:
            raise ConnectionError("database unreachable")
        return self.cache.put("user:ana", VIEWER)


def test_concurrent_lookups_of_one_caller_make_one_query() -> None:
    cache = AuthCache(ttl_s=5)
    lookups = Lookups(cache)

    async def ten_requests() -> list[_Entry]:
        return await asyncio.gather(*(cache.load("user:ana", lookups) for _ in range(10)))

    entries = asyncio.run(ten_requests())

    assert lookups.calls == 1
    assert all(entry is entries[0] for entry in entries)
    assert cache.get("user:ana") is entries[0] and not cache.loading


def test_a_failed_lookup_fails_its_own_request_only() -> None:
    cache = AuthCache(ttl_s=5)
    lookups = Lookups(cache, fail_first=True)

    async def three_requests() -> list[_Entry | BaseException]:
        return await asyncio.gather(
            *(cache.load("user:ana", lookups) for _ in range(3)), return_exceptions=True
        )

    first, *others = asyncio.run(three_requests())

    assert isinstance(first, ConnectionError)
    assert all(isinstance(entry, _Entry) and entry.caller == VIEWER for entry in others)
    assert lookups.calls == 3  # the waiters then looked up on their own


def test_an_entry_in_its_last_quarter_is_renewed_once_and_used_meanwhile() -> None:
    cache = AuthCache(ttl_s=4)
    old = cache.put("user:ana", VIEWER)
    assert not cache.due("user:ana", old)  # fresh: 3 s before its last quarter
    old.expires = time.monotonic() + 0.5  # in its last second now

    async def renew() -> tuple[bool, _Entry | None, _Entry]:
        assert cache.due("user:ana", old)  # the first request to see it renews it...
        renewing = asyncio.create_task(cache.load("user:ana", Lookups(cache)))
        await asyncio.sleep(0.02)
        # ... while the others go on with the entry they have, and do not renew it too.
        return cache.due("user:ana", old), cache.get("user:ana"), await renewing

    due_meanwhile, used_meanwhile, new = asyncio.run(renew())

    assert due_meanwhile is False and used_meanwhile is old
    assert cache.get("user:ana") is new and not cache.due("user:ana", new)
    assert new.expires > old.expires


def test_a_busy_callers_deactivation_reaches_them_within_auth_cache_s(
    make_client: Callable[..., TestClient], session: Session, gateway_settings: GatewaySettings
) -> None:
    # Arrange: a user reading all the time through a gateway caching callers for 1 s.
    client = make_client(auth_cache_s=1.0)
    user = make_user(session, role="viewer")
    headers = {"Authorization": f"Bearer {access_token(gateway_settings, user)}"}
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 200

    # Act: deactivated behind the gateway's back (no admin call to drop its entry).
    user.active = False
    session.flush()
    changed_at = time.monotonic()
    refused_after = None
    while time.monotonic() - changed_at < 3:
        r = client.get("/api/v1/auth/me", headers=headers)
        if r.status_code == 401:
            refused_after = time.monotonic() - changed_at
            break
        assert r.status_code == 200
        time.sleep(0.02)

    # Assert: renewed before it expired, the entry was never older than AUTH_CACHE_S.
    assert refused_after is not None and refused_after <= 1.0 + 0.2, refused_after
    assert "disabled" in r.json()["detail"]
