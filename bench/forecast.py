"""Benchmark of the day-ahead load forecast on real data (GEFCom 2012, one US utility).

Through the product's path: a throwaway embedded PostgreSQL and a real ingest process; the CSV
is imported as one site's readings and weather with the JSON batch routes, read back with the
read routes, then trained and backtested by the forecast service's ML code
(``services.forecast.ml``). If the ingest write routes are missing it fails; it never reads the
CSV around the product.

- Site ``GEFCOM``: timezone UTC (the file's clock has no DST, see its README), country US.
- Units: the file's load is in kW per hour, up to 3.3 million, over the ingest bound of
  1,000,000 kWh per interval (a unit-error guard). It is divided by 1,000 (kW -> MW) before
  import, so RMSE figures are in MWh; MAPE, skill and coverage do not depend on the unit.
- 60-day rolling-origin day-ahead backtest (issued at the end of D-1: lags >= 24 h), retrained
  weekly on the last two years, twice: with day D's measured temperature standing in for its
  forecast, and with no temperature for day D (only up to the day before).
- ``train_s``: one production training (features + fit) on two years of hourly data, median
  of three; ``predict_s``: one production day-ahead forecast (features + predict). The machine
  has 2 cores shared with other work, so timings are noisy.

Last line: one JSON object of the figures (with-temperature run; ``_no_temp`` keys for the
other). Run: .venv/bin/python bench/forecast.py [--days 60] [--issue-hour 24]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import pandas as pd
from _harness import ROOT, Stack

from services.forecast.ml import backtest, forecast_day, train
from services.forecast.ml.backtest import BacktestResult
from services.forecast.ml.features import issue_time, known_weather_only

DATA = ROOT.parent / "shared" / "data" / "gefcom2012_total_hourly.csv"
SITE = "GEFCOM"
TZ = "UTC"
COUNTRY = "US"
KW_TO_MW = 1 / 1000  # keeps every hourly value under ingest's 1,000,000 kWh bound
BATCH_ROWS = 10_000
READ_SPAN = timedelta(days=365)  # under the read routes' 3-year span limit


@contextmanager
def ingest_service() -> Iterator[tuple[str, dict[str, str]]]:
    """A migrated throwaway database and a real ingest process: (base URL, auth headers)."""
    # No alerts service in this benchmark.
    with Stack.create("forecast", INGEST_NOTIFY_ALERTS="false") as stack:
        stack.start("ingest")
        yield stack["ingest"].url, stack.service_headers("operator")


def _post_batches(http: httpx.Client, route: str, rows: list[dict[str, Any]]) -> int:
    accepted = 0
    for start in range(0, len(rows), BATCH_ROWS):
        r = http.post(route, json=rows[start : start + BATCH_ROWS])
        if r.status_code in (404, 405):
            raise SystemExit(
                f"ingest has no write route {route} ({r.status_code}): this benchmark only "
                "runs through the product's path, it does not read the CSV around it"
            )
        if r.status_code != 200:
            raise SystemExit(f"{route} answered {r.status_code}: {r.text[:500]}")
        result = r.json()
        if result["rejected"]:
            raise SystemExit(f"{route} rejected rows, e.g. {result['rejected'][:3]}")
        accepted += result["accepted"]
    return accepted


def _read_items(
    http: httpx.Client, path: str, first: pd.Timestamp, last: pd.Timestamp, **q: str
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    start = first
    while start <= last:
        end = min(start + READ_SPAN, last + pd.Timedelta(hours=1))
        params = {"start": start.isoformat(), "end": end.isoformat(), **q}
        r = http.get(path, params=params)
        if r.status_code != 200:
            raise SystemExit(f"GET {path} answered {r.status_code}: {r.text[:500]}")
        items += r.json()["items"]
        start = end
    return items


def import_through_ingest(raw: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame, dict[str, float]]:
    """Post the file as site GEFCOM's readings and weather, read both back as pandas objects."""
    measured = raw.dropna(subset=["load"])
    readings = [
        {"site": SITE, "ts": ts.isoformat(), "consumption_kwh": round(v * KW_TO_MW, 3),
         "production_kwh": 0.0, "interval_s": 3600, "source": "import"}
        for ts, v in zip(measured.index, measured["load"], strict=True)
    ]  # fmt: skip
    weather = [
        {"site": SITE, "ts": ts.isoformat(), "temperature_c": round(t, 3), "source": "import"}
        for ts, t in zip(raw.index, raw["temperature"], strict=True)
    ]
    first, last = raw.index[0], raw.index[-1]
    timings: dict[str, float] = {}
    with (
        ingest_service() as (url, headers),
        httpx.Client(base_url=url, headers=headers, timeout=300) as http,
    ):
        site = {"code": SITE, "name": "GEFCom 2012 utility (20 zones)", "timezone": TZ,
                "country_code": COUNTRY}  # fmt: skip
        r = http.post("/v1/sites", json=site)
        if r.status_code != 201:
            raise SystemExit(f"creating the site failed: {r.status_code} {r.text[:300]}")
        t0 = time.perf_counter()
        n_readings = _post_batches(http, "/v1/readings/batch", readings)
        n_weather = _post_batches(http, "/v1/weather/batch", weather)
        timings["import_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        reading_items = _read_items(
            http, f"/v1/sites/{SITE}/readings", first, last, resolution="raw"
        )
        weather_items = _read_items(http, f"/v1/sites/{SITE}/weather", first, last)
        timings["read_s"] = time.perf_counter() - t0
    if (n_readings, n_weather) != (len(readings), len(weather)):
        raise SystemExit(f"stored {n_readings}/{len(readings)} readings, {n_weather} weather")
    if len(reading_items) != len(readings) or len(weather_items) != len(weather):
        raise SystemExit(
            f"read back {len(reading_items)} readings and {len(weather_items)} weather rows, "
            f"posted {len(readings)} and {len(weather)}"
        )
    rd = pd.DataFrame(reading_items)
    load = pd.Series(
        rd["consumption_kwh"].to_numpy(), index=pd.to_datetime(rd["ts"], utc=True), name="load"
    )
    wd = pd.DataFrame(weather_items)
    wx = pd.DataFrame(
        {"temperature_c": wd["temperature_c"].to_numpy()},
        index=pd.to_datetime(wd["ts"], utc=True),
    )
    return load.sort_index(), wx.sort_index(), timings


def production_timings(
    load: pd.Series, weather: pd.DataFrame, res: BacktestResult, issue_hour: int
) -> tuple[float, float]:
    """Seconds of one production training on two years (median of 3) and of one forecast."""
    day = res.hours["target_date"].iloc[0]
    cutoff = issue_time(day, TZ, issue_hour)
    wx = weather if res.target_weather else known_weather_only(weather, cutoff)
    train_times = []
    for _ in range(3):
        t0 = time.perf_counter()
        model = train(
            load, wx, TZ, COUNTRY, cutoff, target_weather=res.target_weather,
            train_window_days=730, issue_hour=issue_hour,
        )  # fmt: skip
        train_times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    forecast_day(model, load, wx, TZ, COUNTRY, day, issue_hour=issue_hour)
    return statistics.median(train_times), time.perf_counter() - t0


def report(label: str, res: BacktestResult, train_s: float, predict_s: float) -> dict[str, Any]:
    """Print one run's figures; return its JSON keys."""
    m = res.metrics
    best = min(m.rmse_naive_1d, m.rmse_naive_7d)
    print(
        f"{label}: {m.n_days} days, {m.n_hours} hours\n"
        f"  MAPE {m.mape:.2f} %  (naive 1d {m.mape_naive_1d:.2f} %, 7d {m.mape_naive_7d:.2f} %)\n"
        f"  RMSE {m.rmse:.1f} MWh  (naive 1d {m.rmse_naive_1d:.1f}, 7d {m.rmse_naive_7d:.1f})\n"
        f"  skill vs naive 1d {m.skill_vs_naive_1d:+.3f}, vs 7d {m.skill_vs_naive_7d:+.3f}, "
        f"vs best {m.skill_vs_best_naive:+.3f} (RMSE {100 * (1 - m.rmse / best):.1f} % lower)\n"
        f"  MASE {m.mase:.3f}  80 % interval coverage {m.interval_coverage:.3f} "
        f"(mean width {m.mean_interval_width:.1f} MWh)\n"
        f"  train_s {train_s:.2f} (2 years, production path; backtest fits mean "
        f"{res.train_s_mean:.2f} over {len(res.train_s)})  predict_s {predict_s:.3f}\n"
        f"  top features: "
        + ", ".join(f"{k} {v:.1f}" for k, v in list(res.feature_importances.items())[:6]),
        flush=True,
    )
    return {
        "mape": round(m.mape, 3),
        "rmse": round(m.rmse, 2),
        "rmse_naive_1d": round(m.rmse_naive_1d, 2),
        "rmse_naive_7d": round(m.rmse_naive_7d, 2),
        "rmse_skill_vs_best_naive": round(m.skill_vs_best_naive, 4),
        "interval_coverage": round(m.interval_coverage, 4),
        "train_s": round(train_s, 3),
        "predict_s": round(predict_s, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=60, help="backtest days (default 60)")
    parser.add_argument(
        "--issue-hour", type=int, default=24, help="local hour on D-1 the forecast is issued"
    )
    args = parser.parse_args()
    if not DATA.exists():
        raise SystemExit(f"data file not found: {DATA}")
    raw = pd.read_csv(DATA, parse_dates=["timestamp"]).set_index("timestamp")
    load, weather, io = import_through_ingest(raw)
    print(
        f"imported {len(load)} readings and {len(weather)} weather rows through ingest "
        f"in {io['import_s']:.1f} s, read back in {io['read_s']:.1f} s",
        flush=True,
    )
    figures: dict[str, Any] = {}
    for target_weather, suffix, label in (
        (True, "", "with day D's measured temperature as its forecast"),
        (False, "_no_temp", "without temperature for day D"),
    ):
        t0 = time.perf_counter()
        res = backtest(
            load, weather, TZ, COUNTRY, days=args.days, target_weather=target_weather,
            issue_hour=args.issue_hour,
        )  # fmt: skip
        elapsed = time.perf_counter() - t0
        train_s, predict_s = production_timings(load, weather, res, args.issue_hour)
        keys = report(f"{label} (backtest {elapsed:.0f} s)", res, train_s, predict_s)
        figures.update({f"{k}{suffix}": v for k, v in keys.items()})
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
