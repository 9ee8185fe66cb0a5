"""Data simulator: realistic, seeded site data posted through the ingest API like any client.

``model`` generates (numpy only), ``catalog`` describes the demo sites, ``client`` posts; run
``python -m services.ingest.simulator --help``.
"""

from services.ingest.simulator.client import (
    backfill,
    request_first_forecasts,
    run_live,
    seed_demo_if_empty,
)
from services.ingest.simulator.model import simulate

__all__ = ["backfill", "request_first_forecasts", "run_live", "seed_demo_if_empty", "simulate"]
