"""Start one service under uvicorn with its configured number of worker processes.

``python -m services.common.serve <service> [--host H] [--port P]`` is the one command that
runs a service everywhere: ``make run`` and the tests (through ``services.common.stack``), the
benchmarks and the Docker image. ``<SERVICE>_WORKERS`` (default 1) sets the worker processes.

With more than one worker, Prometheus metrics are kept in prometheus_client's multiprocess mode
so ``/metrics``, whichever worker answers it, adds up every worker: ``PROMETHEUS_MULTIPROC_DIR``
is set for the workers to a fresh per-service directory, created here and removed on exit (or,
when the variable is already set, that directory, emptied of stale files first).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

SERVICES = ("ingest", "forecast", "alerts", "gateway")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def metrics_dir(service: str, workers: int) -> Iterator[Path | None]:
    """The multiprocess metrics directory the workers share (None: one worker, none needed)."""
    if workers <= 1:
        # One process keeps its metrics in memory; a stray variable must not switch that off.
        os.environ.pop(MULTIPROC_ENV, None)
        yield None
        return
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):  # counters of a previous run must not carry over
            stale.unlink()
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix=f"spe-{service}-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> None:
    from services.common.settings import ServiceSettings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("service", choices=SERVICES)
    parser.add_argument("--host", help="bind address (default: UVICORN_HOST, else HOST)")
    parser.add_argument(
        "--port", type=int, help="port (default: UVICORN_PORT, else <SERVICE>_PORT)"
    )
    args = parser.parse_args(argv)
    settings = ServiceSettings()
    workers = int(getattr(settings, f"{args.service}_workers"))
    import uvicorn

    with metrics_dir(args.service, workers):
        uvicorn.run(
            f"services.{args.service}.main:build_app",
            factory=True,
            # UVICORN_HOST / UVICORN_PORT as uvicorn's own CLI reads them: what an image sets.
            host=args.host or os.environ.get("UVICORN_HOST") or settings.host,
            port=args.port
            or int(os.environ.get("UVICORN_PORT") or getattr(settings, f"{args.service}_port")),
            workers=workers,
            access_log=False,
            # An idle keep-alive connection is kept longer than clients keep theirs (httpx: 5 s,
            # uvicorn's default too) and load balancers (60 s): the client drops it first, so a
            # request is never sent on a connection the server is closing at that moment.
            timeout_keep_alive=75,
            timeout_graceful_shutdown=5,
        )


if __name__ == "__main__":
    main()
