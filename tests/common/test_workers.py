"""Several uvicorn workers per service: /metrics adds up every worker, the metrics folder is the
starter's to create and remove, and a schedule has one leader among all processes."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from services.common.db import PING_AFTER_IDLE_S, get_engine
from services.common.leader import LeaderLock
from services.common.settings import to_sqlalchemy_url
from services.common.stack import ServiceProcess, free_port, service_env
from tests.conftest import TEST_SECRET


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (a uvicorn supervisor's workers)."""
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(proc.name))
    return out


def _metrics_dir_of(pid: int) -> Path:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    value = next(v for v in environ if v.startswith(b"PROMETHEUS_MULTIPROC_DIR="))
    return Path(value.split(b"=", 1)[1].decode())


def _health_total(metrics: str) -> float:
    pattern = r'^http_requests_total\{[^}]*route="/health"[^}]*\} (\S+)$'
    return sum(float(v) for v in re.findall(pattern, metrics, re.M))


@pytest.mark.e2e
def test_metrics_add_up_every_worker_and_the_folder_is_removed_at_stop(
    make_database: Callable[[str], str],
) -> None:
    url = make_database("workers")
    port = free_port()
    env = service_env(
        url, SECRET_KEY=TEST_SECRET, ENVIRONMENT="test", LOG_LEVEL="WARNING",
        INGEST_PORT=str(port), INGEST_WORKERS="2", INGEST_NOTIFY_ALERTS="false",
    )  # fmt: skip
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = ServiceProcess("ingest", port, env).start()
    try:
        proc.wait_ready()
        deadline = time.monotonic() + 20
        while len(workers := _children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        folder = _metrics_dir_of(workers[0])
        assert _metrics_dir_of(workers[1]) == folder and folder.is_dir()

        # A new connection per request, several at once, until both workers have served some
        # (each worker writes its counters to a file named after its pid).
        sent = 0
        with ThreadPoolExecutor(8) as pool:
            while sent < 400:
                codes = list(pool.map(lambda _: httpx.get(f"{proc.url}/health").status_code,
                                      range(40)))  # fmt: skip
                assert set(codes) == {200}
                sent += len(codes)
                served_by = {p.stem.rsplit("_", 1)[1] for p in folder.glob("counter_*.db")}
                if len(served_by) >= 2:
                    break
        metrics = [httpx.get(f"{proc.url}/metrics").text for _ in range(4)]

        assert len(served_by) >= 2, "requests never reached the second worker"
        assert {_health_total(m) for m in metrics} == {float(sent)}  # whichever worker answers
    finally:
        proc.stop()
    assert not folder.exists()


def test_one_leader_among_processes_and_the_next_takes_over(database_url: str) -> None:
    first, second = (
        LeaderLock(database_url, "test.schedule"),
        LeaderLock(database_url, "test.schedule"),
    )
    other = LeaderLock(database_url, "test.other-schedule")
    try:
        assert first.acquire() and first.acquire()  # kept while held
        assert not second.acquire()
        assert other.acquire()  # another schedule has its own leader

        first.release()  # the leader stops (or dies: its connection closes the same way)

        assert second.acquire()
        assert not first.acquire()
    finally:
        for lock in (first, second, other):
            lock.release()


def test_leader_whose_connection_died_gives_way(database_url: str) -> None:
    first, second = LeaderLock(database_url, "test.dying"), LeaderLock(database_url, "test.dying")
    try:
        assert first.acquire()
        assert first.conn is not None
        pid = first.conn.info.backend_pid
        admin = create_engine(to_sqlalchemy_url(database_url))
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        admin.dispose()

        assert second.acquire()  # the lock went with the connection
        assert not first.acquire()  # and the old leader notices it no longer leads
    finally:
        first.release()
        second.release()


def test_idle_pooled_connection_that_died_is_replaced_not_failed(database_url: str) -> None:
    engine = get_engine(database_url, 1)
    with engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
    admin = create_engine(to_sqlalchemy_url(database_url))
    with admin.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    admin.dispose()
    time.sleep(PING_AFTER_IDLE_S + 0.1)  # idle long enough to be checked before use

    with engine.connect() as conn:
        again = conn.execute(text("SELECT pg_backend_pid()")).scalar()

    assert again != pid
