"""Benchmark of the alerts service: anomaly detection quality, deduplication, alert latency.

Starts a throwaway embedded PostgreSQL and real ingest + alerts processes, then:

1. posts simulated data for 10 sites through ingest's API (the simulator, seed 42): the 30
   scored days plus 28 days before them, which the anomaly rule uses as its history;
2. asks alerts to evaluate the 30 days of each site (POST /v1/evaluate), then evaluates again
   to check nothing changes (idempotency);
3. compares the anomaly rule's incidents with the simulator's labels, per anomaly kind:
   precision = incidents of kind K overlapping a label of kind K / incidents of kind K;
   recall = labels of kind K overlapped by an incident of kind K / labels of kind K;
   incidents_per_event = mean number of incidents per detected label (1.0: no duplicates);
4. times the path from posting one reading in deficit (over the site's capacity) to the
   incident being visible through GET /v1/incidents, for fresh sites. If ingest notifies
   alerts after its commits, that notification does the work; if not (not wired), the bench
   calls POST /v1/evaluate itself right after the post and says so (``latency_mode``).

Last line: one JSON object of the figures. Run: .venv/bin/python bench/alerts.py
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from services.common.auth import issue_token  # noqa: E402
from services.common.http import ServiceAuth  # noqa: E402
from services.common.migrations import upgrade_all  # noqa: E402
from services.common.settings import ServiceSettings  # noqa: E402
from services.common.stack import (  # noqa: E402
    create_database,
    embedded_postgres,
    free_port,
    service_env,
    start_services,
)
from services.ingest.simulator.catalog import site_specs  # noqa: E402
from services.ingest.simulator.client import IngestClient, backfill, current_hour  # noqa: E402

SITES = 10
DAYS = 30
HISTORY_DAYS = 28
SEED = 42
LATENCY_TRIALS = 10
SECRET = "bench-secret-not-for-production-0123456789"
KINDS = ("spike", "drop", "stuck")


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _overlaps(inc: dict[str, Any], label: dict[str, Any]) -> bool:
    return _t(inc["first_seen_at"]) < _t(label["end_ts"]) and _t(inc["last_seen_at"]) >= _t(
        label["start_ts"]
    )


def score(
    incidents: list[dict[str, Any]], labels: list[dict[str, Any]]
) -> dict[str, dict[str, int]]:
    """Per kind: incidents, true incidents, labels, detected labels, matches of detected labels."""
    out = {k: {"incidents": 0, "true": 0, "labels": 0, "detected": 0, "matches": 0} for k in KINDS}
    for inc in incidents:
        k = inc["condition_key"]
        out[k]["incidents"] += 1
        out[k]["true"] += any(lb["kind"] == k and _overlaps(inc, lb) for lb in labels)
    for lb in labels:
        k = lb["kind"]
        hits = sum(1 for i in incidents if i["condition_key"] == k and _overlaps(i, lb))
        out[k]["labels"] += 1
        out[k]["detected"] += hits > 0
        out[k]["matches"] += hits
    return out


def main() -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="spe-bench-alerts-"))
    admin_url = embedded_postgres(tmp / "pg", on_exit="delete")
    url = create_database(admin_url, "bench_alerts")
    upgrade_all(url)
    ports = {name: free_port() for name in ("INGEST", "ALERTS", "FORECAST", "GATEWAY")}
    env = service_env(
        url,
        SECRET_KEY=SECRET,
        ENVIRONMENT="test",
        LOG_JSON="false",
        LOG_LEVEL="WARNING",
        ALERTS_EVAL_INTERVAL_S="0",  # the bench drives evaluation; no schedule in the timings
        ALERTS_DELIVERY_POLL_S="1",
        ALERTS_LOG_NOTIFICATIONS="false",
        **{f"{n}_PORT": str(p) for n, p in ports.items()},
        **{f"{n}_URL": f"http://127.0.0.1:{p}" for n, p in ports.items()},
    )
    procs = start_services(env, ("ingest", "alerts"), log_dir=tmp)
    ingest, alerts = procs
    settings = ServiceSettings(secret_key=SECRET, environment="test")
    token = issue_token(settings, subject="bench", role="operator", token_type="access", ttl_s=3600)
    auth = {"Authorization": f"Bearer {token}"}
    try:
        sites = site_specs(SITES)
        end = current_hour()
        scored_from = end - timedelta(days=DAYS)
        t0 = time.perf_counter()
        with IngestClient(ingest.url, ServiceAuth(settings, "simulator"), echo=lambda _: None) as c:
            backfill(c, sites, [], days=DAYS + HISTORY_DAYS, seed=SEED, end=end)
        load_s = time.perf_counter() - t0

        with (
            httpx.Client(base_url=alerts.url, headers=auth, timeout=120) as http,
            httpx.Client(
                base_url=ingest.url, auth=ServiceAuth(settings, "bench"), timeout=60
            ) as ingest_http,
        ):
            rules = {r["name"]: r["id"] for r in http.get("/v1/rules").json()}
            anomaly_rule = rules["consumption-anomaly"]
            body = {"start": scored_from.isoformat(), "end": end.isoformat()}
            eval_ms = []
            for s in sites:
                t = time.perf_counter()
                r = http.post("/v1/evaluate", json={"site": s.code, **body})
                r.raise_for_status()
                eval_ms.append((time.perf_counter() - t) * 1000)
            changes = 0
            for s in sites:
                r = http.post("/v1/evaluate", json={"site": s.code, **body})
                changes += sum(
                    x["opened"] + x["updated"] + x["resolved"] for x in r.json()["rules"]
                )

            totals = {k: Counter[str]() for k in KINDS}
            for s in sites:
                found = http.get(
                    "/v1/incidents", params={"site": s.code, "kind": "anomaly", "limit": 1000}
                ).json()["items"]
                found = [i for i in found if i["rule_id"] == anomaly_rule]
                labels = ingest_http.get(
                    "/v1/anomaly-labels",
                    params={"site": s.code, "start": scored_from.isoformat(),
                            "end": end.isoformat()},
                ).json()  # fmt: skip
                # Score what starts inside the 30 days (the history before is not judged).
                labels = [lb for lb in labels if _t(lb["start_ts"]) >= scored_from]
                found = [i for i in found if _t(i["first_seen_at"]) >= scored_from]
                for k, v in score(found, labels).items():
                    totals[k].update(v)

            latencies, mode = measure_latency(http, ingest_http)
    finally:
        for p in reversed(procs):
            p.stop()

    def ratio(a: int, b: int) -> float | None:
        return round(a / b, 3) if b else None

    figures: dict[str, Any] = {"sites": SITES, "days": DAYS, "history_days": HISTORY_DAYS}
    for k in KINDS:
        t = totals[k]
        figures[f"labels_{k}"] = t["labels"]
        figures[f"incidents_{k}"] = t["incidents"]
    out = {
        "precision_spike": ratio(totals["spike"]["true"], totals["spike"]["incidents"]),
        "recall_spike": ratio(totals["spike"]["detected"], totals["spike"]["labels"]),
        "precision_drop": ratio(totals["drop"]["true"], totals["drop"]["incidents"]),
        "recall_drop": ratio(totals["drop"]["detected"], totals["drop"]["labels"]),
        "precision_stuck": ratio(totals["stuck"]["true"], totals["stuck"]["incidents"]),
        "recall_stuck": ratio(totals["stuck"]["detected"], totals["stuck"]["labels"]),
        "incidents_per_event": ratio(
            sum(totals[k]["matches"] for k in KINDS), sum(totals[k]["detected"] for k in KINDS)
        ),
        "alert_latency_s": round(statistics.median(latencies), 3),
        "alert_latency_max_s": round(max(latencies), 3),
        "latency_mode": mode,
        "evaluate_30d_p50_ms": round(statistics.median(eval_ms), 1),
        "evaluate_30d_max_ms": round(max(eval_ms), 1),
        "reevaluation_changes": changes,
        "load_s": round(load_s, 1),
        **figures,
    }
    return out


def measure_latency(http: httpx.Client, ingest_http: httpx.Client) -> tuple[list[float], str]:
    """Seconds from POST of one reading over capacity to the incident listed by the API."""
    latencies: list[float] = []
    mode = "ingest-notify"
    hour = current_hour() - timedelta(hours=1)
    for n in range(LATENCY_TRIALS):
        code = f"LAT{n}"
        created = ingest_http.post(
            "/v1/sites",
            json={"code": code, "name": code, "timezone": "Europe/Paris", "capacity_kw": 100},
        )
        created.raise_for_status()
        reading = {"site": code, "ts": hour.isoformat(), "consumption_kwh": 180.0,
                   "production_kwh": 60.0, "interval_s": 3600, "source": "real"}  # fmt: skip
        t = time.perf_counter()
        ingest_http.post("/v1/readings", json=reading).raise_for_status()
        if mode == "bench-calls-evaluate":
            span = {"start": hour.isoformat(), "end": (hour + timedelta(hours=1)).isoformat()}
            http.post("/v1/evaluate", json={"site": code, **span})
        # Wait for the incident; on the first trial, 3 s tells whether ingest notifies alerts.
        deadline = t + (3.0 if n == 0 and mode == "ingest-notify" else 30.0)
        while time.perf_counter() < deadline:
            items = http.get("/v1/incidents", params={"site": code}).json()["items"]
            if any(i["condition_key"] == "over_capacity" for i in items):
                latencies.append(time.perf_counter() - t)
                break
            time.sleep(0.02)
        else:
            if n == 0 and mode == "ingest-notify":
                mode = "bench-calls-evaluate"  # ingest does not notify alerts (yet): retry
                continue
            raise RuntimeError(f"no incident for {code} after 30 s")
    if len(latencies) < LATENCY_TRIALS - 1:
        raise RuntimeError("latency trials incomplete")
    return latencies, mode


if __name__ == "__main__":
    started = datetime.now(UTC)
    result = main()
    result["bench_s"] = round((datetime.now(UTC) - started).total_seconds(), 1)
    print(json.dumps(result))
