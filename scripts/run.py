"""``make run``: database, migrations, the four services, demo data; Ctrl-C stops it all."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from services.common.migrations import upgrade_all
from services.common.settings import ServiceSettings
from services.common.stack import (
    ROOT,
    SERVICE_PORTS,
    embedded_postgres,
    service_env,
    start_services,
)


def main() -> int:
    data = ROOT / ".data"
    (data / "logs").mkdir(parents=True, exist_ok=True)
    url = os.environ.get("DATABASE_URL") or embedded_postgres(data / "pg", on_exit="stop")
    print(f"database: {'DATABASE_URL' if os.environ.get('DATABASE_URL') else data / 'pg'}")
    upgrade_all(url)
    env = service_env(url)
    settings = ServiceSettings()  # the environment and .env, as the services read them
    for name in SERVICE_PORTS:
        env.setdefault(f"{name.upper()}_WORKERS", str(getattr(settings, f"{name}_workers")))
    procs = start_services(env, log_dir=data / "logs")
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        seed_demo_data(env)
        gateway = next(p for p in procs if p.name == "gateway")
        print(f"\nSP-E is up: {gateway.url}  (logs in {data / 'logs'})")
        print(f"  login: {admin_login(env)}   API docs: {gateway.url}/docs")
        for p in procs:
            workers = f"  ({p.workers} workers)" if p.workers > 1 else ""
            print(f"  {p.name:<9} {p.url}/health{workers}")
        print("Ctrl-C stops everything.")
        while not stop:
            for p in procs:
                if p.proc is not None and p.proc.poll() is not None:
                    print(f"{p.name} exited ({p.proc.returncode}); see {data / 'logs'}")
                    return 1
            time.sleep(0.5)
    finally:
        print("\nstopping…")
        for p in reversed(procs):
            p.stop()
    return 0


def admin_login(env: dict[str, str]) -> str:
    """The first admin's credentials as configured (printed so a new user can log in)."""
    from services.gateway.config import GatewaySettings

    settings = GatewaySettings()  # same environment and .env the gateway process reads
    return f"{settings.admin_username} / {settings.admin_password}"


def seed_demo_data(env: dict[str, str]) -> None:
    """Seed demo sites with simulated history through the ingest API if none exist, then ask
    the forecast service for their first forecasts (else they wait for the nightly run)."""
    from services.ingest.simulator import request_first_forecasts, seed_demo_if_empty

    if seed_demo_if_empty(env["INGEST_URL"], env):
        request_first_forecasts(env["FORECAST_URL"], env)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
