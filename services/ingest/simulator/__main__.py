"""CLI: ``python -m services.ingest.simulator backfill|live|seed-demo``."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime

from services.ingest.config import IngestSettings
from services.ingest.simulator.catalog import equipment_specs, site_specs
from services.ingest.simulator.client import (
    DEMO_SEED,
    IngestClient,
    SimulatorError,
    backfill,
    client_auth,
    run_live,
    seed_demo_if_empty,
)
from services.ingest.simulator.model import SimulationError


def _utc(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.ingest.simulator",
        description="Post simulated readings, weather, telemetry, events and anomaly labels "
        "through the ingest API (token: SPE_TOKEN, or minted from SECRET_KEY).",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=None, help="ingest base URL (default: INGEST_URL)")
    common.add_argument("--sites", type=int, default=3, help="number of catalogue sites")
    common.add_argument("--seed", type=int, default=DEMO_SEED, help="same seed, same data")
    common.add_argument(
        "--data-interval",
        type=int,
        default=3600,
        help="readings interval in seconds (divides 3600)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fill = sub.add_parser("backfill", parents=[common], help="post N days of history")
    fill.add_argument("--days", type=float, default=90)
    fill.add_argument("--end", type=_utc, default=None, help="end (ISO, UTC if naive; default now)")
    live = sub.add_parser("live", parents=[common], help="post each new interval as it completes")
    live.add_argument("--interval", type=float, default=60, help="seconds between posts")
    live.add_argument(
        "--speedup", type=float, default=1.0, help="simulated seconds per wall second"
    )
    live.add_argument(
        "--start",
        type=_utc,
        default=None,
        help="simulated start (ISO; default now); with --speedup, replays from there up to now",
    )
    sub.add_parser("seed-demo", parents=[common], help="seed the demo sites if there is no site")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the simulator CLI; exit code 0 on success, 1 when the API refused the data."""
    args = _parser().parse_args(argv)
    url = args.url or IngestSettings().ingest_url
    if args.command == "seed-demo":
        seed_demo_if_empty(url, dict(os.environ))
        return 0
    sites = site_specs(args.sites)
    equipment = equipment_specs(sites)
    try:
        with IngestClient(url, client_auth()) as client:
            if args.command == "backfill":
                report = backfill(
                    client,
                    sites,
                    equipment,
                    days=args.days,
                    seed=args.seed,
                    interval_s=args.data_interval,
                    end=args.end,
                )
                print(
                    f"{len(sites)} sites ({report.sites_created} new), {len(equipment)} equipment"
                    f" ({report.equipment_created} new): {report.summary()}"
                    f" in {report.seconds:.1f} s"
                )
            else:
                print(f"live: posting to {url} every {args.interval:g} s; Ctrl-C stops")
                try:
                    run_live(
                        client,
                        sites,
                        equipment,
                        seed=args.seed,
                        tick_s=args.interval,
                        interval_s=args.data_interval,
                        speedup=args.speedup,
                        start=args.start,
                    )
                except KeyboardInterrupt:
                    print("stopped")
    except (SimulatorError, SimulationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
