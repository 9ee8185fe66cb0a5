"""Forecast domain metrics (Prometheus). Labels are bounded: ``kind`` has three values,
``status`` four, and ``site`` is one of the operator's sites (tens, not thousands: sites are
configured by an admin, not created by traffic)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TRAINING_DURATION = Histogram(
    "forecast_training_duration_seconds",
    "Duration of one training run (fetch, backtest, fit, forecast), by kind",
    ["kind"],
    buckets=(0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600),
)
BACKTEST_MAPE = Gauge(
    "forecast_backtest_mape",
    "MAPE (percent) of the latest backtest of a site's model, by site and kind",
    ["site", "kind"],
    # Set from the latest run (the same for every worker): the latest value written wins.
    multiprocess_mode="mostrecent",
)
JOBS = Counter(
    "forecast_jobs_total",
    "Retraining jobs by status reached (queued, running, succeeded, failed)",
    ["status"],
)
