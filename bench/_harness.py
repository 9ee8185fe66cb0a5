"""What the benchmarks share: a throwaway stack, logins, a concurrent load, CPU and memory.

``Stack`` starts an embedded PostgreSQL with a fresh database at head, then the named services
as real uvicorn processes (``services.common.serve``, with ``<SERVICE>_WORKERS`` workers each),
exactly as ``make run`` does. ``run_load`` drives N concurrent keep-alive clients for a while
and keeps every latency by endpoint. ``cpu_s`` / ``tree_*`` / ``PostgresCpu`` / ``PeakRss``
read /proc, so a figure can be given per request in CPU time, which other work on a shared
machine does not inflate the way it inflates wall-clock latency.
"""

from __future__ import annotations

import asyncio
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import httpx  # noqa: E402

from services.common.auth import issue_token  # noqa: E402
from services.common.migrations import upgrade_all  # noqa: E402
from services.common.settings import ServiceSettings  # noqa: E402
from services.common.stack import (  # noqa: E402
    ServiceProcess,
    create_database,
    embedded_postgres,
    free_port,
    service_env,
    start_services,
)

SECRET = "bench-secret-not-for-production-0123456789"
ADMIN_PASSWORD = "bench admin passphrase"
SERVICES = ("GATEWAY", "INGEST", "FORECAST", "ALERTS")


@dataclass
class Stack:
    """A throwaway database and service processes; use as a context manager, or call stop()."""

    name: str
    tmp: Path
    url: str
    env: dict[str, str]
    procs: dict[str, ServiceProcess] = field(default_factory=dict)

    @classmethod
    def create(cls, name: str, **env: str) -> Stack:
        """The database (migrated, empty) and the environment the services will get."""
        tmp = Path(tempfile.mkdtemp(prefix=f"spe-bench-{name}-"))
        url = create_database(embedded_postgres(tmp / "pg", on_exit="delete"), f"spe_bench_{name}")
        upgrade_all(url)
        ports = {n: free_port() for n in SERVICES}
        environment = service_env(
            url,
            SECRET_KEY=SECRET,
            ENVIRONMENT="test",
            LOG_LEVEL="WARNING",
            ADMIN_USERNAME="admin",
            ADMIN_PASSWORD=ADMIN_PASSWORD,
            **{f"{n}_PORT": str(p) for n, p in ports.items()},
            **{f"{n}_URL": f"http://127.0.0.1:{p}" for n, p in ports.items()},
            **env,
        )
        return cls(name, tmp, url, environment)

    def start(self, *names: str) -> Stack:
        """Start the named services (in order) and wait until each is ready."""
        for proc in start_services(self.env, names, log_dir=self.tmp):
            self.procs[proc.name] = proc
        return self

    def __getitem__(self, name: str) -> ServiceProcess:
        return self.procs[name]

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def login(self, username: str = "admin", password: str = ADMIN_PASSWORD) -> dict[str, str]:
        """Headers carrying an access token from the gateway's login."""
        r = httpx.post(
            f"{self['gateway'].url}/api/v1/auth/login",
            json={"username": username, "password": password},
            timeout=30,
        )
        r.raise_for_status()
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def service_headers(self, role: str = "viewer") -> dict[str, str]:
        """Headers carrying a token an internal service accepts (to call it directly)."""
        token = issue_token(
            ServiceSettings(secret_key=SECRET, environment="test"),
            subject="bench",
            role=role,
            token_type="access",
            ttl_s=3600,
        )
        return {"Authorization": f"Bearer {token}"}


# --- load ------------------------------------------------------------------------------------

# A request: (label, method, path, query params, JSON body or None).
Request = tuple[str, str, str, dict[str, str] | None, Any]


def percentile(samples: list[float], q: float) -> float:
    """The nearest-rank percentile ``q`` (0-100) of ``samples``."""
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


@dataclass
class LoadResult:
    elapsed_s: float
    latencies_ms: dict[str, list[float]]
    errors: list[str]

    @property
    def all_ms(self) -> list[float]:
        return [x for v in self.latencies_ms.values() for x in v]

    @property
    def requests(self) -> int:
        return len(self.all_ms)

    def summary(self) -> dict[str, Any]:
        """rps, p50 / p99 overall and p99 by endpoint, errors and the first one."""
        every = self.all_ms
        return {
            "rps": round(len(every) / self.elapsed_s, 1),
            "p50_ms": round(statistics.median(every), 2) if every else None,
            "p99_ms": round(percentile(every, 99), 2) if every else None,
            "errors": len(self.errors),
            "requests": len(every),
            "p99_ms_by_endpoint": {
                k: round(percentile(v, 99), 2) for k, v in sorted(self.latencies_ms.items()) if v
            },
            "first_error": self.errors[0] if self.errors else None,
        }


async def _load(
    base_url: str,
    headers: dict[str, str],
    make: Callable[[int], Request],
    clients: int,
    seconds: float,
    warmup: int,
) -> LoadResult:
    latencies: dict[str, list[float]] = {}
    errors: list[str] = []
    # One keep-alive connection per client, as 50 browsers or integrations would hold. aiohttp,
    # not httpx: the load generator shares the 2 cores with what it measures, and aiohttp's
    # client costs ~0.08 ms of CPU per request where httpx's costs ~0.6 (measured against a
    # trivial server, 50 clients), so less of the machine goes to the clients. Idle
    # connections are dropped after 2 s, long before the services' 75 s keep-alive ends them,
    # so a request is never sent on a connection the server is closing.
    timeout = aiohttp.ClientTimeout(total=30)
    sessions = [
        aiohttp.ClientSession(
            base_url,
            headers=headers,
            timeout=timeout,
            connector=aiohttp.TCPConnector(limit=1, keepalive_timeout=2),
        )
        for _ in range(clients)
    ]

    async def send(http: aiohttp.ClientSession, request: Request) -> tuple[int, bytes]:
        _, method, path, params, body = request
        async with http.request(method, path, params=params, json=body) as r:
            return r.status, await r.read()

    try:
        for i in range(warmup):  # connections, caches, plans
            status, content = await send(sessions[i % clients], make(i))
            if status >= 400:
                raise RuntimeError(f"warm-up request {i}: {status} {content[:200]!r}")
        deadline = time.perf_counter() + seconds

        async def client(k: int) -> None:
            http, i = sessions[k], warmup + k
            while time.perf_counter() < deadline:
                request = make(i)
                label = request[0]
                t0 = time.perf_counter()
                try:
                    status, content = await send(http, request)
                    if status >= 400:
                        errors.append(f"{label}: {status} {content[:200]!r}")
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors.append(f"{label}: {exc!r}")
                latencies.setdefault(label, []).append((time.perf_counter() - t0) * 1000)
                i += clients

        start = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        elapsed = time.perf_counter() - start
    finally:
        for http in sessions:
            await http.close()
    return LoadResult(elapsed, latencies, errors)


def run_load(
    base_url: str,
    headers: dict[str, str],
    make: Callable[[int], Request],
    *,
    clients: int,
    seconds: float,
    warmup: int = 0,
) -> LoadResult:
    """``clients`` concurrent clients for ``seconds``; client k sends make(k), make(k+clients)…"""
    return asyncio.run(_load(base_url, headers, make, clients, seconds, warmup))


# --- CPU and memory from /proc ---------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_s(pid: int, *, children: bool = False) -> float:
    """CPU seconds (user + system) a process has used; with its reaped children's if asked."""
    fields = _stat(pid)
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                tree.setdefault(int(_stat(int(proc.name))[1]), []).append(int(proc.name))
            except (OSError, ValueError, IndexError):
                continue  # the process ended meanwhile
    return tree


def tree_pids(pid: int) -> list[int]:
    """``pid`` and every live descendant (a uvicorn supervisor and its workers)."""
    tree, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(tree.get(p, ()))
    return out


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process tree: live members, and children already reaped."""
    total = 0.0
    for p in tree_pids(pid):
        try:
            total += cpu_s(p, children=True)
        except OSError:
            continue
    return total


def rss_mb(pid: int) -> float:
    """Resident memory of one process, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants (all workers), MB."""
    total = 0.0
    for p in tree_pids(pid):
        try:
            total += rss_mb(p)
        except OSError:
            continue
    return total


class PostgresCpu:
    """CPU seconds used by one PostgreSQL server: postmaster, live backends, reaped ones."""

    def __init__(self, data_dir: Path) -> None:
        pid_file = next(data_dir.rglob("postmaster.pid"))
        self.postmaster = int(pid_file.read_text().split()[0])

    def __call__(self) -> float:
        return tree_cpu_s(self.postmaster)


class PeakRss:
    """Samples the RSS of process trees every 100 ms while in a ``with`` block; peak per name."""

    def __init__(self, pids: dict[str, int], period_s: float = 0.1) -> None:
        self.pids = pids
        self.period_s = period_s
        self.peak_mb: dict[str, float] = dict.fromkeys(pids, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        for name, pid in self.pids.items():
            self.peak_mb[name] = max(self.peak_mb[name], tree_rss_mb(pid))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.period_s)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


class CpuMeter:
    """CPU seconds spent by named process trees (and PostgreSQL, and this process) over a block."""

    def __init__(self, pids: dict[str, int], postgres: PostgresCpu | None = None) -> None:
        self.readers: dict[str, Callable[[], float]] = {
            name: (lambda p=pid: tree_cpu_s(p)) for name, pid in pids.items()
        }
        if postgres is not None:
            self.readers["postgres"] = postgres
        self.readers["load_generator"] = time.process_time
        self.used_s: dict[str, float] = {}

    def __enter__(self) -> CpuMeter:
        self._start = {name: read() for name, read in self.readers.items()}
        return self

    def __exit__(self, *_: object) -> None:
        self.used_s = {name: read() - self._start[name] for name, read in self.readers.items()}

    def per_request_ms(self, requests: int) -> dict[str, float]:
        return {k: round(1000 * v / max(requests, 1), 2) for k, v in self.used_s.items()}


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as uptime prints them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
