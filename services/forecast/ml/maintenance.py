"""Predictive maintenance: probability that a piece of equipment fails within the next 7 days.

Plain pandas / scikit-learn, no web or database imports: the forecast service reads telemetry,
events and equipment from ingest, calls :func:`train_maintenance_model` then :func:`score`, and
stores the rows and the :class:`MaintenanceReport`.

How it works (the data side is in ``maintenance_data``):

1. Telemetry quality: absurd values (outside the physical range of the equipment's kind),
   values of sensors the kind does not have, frozen sensors, duplicates and orphan rows are
   excluded and counted per equipment and reason; gaps are counted in hours. They never reach
   the model.
2. One row per equipment per day (as of 00:00 UTC): 24 h mean / max / std, change over 24 h /
   72 h / 7 d (least-squares slope x window) of vibration, temperature, pressure and flow; the
   same relative to the equipment's own baseline (median of 4 weeks ending a week back: a
   ratio, or a difference in °C for temperature), so a 15 kW pump and a 2 MW turbine compare;
   days since the last maintenance; the kind of equipment.
3. Label: a failure event in (day, day + 7 d]. Days between a failure and the maintenance that
   ends it are dropped (the machine is down, there is nothing to predict). A day with fewer
   than 12 valid hours of vibration or of temperature in its last 24 h gets no probability
   ("insufficient data") and is not trained or scored on.
4. Model: a seeded RandomForestClassifier with ``class_weight="balanced_subsample"``: each tree
   re-weights the classes of its own bootstrap sample, so every healthy day is kept (they
   teach the normal spread across kinds, duty cycles and seasons) while failures still weigh
   as much as healthy days. Undersampling is not used: it throws that data away and makes the
   forest depend on which negatives were drawn. The weighting inflates the forest's scores, so
   they are mapped to probabilities by a Platt (sigmoid) calibration fitted on the last quarter
   of the training days, out of sample for a forest trained on the earlier days; the report
   gives the Brier score with and without it. Sigmoid is monotone: rankings, PR-AUC and recall
   at an alert rate do not change.
5. Evaluation, in every training run: a time split (last 30 % of the labelled days as the test
   period, the 7 days before it left out so no training label peeks into it), the model
   versus the operator's rule "vibration > 7 mm/s and temperature > 85 °C in one sample of
   the last 24 h". PR-AUC is scikit-learn's average precision (step-wise, no interpolation)
   for both; the rule's scores are 0 / 1, so its curve has two points, (recall r, precision
   p) at its alerts and (1, prevalence) when alerting on everything, and its PR-AUC is
   r * p + (1 - r) * prevalence. Recall at a 10 % alert rate: the model alerts on the 10 % of
   test equipment-days with the highest scores; the rule alerts where it fires, and its own
   alert rate is reported beside its recall.
6. Top factors: per prediction, Saabas tree-path contributions. Along each tree's decision
   path, the change in the share of failures from a node to its child is credited to the
   feature the node split on; averaged over the trees, the forest's (uncalibrated) score is
   exactly the training prior plus the sum of the contributions. Contributions are summed per
   factor (e.g. the level, trend or variability of one sensor) and the factor is put in words
   with the value that drives it, like "vibration rising +2.1 mm/s over 72 h".
   A contribution is in points of the forest's raw score, before calibration.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss

from services.forecast.ml.maintenance_data import (
    FEATURES,
    KINDS,
    LOOKBACK_DAYS,
    SENSORS,
    WINDOWS,
    as_utc,
    check_telemetry,
    daily_features,
    data_message,
    failure_labels,
    normalise_events,
    utc,
)

ALGORITHM = "random_forest_balanced_subsample"
STATUS_OK = "ok"
STATUS_INSUFFICIENT = "insufficient data"
STATUS_DOWN = "in failure"
DAY = pd.Timedelta(days=1)
SCORE_COLUMNS = [
    "equipment_code",
    "as_of",
    "probability",
    "status",
    "top_factors",
    "message",
    "rule_alert",
]
_WINDOW_WORDS = {"24h": "24 h", "72h": "72 h", "7d": "7 d"}


class InsufficientTrainingData(ValueError):
    """Too little labelled history (telemetry or failures) to train a failure model."""


@dataclass(frozen=True)
class MaintenanceParams:
    """Knobs of the failure model; every random source follows ``seed``."""

    horizon_days: int = 7
    # 150 trees on bootstraps of 30 % of the rows: on the simulated fleets (42 equipment,
    # 240 days) PR-AUC within 0.005 of 300 trees on full bootstraps, in a quarter of the time.
    n_estimators: int = 150
    min_samples_leaf: int = 5
    max_features: float | str = "sqrt"
    max_samples: float | None = 0.3  # share of the rows each tree's bootstrap draws
    class_weight: Literal["balanced_subsample", "balanced"] | None = "balanced_subsample"
    calibration: Literal["sigmoid", "none"] = "sigmoid"
    calibration_share: float = 0.25  # last share of the training days the calibration sees
    test_share: float = 0.30  # last share of the labelled days the report tests on
    alert_rate: float = 0.10
    min_failures: int = 3
    top_factors: int = 3
    seed: int = 0
    n_jobs: int = 1

    @property
    def horizon(self) -> pd.Timedelta:
        """The prediction horizon as a Timedelta."""
        return pd.Timedelta(days=self.horizon_days)


@dataclass(frozen=True)
class MaintenanceReport:
    """Model versus the operator's rule on the same time-split test period."""

    test_start: str
    test_end: str
    train_days: int  # equipment-days the evaluated model was trained on
    test_days: int  # equipment-days scored in the test period
    test_positive_days: int
    test_failures: int  # failure events the test days lead up to
    prevalence: float
    alert_rate: float  # the model's alert budget (share of test equipment-days)
    pr_auc_model: float
    pr_auc_rule: float
    recall_model: float  # recall at ``alert_rate``
    # The best recall that many alerts allow: below 1 when failures outnumber the alerts.
    recall_ceiling: float
    precision_model: float
    recall_rule: float
    precision_rule: float
    alert_rate_rule: float
    recall_model_at_rule_rate: float  # the model given as many alerts as the rule raised
    brier_raw: float  # forest score used as a probability
    brier_calibrated: float | None
    calibration: str
    class_imbalance: str
    excluded_insufficient_days: int
    excluded_down_days: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return asdict(self)


@dataclass
class MaintenanceModel:
    """A trained failure model, what it was trained on, and its report versus the rule."""

    forest: RandomForestClassifier
    platt: tuple[float, float] | None  # p = 1 / (1 + exp(-(a * score + b))); None: raw score
    features: list[str]
    params: MaintenanceParams
    as_of: pd.Timestamp
    train_start: pd.Timestamp
    train_end: pd.Timestamp  # last labelled day (as_of - horizon)
    train_days: int
    positive_days: int
    failures: int
    importances: dict[str, float]
    report: MaintenanceReport | None
    report_note: str
    excluded: pd.DataFrame  # telemetry quality of the training data
    train_s: float
    algorithm: str = ALGORITHM
    timings: dict[str, float] = field(default_factory=dict)

    def raw_score(self, x: pd.DataFrame) -> np.ndarray:
        """The forest's share of failure votes (class-weighted, uncalibrated)."""
        return _positive_proba(self.forest, x[self.features])

    def probability(self, x: pd.DataFrame) -> np.ndarray:
        """Calibrated failure probability within the horizon."""
        return _calibrated(self.raw_score(x), self.platt)


# --- metrics ------------------------------------------------------------------------------


def pr_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Average precision (step-wise area under the precision-recall curve); NaN without both
    classes. For a 0/1 score it equals r * p + (1 - r) * prevalence."""
    y = np.asarray(y)
    if y.size == 0 or y.min() == y.max():
        return math.nan
    return float(average_precision_score(y, score))


def top_share(score: np.ndarray, rate: float) -> np.ndarray:
    """Alerts on the ``rate`` share of rows with the highest score (ties: earlier row first)."""
    n = len(score)
    k = min(n, max(1, round(rate * n))) if n else 0
    alert = np.zeros(n, dtype=bool)
    alert[np.argsort(-np.asarray(score), kind="stable")[:k]] = True
    return alert


def recall_precision(y: np.ndarray, alert: np.ndarray) -> tuple[float, float]:
    """Recall and precision of binary alerts (NaN when undefined)."""
    y, alert = np.asarray(y).astype(bool), np.asarray(alert).astype(bool)
    hits = float((y & alert).sum())
    recall = hits / y.sum() if y.sum() else math.nan
    precision = hits / alert.sum() if alert.sum() else math.nan
    return recall, precision


# --- fitting ------------------------------------------------------------------------------


def _positive_proba(forest: RandomForestClassifier, x: pd.DataFrame) -> np.ndarray:
    proba = forest.predict_proba(x.to_numpy(dtype=np.float64))
    classes = list(forest.classes_)
    return proba[:, classes.index(1)] if 1 in classes else np.zeros(len(x))


def _calibrated(score: np.ndarray, platt: tuple[float, float] | None) -> np.ndarray:
    if platt is None:
        return score
    a, b = platt
    return 1.0 / (1.0 + np.exp(-(a * score + b)))


def _forest(params: MaintenanceParams) -> RandomForestClassifier:
    return RandomForestClassifier(
        n_estimators=params.n_estimators,
        min_samples_leaf=params.min_samples_leaf,
        max_features=params.max_features,
        max_samples=params.max_samples,
        class_weight=params.class_weight,
        random_state=params.seed,
        n_jobs=params.n_jobs,
    )


def _days(rows: pd.DataFrame) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(rows.index.get_level_values("as_of"))


def split_day(rows: pd.DataFrame, last_share: float) -> pd.Timestamp:
    """The first day of the last ``last_share`` of the days in ``rows``."""
    days = _days(rows).unique().sort_values()
    return days[min(len(days) - 1, int(len(days) * (1.0 - last_share)))]


def fit_forest(
    rows: pd.DataFrame, params: MaintenanceParams
) -> tuple[RandomForestClassifier, tuple[float, float] | None]:
    """Forest on all ``rows`` plus its Platt calibration (fitted out of sample in time)."""
    forest = _forest(params).fit(rows[FEATURES].to_numpy(dtype=np.float64), rows["label"])
    if params.calibration == "none":
        return forest, None
    # Calibrate the scores of a forest that has not seen the calibration days, the way the
    # final forest will see tomorrow: trained on days ending a horizon before them.
    cut = split_day(rows, params.calibration_share)
    early = rows[_days(rows) <= cut - params.horizon]
    late = rows[_days(rows) >= cut]
    if early["label"].nunique() < 2 or late["label"].nunique() < 2:
        return forest, None
    probe = _forest(params).fit(early[FEATURES].to_numpy(dtype=np.float64), early["label"])
    score = _positive_proba(probe, late[FEATURES])
    logistic = LogisticRegression(C=1e4).fit(score.reshape(-1, 1), late["label"])
    return forest, (float(logistic.coef_[0, 0]), float(logistic.intercept_[0]))


def labelled_days(
    telemetry: pd.DataFrame,
    events: pd.DataFrame,
    equipment: pd.DataFrame,
    as_of: object,
    horizon: pd.Timedelta,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features and labels of every equipment-day whose horizon ended by ``as_of``, and the
    telemetry quality table. Columns ``label``, ``down`` and ``enough_data`` say what is usable.
    """
    at = as_utc(as_of)
    quality = check_telemetry(telemetry, equipment, end=at)
    clean = quality.clean
    evs = normalise_events(events)
    evs = evs[evs["ts"] <= at]
    if clean.empty:
        raise InsufficientTrainingData("no usable telemetry before as_of")
    first = clean["ts"].min().floor("D") + DAY
    last = (at - horizon).floor("D")
    if last < first:
        raise InsufficientTrainingData(
            f"telemetry starts {clean['ts'].min():%Y-%m-%d}: no day before "
            f"{at - horizon:%Y-%m-%d} whose next {horizon.days} days are known"
        )
    frame = daily_features(clean, equipment, pd.date_range(first, last, freq="D"), evs)
    frame = frame.join(failure_labels(frame.index, evs, horizon))
    return frame, quality.excluded


def usable(frame: pd.DataFrame) -> pd.DataFrame:
    """Equipment-days a model may learn from or be judged on: enough data, not down."""
    return frame[frame["enough_data"] & ~frame["down"]]


def _failures_ahead(rows: pd.DataFrame, events: pd.DataFrame, horizon: pd.Timedelta) -> int:
    """Failure events that some of these equipment-days lead up to."""
    if rows.empty:
        return 0
    evs = normalise_events(events)
    evs = evs[
        (evs["kind"] == "failure")
        & evs["equipment_code"].isin(rows.index.get_level_values("equipment_code"))
    ]
    days = _days(rows)
    return int(((evs["ts"] > days.min()) & (evs["ts"] <= days.max() + horizon)).sum())


def evaluate(
    frame: pd.DataFrame,
    events: pd.DataFrame,
    split_at: pd.Timestamp,
    params: MaintenanceParams,
    end: pd.Timestamp | None = None,
) -> tuple[MaintenanceReport, pd.DataFrame]:
    """Train on the days whose horizon ends by ``split_at``, test on the days from it (up to
    ``end``), model versus rule; also returns the test rows with their scores."""
    days = _days(frame)
    in_test = (days >= split_at) & (days <= end if end is not None else True)
    train = usable(frame[days <= split_at - params.horizon])
    test_all = frame[in_test]
    test = usable(test_all)
    if train["label"].sum() < 1 or test["label"].nunique() < 2:
        raise InsufficientTrainingData(
            "the time split leaves no failure in the training or the test period"
        )
    forest, platt = fit_forest(train, params)
    raw = _positive_proba(forest, test[FEATURES])
    y = test["label"].to_numpy()
    rule = test["rule_alert"].fillna(0).to_numpy() > 0
    alert = top_share(raw, params.alert_rate)
    recall_model, precision_model = recall_precision(y, alert)
    recall_rule, precision_rule = recall_precision(y, rule)
    at_rule_rate = top_share(raw, float(rule.mean())) if rule.any() else np.zeros_like(rule)
    calibrated = _calibrated(raw, platt) if platt else None
    report = MaintenanceReport(
        test_start=f"{days[in_test].min():%Y-%m-%d}",
        test_end=f"{days[in_test].max():%Y-%m-%d}",
        train_days=len(train),
        test_days=len(test),
        test_positive_days=int(y.sum()),
        test_failures=_failures_ahead(test, events, params.horizon),
        prevalence=float(y.mean()),
        alert_rate=params.alert_rate,
        pr_auc_model=pr_auc(y, raw),
        pr_auc_rule=pr_auc(y, rule.astype(float)),
        recall_model=recall_model,
        recall_ceiling=min(1.0, float(alert.sum()) / max(1.0, float(y.sum()))),
        precision_model=precision_model,
        recall_rule=recall_rule,
        precision_rule=precision_rule,
        alert_rate_rule=float(rule.mean()),
        recall_model_at_rule_rate=recall_precision(y, at_rule_rate)[0] if rule.any() else 0.0,
        brier_raw=float(brier_score_loss(y, raw)),
        brier_calibrated=float(brier_score_loss(y, calibrated)) if calibrated is not None else None,
        calibration="sigmoid" if platt else "none",
        class_imbalance=str(params.class_weight),
        excluded_insufficient_days=int((~test_all["enough_data"]).sum()),
        excluded_down_days=int((test_all["enough_data"] & test_all["down"]).sum()),
    )
    scored = test.assign(score=raw, probability=calibrated if calibrated is not None else raw)
    return report, scored


def train_maintenance_model(
    telemetry: pd.DataFrame,
    events: pd.DataFrame,
    equipment: pd.DataFrame,
    as_of: object,
    params: MaintenanceParams | None = None,
) -> MaintenanceModel:
    """Train on everything known at ``as_of``, with a time-split report versus the rule.

    Raises InsufficientTrainingData when there is no usable telemetry or fewer than
    ``params.min_failures`` failures to learn from.
    """
    params = params or MaintenanceParams()
    started = time.perf_counter()
    at = as_utc(as_of)
    frame, excluded = labelled_days(telemetry, events, equipment, at, params.horizon)
    features_s = time.perf_counter() - started
    rows = usable(frame)
    failures = _failures_ahead(rows[rows["label"] == 1], events, params.horizon)
    if rows.empty or failures < params.min_failures:
        raise InsufficientTrainingData(
            f"{failures} failure(s) in {len(rows)} usable equipment-days before "
            f"{at:%Y-%m-%d}; at least {params.min_failures} are needed to learn from"
        )
    report: MaintenanceReport | None = None
    note = ""
    evaluate_started = time.perf_counter()
    try:
        report, _ = evaluate(frame, events, split_day(rows, params.test_share), params)
    except InsufficientTrainingData as exc:
        note = f"no report: {exc}"
    evaluate_s = time.perf_counter() - evaluate_started
    fit_started = time.perf_counter()
    forest, platt = fit_forest(rows, params)
    fit_s = time.perf_counter() - fit_started
    days = _days(rows)
    importances = dict(
        sorted(
            zip(FEATURES, forest.feature_importances_.round(6).tolist(), strict=True),
            key=lambda kv: -kv[1],
        )
    )
    return MaintenanceModel(
        forest=forest,
        platt=platt,
        features=list(FEATURES),
        params=params,
        as_of=at,
        train_start=days.min(),
        train_end=days.max(),
        train_days=len(rows),
        positive_days=int(rows["label"].sum()),
        failures=failures,
        importances=importances,
        report=report,
        report_note=note,
        excluded=excluded,
        train_s=time.perf_counter() - started,
        timings={"features_s": features_s, "evaluate_s": evaluate_s, "fit_s": fit_s},
    )


# --- explanations -------------------------------------------------------------------------


def tree_contributions(forest: RandomForestClassifier, x: np.ndarray) -> tuple[float, np.ndarray]:
    """Saabas decomposition: (prior, contributions[row, feature]) with
    prior + contributions.sum(axis=1) == the forest's positive-class score."""
    n, width = x.shape
    contributions = np.zeros((n, width))
    prior = 0.0
    positive = list(forest.classes_).index(1) if 1 in forest.classes_ else None
    for tree in forest.estimators_:
        t = tree.tree_
        value = t.value[:, 0, :]
        share = (
            value[:, positive] / value.sum(axis=1) if positive is not None else np.zeros(len(value))
        )
        parent = np.full(t.node_count, -1)
        internal = np.flatnonzero(t.children_left >= 0)
        parent[t.children_left[internal]] = internal
        parent[t.children_right[internal]] = internal
        child = np.flatnonzero(parent >= 0)
        step = sparse.csr_matrix(
            (share[child] - share[parent[child]], (child, t.feature[parent[child]])),
            shape=(t.node_count, width),
        )
        contributions += np.asarray((tree.decision_path(x) @ step).todense())
        prior += share[0]
    k = len(forest.estimators_)
    return prior / k, contributions / k


def _fmt(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 1 else f"{x:.2f}"


def _signed(x: float) -> str:
    return ("+" if x >= 0 else "-") + _fmt(abs(x))


def _factor_groups() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for s in SENSORS:
        groups[f"{s.name}_level"] = [
            f"{s.name}_{f}" for f in ("mean_24h", "max_24h", "dev_mean_24h", "dev_max_24h")
        ]
        groups[f"{s.name}_trend"] = [
            f
            for f in FEATURES
            if f.startswith(f"{s.name}_delta") or f.startswith(f"{s.name}_dev_delta")
        ]
        groups[f"{s.name}_variability"] = [f"{s.name}_std_24h"]
    groups["maintenance"] = ["days_since_maintenance"]
    groups["kind"] = [f"kind_{k}" for k in KINDS]
    return groups


FACTOR_GROUPS = _factor_groups()


def _describe(group: str, row: pd.Series, contrib: dict[str, float]) -> tuple[str, float | None]:
    """A factor in words and the value behind it."""
    if group == "maintenance":
        days = row["days_since_maintenance"]
        if pd.isna(days):
            return "no maintenance on record", None
        return f"{days:.0f} days since last maintenance", float(days)
    if group == "kind":
        return f"kind of equipment: {row['kind']}", None
    name, aspect = group.rsplit("_", 1)
    sensor = next(s for s in SENSORS if s.name == name)
    unit = sensor.unit
    if aspect == "trend":
        window = max(
            WINDOWS,
            key=lambda w: (
                contrib.get(f"{name}_delta_{w}", 0.0) + contrib.get(f"{name}_dev_delta_{w}", 0.0)
            ),
        )
        delta = row[f"{name}_delta_{window}"]
        if pd.isna(delta):
            return f"{name} trend unknown over {_WINDOW_WORDS[window]}", None
        verb = "rising" if delta >= 0 else "falling"
        return f"{name} {verb} {_signed(delta)} {unit} over {_WINDOW_WORDS[window]}", float(delta)
    if aspect == "variability":
        std = row[f"{name}_std_24h"]
        if pd.isna(std):
            return f"{name} variability unknown", None
        return f"{name} unsteady: std {_fmt(std)} {unit} over 24 h", float(std)
    mean, baseline = row[f"{name}_mean_24h"], row[f"{name}_baseline"]
    if pd.isna(mean):
        return f"{name} not measured in the last 24 h", None
    text = f"{name} {_fmt(mean)} {unit} over 24 h (max {_fmt(row[f'{name}_max_24h'])})"
    if not pd.isna(baseline):
        if sensor.ratio and baseline > 0:
            text = (
                f"{name} {_fmt(mean)} {unit} over 24 h, {(mean / baseline - 1):+.0%} vs its "
                f"usual {_fmt(baseline)} {unit}"
            )
        elif not sensor.ratio:
            text = (
                f"{name} {_fmt(mean)} {unit} over 24 h, {_signed(mean - baseline)} {unit} vs "
                f"its usual {_fmt(baseline)} {unit}"
            )
    return text, float(mean)


def top_factors(
    rows: pd.DataFrame, contributions: np.ndarray, k: int
) -> list[list[dict[str, Any]]]:
    """Per row, the ``k`` factors pushing its score up the most, in words."""
    index = {f: i for i, f in enumerate(FEATURES)}
    out = []
    for r, (_, row) in enumerate(rows.iterrows()):
        contrib = {f: float(contributions[r, i]) for f, i in index.items()}
        summed = {g: sum(contrib[f] for f in fs) for g, fs in FACTOR_GROUPS.items()}
        best = sorted(summed, key=lambda g: -summed[g])[:k]
        factors = []
        for group in best:
            text, value = _describe(group, row, contrib)
            factors.append(
                {
                    "factor": text,
                    "value": None if value is None else round(value, 4),
                    "contribution": round(summed[group], 4),
                    "feature": group,
                }
            )
        out.append(factors)
    return out


# --- scoring ------------------------------------------------------------------------------


def score(
    model: MaintenanceModel,
    telemetry: pd.DataFrame,
    equipment: pd.DataFrame,
    as_of: object,
    events: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Failure probability within the horizon for every equipment, as of ``as_of``.

    ``telemetry`` needs the LOOKBACK_DAYS (36) days before ``as_of`` for the baselines and
    trends; older samples are ignored. Rows are sorted by probability, highest first.

    Columns: equipment_code, as_of, probability (NaN unless status is "ok"), status ("ok",
    "insufficient data", "in failure"), top_factors (list of {factor, value, contribution,
    feature}), message, rule_alert. Pass ``events`` (at least the last maintenance and
    failure of each equipment) for days since maintenance and the "in failure" status;
    without them that feature is unknown, as for a machine with no maintenance on record.
    """
    at = as_utc(as_of)
    start = at.floor("h") - pd.Timedelta(days=LOOKBACK_DAYS)
    clean = check_telemetry(telemetry, equipment, start, at).clean
    evs = normalise_events(events)
    evs = evs[evs["ts"] < at]
    frame = daily_features(clean, equipment, [at], evs)
    if frame.empty:
        return pd.DataFrame(columns=SCORE_COLUMNS)
    down = failure_labels(frame.index, evs, model.params.horizon)["down"]
    result = pd.DataFrame(
        {
            "equipment_code": frame.index.get_level_values("equipment_code"),
            "as_of": at,
            "probability": np.nan,
            "status": np.where(
                down, STATUS_DOWN, np.where(frame["enough_data"], STATUS_OK, STATUS_INSUFFICIENT)
            ),
            "top_factors": [[] for _ in range(len(frame))],
            "message": "",
            "rule_alert": (frame["rule_alert"].fillna(0) > 0).to_numpy(),
        }
    )
    ok = (result["status"] == STATUS_OK).to_numpy()
    for i in np.flatnonzero(~ok):
        result.loc[i, "message"] = (
            "open failure: no maintenance recorded since"
            if result.loc[i, "status"] == STATUS_DOWN
            else data_message(frame.iloc[i])
        )
    if ok.any():
        rows = frame[ok]
        x = rows[FEATURES].to_numpy(dtype=np.float64)
        result.loc[ok, "probability"] = model.probability(rows)
        _, contributions = tree_contributions(model.forest, x)
        factors = top_factors(rows, contributions, model.params.top_factors)
        result.loc[ok, "top_factors"] = pd.Series(factors, index=result.index[ok], dtype=object)
    return result.sort_values(
        ["probability", "equipment_code"],
        ascending=[False, True],
        na_position="last",
        ignore_index=True,
    )


__all__ = [
    "ALGORITHM",
    "LOOKBACK_DAYS",
    "SCORE_COLUMNS",
    "STATUS_DOWN",
    "STATUS_INSUFFICIENT",
    "STATUS_OK",
    "InsufficientTrainingData",
    "MaintenanceModel",
    "MaintenanceParams",
    "MaintenanceReport",
    "evaluate",
    "labelled_days",
    "pr_auc",
    "score",
    "split_day",
    "top_factors",
    "train_maintenance_model",
    "tree_contributions",
    "usable",
    "utc",
]
