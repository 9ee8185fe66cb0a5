"""Benchmark of predictive maintenance on simulated fleets: the model versus the operator's rule.

For each seed, a fleet of ``--sites`` catalogue sites (12 sites: 42 pumps, compressors,
locomotives, transformers and turbines) over ``--days`` days, from the simulator's pure
generation functions (no HTTP, no database: the forecast service's wiring to ingest is not
part of this bench). Then, through the forecast service's ML code
(``services.forecast.ml.maintenance``):

1. ``train_maintenance_model(as_of=end)``, timed (``train_s``: telemetry checks, features,
   the time-split evaluation and the final fit; ``fit_s``: the final fit with its calibration).
   Its report trains on the first ~70 % of the labelled days and tests on the last ~30 %
   (the 7 days before the test period are left out, so no training label looks into it).
2. The report's figures: PR-AUC (average precision) and recall at a 10 % alert rate for the
   model; PR-AUC from its single operating point, alert rate, precision and recall for the
   rule "vibration > 7 mm/s and temperature > 85 °C in one sample of the last 24 h".
3. Where the recall comes from: positive test days split by what the simulator did (a failure
   with no warning, a day before the warning ramp started, early ramp < 30 %, ramp >= 30 %),
   with the share the model's 10 % alerts catch.
4. Ablations on the same split: no class weighting; Brier score with and without calibration.

Timings are noisy: the machine has 2 cores shared with other work.

Last line: one JSON object, figures averaged over the seeds. Run:
.venv/bin/python bench/maintenance.py [--sites 12] [--days 240] [--seeds 42 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from services.forecast.ml.maintenance import (  # noqa: E402
    MaintenanceParams,
    evaluate,
    labelled_days,
    split_day,
    top_share,
    train_maintenance_model,
    usable,
)
from tests.forecast.ml.maintenance_fleet import Fleet, simulated_fleet  # noqa: E402

CATEGORIES = ("no warning", "before ramp", "ramp < 30 %", "ramp >= 30 %")


def _category(fleet: Fleet, code: str, as_of: pd.Timestamp) -> str:
    """What the simulator was doing on a positive day: which failure it leads to, how far."""
    eps = fleet.episodes
    ahead = eps[(eps["equipment_code"] == code) & (eps["failure"] > as_of)]
    episode = ahead.sort_values("failure").iloc[0]
    if episode["sudden"]:
        return "no warning"
    if as_of <= episode["onset"]:
        return "before ramp"
    progress = (as_of - episode["onset"]) / (episode["failure"] - episode["onset"])
    return "ramp < 30 %" if progress < 0.3 else "ramp >= 30 %"


def run_seed(sites: int, days: int, seed: int, params: MaintenanceParams) -> dict[str, Any]:
    """One fleet: train, report versus the rule, where the recall comes from, ablations."""
    started = time.perf_counter()
    fleet = simulated_fleet(sites=sites, days=days, seed=seed)
    simulate_s = time.perf_counter() - started
    failures = int((fleet.events["kind"] == "failure").sum())
    sudden = int(fleet.episodes["sudden"].sum())
    print(
        f"seed {seed}: {len(fleet.equipment)} equipment, {days} days, "
        f"{len(fleet.telemetry):,} samples, {failures} failures ({sudden} with no warning); "
        f"simulated in {simulate_s:.1f} s"
    )

    started = time.perf_counter()
    model = train_maintenance_model(
        fleet.telemetry, fleet.events, fleet.equipment, fleet.end, params
    )
    train_s = time.perf_counter() - started
    report = model.report
    if report is None:
        raise SystemExit(f"seed {seed}: no report ({model.report_note})")
    print(
        f"  train_maintenance_model: {train_s:.1f} s "
        + ", ".join(f"{k} {v:.1f} s" for k, v in model.timings.items())
        + f"; {model.train_days} equipment-days, {model.failures} failures"
    )
    excluded = model.excluded.groupby("reason")["n"].sum().to_dict()
    print(f"  telemetry excluded: {excluded}")
    print(
        f"  test {report.test_start}..{report.test_end}: {report.test_days} equipment-days, "
        f"{report.test_positive_days} positive ({report.prevalence:.1%}), "
        f"{report.test_failures} failures ahead"
    )
    print(
        f"  model: PR-AUC {report.pr_auc_model:.3f}; at a {report.alert_rate:.0%} alert rate "
        f"recall {report.recall_model:.3f} (at most {report.recall_ceiling:.3f} with that many "
        f"alerts), precision {report.precision_model:.3f}"
    )
    print(
        f"  rule:  PR-AUC {report.pr_auc_rule:.3f}; alert rate {report.alert_rate_rule:.1%}, "
        f"recall {report.recall_rule:.3f}, precision {report.precision_rule:.3f}; "
        f"model at the rule's alert rate: recall {report.recall_model_at_rule_rate:.3f}"
    )
    print(
        f"  Brier: raw forest score {report.brier_raw:.4f}, "
        f"calibrated {report.brier_calibrated if report.brier_calibrated is None else round(report.brier_calibrated, 4)}"  # noqa: E501
    )

    # Same split, to see which positive days the alerts catch and to run the ablations.
    frame, _ = labelled_days(
        fleet.telemetry, fleet.events, fleet.equipment, fleet.end, params.horizon
    )
    split = split_day(usable(frame), params.test_share)
    _, scored = evaluate(frame, fleet.events, split, params)
    alert = top_share(scored["score"].to_numpy(), params.alert_rate)
    positive = scored.assign(alert=alert, rule=scored["rule_alert"] > 0)[scored["label"] == 1]
    cats = [_category(fleet, code, at) for code, at in positive.index]
    caught = (
        positive.assign(category=cats).groupby("category")[["alert", "rule"]].agg(["size", "mean"])
    )
    for cat in CATEGORIES:
        if cat in caught.index:
            row = caught.loc[cat]
            print(
                f"  positive days, {cat:12s}: {int(row[('alert', 'size')]):4d}, "
                f"caught by the model {row[('alert', 'mean')]:.0%}, "
                f"by the rule {row[('rule', 'mean')]:.0%}"
            )
    unweighted, _ = evaluate(frame, fleet.events, split, replace(params, class_weight=None))
    print(
        f"  ablation, no class weighting: PR-AUC {unweighted.pr_auc_model:.3f}, "
        f"recall at 10 % {unweighted.recall_model:.3f}"
    )
    return {
        "seed": seed,
        "pr_auc_model": report.pr_auc_model,
        "pr_auc_rule": report.pr_auc_rule,
        "recall_at_10pct_model": report.recall_model,
        "recall_at_10pct_rule": report.recall_rule,
        "recall_ceiling_at_10pct": report.recall_ceiling,
        "alert_rate_rule": report.alert_rate_rule,
        "recall_model_at_rule_rate": report.recall_model_at_rule_rate,
        "brier_raw": report.brier_raw,
        "brier_calibrated": report.brier_calibrated,
        "pr_auc_unweighted": unweighted.pr_auc_model,
        "train_s": train_s,
        "fit_s": model.timings["fit_s"],
        "caught_ramp_ge_30pct": float(
            np.mean(
                [a for a, c in zip(positive["alert"], cats, strict=True) if c == "ramp >= 30 %"]
            )
        ),
    }


def main() -> None:
    """Run the fleets and print the figures, the last line as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=12)
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7])
    args = parser.parse_args()
    params = MaintenanceParams()
    results = [run_seed(args.sites, args.days, seed, params) for seed in args.seeds]

    def mean(key: str) -> float:
        return round(statistics.fmean(r[key] for r in results), 4)

    print(
        f"mean over seeds {args.seeds}: PR-AUC model {mean('pr_auc_model')} vs rule "
        f"{mean('pr_auc_rule')}; recall at 10 % model {mean('recall_at_10pct_model')}, rule "
        f"{mean('recall_at_10pct_rule')} at its own alert rate {mean('alert_rate_rule')}"
    )
    print(
        json.dumps(
            {
                "pr_auc_model": mean("pr_auc_model"),
                "pr_auc_rule": mean("pr_auc_rule"),
                "recall_at_10pct_model": mean("recall_at_10pct_model"),
                "recall_at_10pct_rule": mean("recall_at_10pct_rule"),
                "alert_rate_rule": mean("alert_rate_rule"),
                "recall_model_at_rule_rate": mean("recall_model_at_rule_rate"),
                "recall_ceiling_at_10pct": mean("recall_ceiling_at_10pct"),
                "train_s": round(statistics.median(r["train_s"] for r in results), 2),
                "fit_s": round(statistics.median(r["fit_s"] for r in results), 2),
            }
        )
    )


if __name__ == "__main__":
    main()
