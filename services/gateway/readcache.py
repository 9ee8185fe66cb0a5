"""A short per-process cache of the cockpit's idempotent reads, and their ETags.

Many operators watch the same sites and the cockpit refreshes itself, so the same read (a
site's balance or hourly readings over the same range, seen with the same role) reaches the
gateway many times a second. For ``GATEWAY_READ_CACHE_S`` seconds such an answer is served from
memory instead of asking the internal service again; concurrent misses of one key wait for one
upstream call instead of making one each.

Correctness:
- the key is the caller's role and scopes plus the internal service, path and query string:
  two callers share an entry only if they may see exactly the same thing;
- only whole ``200`` answers are kept (never an error, a 503, or a streamed body);
- every write through this gateway process drops the cached reads of the site it names (all of
  them when it names none, e.g. a batch of readings), and a read that was under way during the
  write is not stored (a generation counter), so after a write a caller of this process never
  sees the data from before it;
- what is written elsewhere (another gateway process or worker, the simulator posting straight
  to ingest, a forecast job finishing) shows up at most ``GATEWAY_READ_CACHE_S`` seconds later.

Refresh ahead: a hit in the last quarter of its entry's life (the last 1.25 s of 5 s) is
answered from memory at once and starts one upstream call in the background that replaces the
entry. A read the cockpit keeps asking for therefore never expires in front of a caller: no
one waits for the upstream service, yet nothing is served older than the TTL. A read nobody
asks for in its last quarter simply expires (one extra upstream call per key and TTL at most).

Every cacheable answer carries an ``ETag`` (a hash of its body); a request whose
``If-None-Match`` names it gets ``304 Not Modified`` without the body.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter
from starlette.responses import Response

READ_CACHE = Counter(
    "gateway_read_cache_total",
    "Cacheable reads by outcome: hit (from memory), miss (asked upstream), shared (waited for "
    "a concurrent miss of the same key), not_modified (answered 304), refresh (a hit near its "
    "expiry that started a background upstream call)",
    ["outcome"],
)
CacheKey = tuple[str, tuple[str, ...], str, str, bytes]
# A hit within this share of the TTL before its expiry refreshes the entry in the background.
REFRESH_SHARE = 0.25


def renewal_due(expires: float, ttl_s: float) -> bool:
    """Whether an entry of ``ttl_s`` seconds expiring at ``expires`` is in its last quarter."""
    return expires - ttl_s * REFRESH_SHARE <= time.monotonic()


def etag_of(body: bytes) -> str:
    """A strong validator for a body: the same bytes give the same tag in every process."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (weak comparison, as RFC 9110 says)."""
    if not if_none_match:
        return False
    wanted = etag.removeprefix("W/")
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == wanted:
            return True
    return False


@dataclass
class CachedRead:
    """A whole 200 answer kept for a while."""

    body: bytes
    headers: dict[str, str]
    etag: str
    site: str | None
    expires: float = 0.0

    def response(self, if_none_match: str | None) -> Response:
        if matches(if_none_match, self.etag):
            READ_CACHE.labels("not_modified").inc()
            return not_modified(self.etag)
        return Response(self.body, status_code=200, headers={**self.headers, "etag": self.etag})


def not_modified(etag: str) -> Response:
    return Response(status_code=304, headers={"etag": etag})


@dataclass
class ReadCache:
    """Entries by key, oldest first, bounded in count and bytes; see the module docstring."""

    ttl_s: float
    max_bytes: int = 64 << 20
    max_entries: int = 4096
    entries: OrderedDict[CacheKey, CachedRead] = field(default_factory=OrderedDict)
    inflight: dict[CacheKey, asyncio.Future[CachedRead | None]] = field(default_factory=dict)
    refreshing: dict[CacheKey, asyncio.Task[None]] = field(default_factory=dict)
    generation: int = 0
    size: int = 0

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0

    def get(self, key: CacheKey) -> CachedRead | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry.expires <= time.monotonic():
            self._drop(key)
            return None
        return entry

    def hit(
        self,
        key: CacheKey,
        entry: CachedRead,
        if_none_match: str | None,
        refresher: Callable[[], Coroutine[Any, Any, None]],
    ) -> Response:
        """The answer to a hit. In the entry's last quarter, ``refresher()`` renews it in the
        background, once: the key is marked before the task first runs."""
        READ_CACHE.labels("hit").inc()
        if (
            renewal_due(entry.expires, self.ttl_s)
            and key not in self.refreshing
            and key not in self.inflight
        ):
            READ_CACHE.labels("refresh").inc()
            task = asyncio.get_running_loop().create_task(refresher())
            self.refreshing[key] = task
            task.add_done_callback(lambda _: self.refreshing.pop(key, None))
        return entry.response(if_none_match)

    async def stop_refreshing(self) -> None:
        """Cancel the background refreshes (at shutdown, before the upstream clients close)."""
        tasks = list(self.refreshing.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def put(self, key: CacheKey, entry: CachedRead, generation: int) -> None:
        """Keep ``entry`` unless a write happened since its upstream call began."""
        if generation != self.generation or len(entry.body) > self.max_bytes // 8:
            return
        self._drop(key)
        entry.expires = time.monotonic() + self.ttl_s
        self.entries[key] = entry
        self.size += len(entry.body)
        while self.entries and (self.size > self.max_bytes or len(self.entries) > self.max_entries):
            self._drop(next(iter(self.entries)))

    def invalidate(self, site: str | None) -> None:
        """Forget the reads of ``site`` (every read when None); reads under way are not kept."""
        self.generation += 1
        if site is None:
            self.entries.clear()
            self.size = 0
            return
        for key in [k for k, e in self.entries.items() if e.site == site]:
            self._drop(key)

    def _drop(self, key: CacheKey) -> None:
        entry = self.entries.pop(key, None)
        if entry is not None:
            self.size -= len(entry.body)
