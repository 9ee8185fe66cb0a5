"""Predictive maintenance: telemetry quality, labels, the model against the operator's rule,
explanations, and scoring that never fails on bad or missing data."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from services.forecast.ml.maintenance import (
    STATUS_DOWN,
    STATUS_INSUFFICIENT,
    STATUS_OK,
    InsufficientTrainingData,
    MaintenanceModel,
    MaintenanceParams,
    labelled_days,
    pr_auc,
    recall_precision,
    score,
    train_maintenance_model,
    tree_contributions,
)
from services.forecast.ml.maintenance_data import (
    FEATURES,
    check_telemetry,
    daily_features,
    failure_labels,
)
from tests.forecast.ml.maintenance_fleet import Fleet, simulated_fleet

# Small forests: the tests check behaviour; the bench measures the default model.
FAST = MaintenanceParams(n_estimators=60, seed=0)
DAY = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    """14 pieces of equipment at 4 sites over 150 days: about 60 failures, 17 without warning."""
    return simulated_fleet(sites=4, days=150, seed=1)


@pytest.fixture(scope="module")
def model(fleet: Fleet) -> MaintenanceModel:
    return train_maintenance_model(fleet.telemetry, fleet.events, fleet.equipment, fleet.end, FAST)


def _one(fleet: Fleet, code: str, days: int = 3) -> pd.DataFrame:
    rows = fleet.telemetry[fleet.telemetry["equipment_code"] == code]
    return rows.head(days * 24).reset_index(drop=True)


# --- telemetry quality --------------------------------------------------------------------


def test_check_telemetry_excludes_and_counts_absurd_values(fleet: Fleet) -> None:
    # Arrange: a pump and a transformer, with broken, stuck, duplicate and orphan samples.
    pump, transformer = _one(fleet, "LYON-PMP1"), _one(fleet, "LYON-TR1")
    pump.loc[[5, 30], "vibration_mm_s"] = 999.0  # no pump vibrates at 999 mm/s
    pump.loc[7, "temperature_c"] = -273.0
    pump.loc[40:47, "pressure_bar"] = 6.25  # 8 h of the exact same value: stuck
    transformer.loc[3, "flow_m3h"] = 120.0  # a transformer has no flow sensor
    transformer.loc[9, "vibration_mm_s"] = np.inf
    orphan = pump.head(2).assign(equipment_code="NOWHERE-PMP1")
    telemetry = pd.concat([pump, transformer, orphan, pump.iloc[[10]]], ignore_index=True)

    # Act
    quality = check_telemetry(telemetry, fleet.equipment)

    # Assert
    counts = quality.counts()
    assert counts["LYON-PMP1"]["out_of_range"] == 3
    assert counts["LYON-PMP1"]["frozen"] == 8
    assert counts["LYON-PMP1"]["duplicate"] == 1
    assert counts["LYON-TR1"]["not_fitted"] == 1
    assert counts["LYON-TR1"]["out_of_range"] == 1
    assert counts["NOWHERE-PMP1"]["unknown_equipment"] == 2
    missing = pump[["vibration_mm_s", "temperature_c"]].isna().sum().sum()
    assert counts["LYON-PMP1"].get("missing", 0) >= missing
    clean = quality.clean
    assert clean["vibration_mm_s"].max() < 45 and clean["temperature_c"].min() > -40
    assert not (clean["pressure_bar"] == 6.25).any()
    assert clean.loc[clean["equipment_code"] == "LYON-TR1", "flow_m3h"].isna().all()
    assert set(clean["equipment_code"]) == {"LYON-PMP1", "LYON-TR1"}
    assert len(clean) == len(pump) + len(transformer)


def test_check_telemetry_counts_gap_hours(fleet: Fleet) -> None:
    # Arrange: 10 hours cut out of three days of hourly samples.
    pump = _one(fleet, "LYON-PMP1").drop(index=range(20, 30))

    # Act
    quality = check_telemetry(pump, fleet.equipment)

    # Assert
    assert quality.counts()["LYON-PMP1"]["gap_hours"] == 10


def test_daily_features_never_see_excluded_values(fleet: Fleet) -> None:
    # Arrange: the same ten days twice, once with absurd values where the other has none.
    rows = _one(fleet, "REUNION-PMP1", days=10)
    dirty, reference = rows.copy(), rows.copy()
    dirty.loc[[50, 120, 200], "vibration_mm_s"] = [80.0, -3.0, 999.0]
    dirty.loc[[60, 61], "temperature_c"] = [400.0, -90.0]
    reference.loc[[50, 120, 200], "vibration_mm_s"] = np.nan
    reference.loc[[60, 61], "temperature_c"] = np.nan
    days = pd.date_range(fleet.start + 3 * DAY, fleet.start + 10 * DAY, freq="D")

    # Act
    from_dirty = daily_features(
        check_telemetry(dirty, fleet.equipment).clean, fleet.equipment, days
    )
    from_reference = daily_features(
        check_telemetry(reference, fleet.equipment).clean, fleet.equipment, days
    )

    # Assert
    pd.testing.assert_frame_equal(from_dirty, from_reference)
    assert from_dirty.loc["REUNION-PMP1", "vibration_max_24h"].max() < 10


# --- labels and metrics -------------------------------------------------------------------


def test_failure_labels_mark_the_horizon_and_drop_down_days() -> None:
    # Arrange: a failure on Jan 10 at 12:00, repaired on Jan 11 at 06:00.
    start = pd.Timestamp("2024-01-01", tz="UTC")
    events = pd.DataFrame(
        {
            "equipment_code": ["P1", "P1"],
            "ts": [start + pd.Timedelta(days=9, hours=12), start + pd.Timedelta(days=10, hours=6)],
            "kind": ["failure", "maintenance"],
        }
    )
    days = pd.date_range(start, periods=15, freq="D")
    index = pd.MultiIndex.from_product([["P1", "P2"], days], names=["equipment_code", "as_of"])

    # Act
    labels = failure_labels(index, events, pd.Timedelta(days=7))

    # Assert: days 3..9 (0-based) see the failure within 7 days; day 10 is during the repair.
    p1 = labels.loc["P1"]
    assert p1["label"].tolist() == [0, 0, 0] + [1] * 7 + [0] * 5
    assert p1["down"].tolist() == [False] * 10 + [True] + [False] * 4
    assert labels.loc["P2", "label"].sum() == 0 and not labels.loc["P2", "down"].any()


def test_pr_auc_of_a_binary_rule_is_its_single_operating_point() -> None:
    # Arrange: a rule firing on 4 days, 3 of them before a failure; 10 positive days of 40.
    y = np.array([1] * 10 + [0] * 30)
    rule = np.zeros(40)
    rule[[0, 1, 2, 15]] = 1.0
    recall, precision = recall_precision(y, rule > 0)

    # Act
    area = pr_auc(y, rule)

    # Assert: the curve's two points are (r, p) and (1, prevalence).
    assert recall == pytest.approx(0.3) and precision == pytest.approx(0.75)
    assert area == pytest.approx(0.3 * 0.75 + 0.7 * 0.25)


# --- the model ----------------------------------------------------------------------------


def test_train_maintenance_model_beats_the_rule_on_a_time_split(model: MaintenanceModel) -> None:
    # Arrange: the report's test period follows its training period in time.
    report = model.report
    assert report is not None, model.report_note

    # Assert
    assert report.test_start > f"{model.train_start:%Y-%m-%d}"
    assert report.test_positive_days > 20
    assert report.pr_auc_model > report.pr_auc_rule + 0.2
    assert report.recall_model > report.recall_rule
    assert 0.05 < report.alert_rate <= 0.1
    assert report.brier_calibrated is not None


def test_train_maintenance_model_is_deterministic_with_a_seed(fleet: Fleet) -> None:
    # Arrange: small forests on 100 days, to keep the three trainings quick.
    as_of = fleet.start + 100 * DAY
    params = MaintenanceParams(n_estimators=30, seed=0)

    def trained(p: MaintenanceParams) -> MaintenanceModel:
        return train_maintenance_model(fleet.telemetry, fleet.events, fleet.equipment, as_of, p)

    # Act
    first, again, other_seed = trained(params), trained(params), trained(replace(params, seed=1))

    # Assert
    scored = [
        score(m, fleet.telemetry, fleet.equipment, as_of, fleet.events)
        for m in (first, again, other_seed)
    ]
    pd.testing.assert_frame_equal(scored[0], scored[1])
    assert first.report == again.report
    by_code = [s.set_index("equipment_code")["probability"].sort_index() for s in scored]
    assert not np.allclose(by_code[0], by_code[2], equal_nan=True)


def test_train_maintenance_model_without_failures_says_why(fleet: Fleet) -> None:
    # Arrange: telemetry but no failure event at all.
    no_failures = fleet.events[fleet.events["kind"] != "failure"]

    # Act / Assert
    with pytest.raises(InsufficientTrainingData, match="0 failure"):
        train_maintenance_model(fleet.telemetry, no_failures, fleet.equipment, fleet.end, FAST)


def test_tree_contributions_add_up_to_the_forest_score(
    fleet: Fleet, model: MaintenanceModel
) -> None:
    # Arrange
    frame, _ = labelled_days(
        fleet.telemetry, fleet.events, fleet.equipment, fleet.end, model.params.horizon
    )
    rows = frame[frame["enough_data"]].iloc[::97]

    # Act
    prior, contributions = tree_contributions(model.forest, rows[FEATURES].to_numpy(float))

    # Assert
    np.testing.assert_allclose(prior + contributions.sum(axis=1), model.raw_score(rows), atol=1e-9)


# --- scoring ------------------------------------------------------------------------------


def test_score_names_vibration_or_temperature_for_a_degrading_pump(fleet: Fleet) -> None:
    # Arrange: the first warned pump failure after day 110; a model trained before it starts.
    episodes = fleet.episodes.merge(fleet.equipment, on="equipment_code")
    trained_until = fleet.start + 110 * DAY
    pump = (
        episodes[
            (episodes["kind"] == "pump") & ~episodes["sudden"] & (episodes["onset"] > trained_until)
        ]
        .sort_values("failure")
        .iloc[0]
    )
    model = train_maintenance_model(
        fleet.telemetry, fleet.events, fleet.equipment, trained_until, FAST
    )
    as_of = pump["failure"].floor("h") - pd.Timedelta(hours=12)

    # Act
    scores = score(model, fleet.telemetry, fleet.equipment, as_of, fleet.events)

    # Assert
    row = scores.set_index("equipment_code").loc[pump["equipment_code"]]
    assert row["status"] == STATUS_OK
    assert row["probability"] > 0.5
    assert pump["equipment_code"] in scores["equipment_code"].head(3).tolist()
    first = row["top_factors"][0]
    assert first["factor"].split()[0] in {"vibration", "temperature"}
    assert first["contribution"] > 0
    assert {"factor", "value", "contribution"} <= set(first)


def test_score_equipment_with_no_or_only_bad_data_gets_insufficient_data(
    fleet: Fleet, model: MaintenanceModel
) -> None:
    # Arrange: one pump that never sent anything, one whose sensors only send nonsense, one
    # of a kind the model has never seen.
    as_of = fleet.end - 10 * DAY
    equipment = pd.concat(
        [
            fleet.equipment,
            pd.DataFrame(
                {
                    "equipment_code": ["GHOST-PMP1", "BROKEN-PMP1", "NEW-WND1"],
                    "kind": ["pump", "pump", "windmill"],
                }
            ),
        ],
        ignore_index=True,
    )
    recent = fleet.telemetry[fleet.telemetry["ts"] >= as_of - 3 * DAY]
    lyon = recent[recent["equipment_code"] == "LYON-PMP1"]
    broken = lyon.assign(equipment_code="BROKEN-PMP1", vibration_mm_s=500.0, temperature_c=None)
    windmill = fleet.telemetry[fleet.telemetry["equipment_code"] == "LYON-CMP1"].assign(
        equipment_code="NEW-WND1"
    )
    telemetry = pd.concat([fleet.telemetry, broken, windmill], ignore_index=True)

    # Act
    scores = score(model, telemetry, equipment, as_of, fleet.events).set_index("equipment_code")

    # Assert
    for code in ("GHOST-PMP1", "BROKEN-PMP1"):
        assert scores.loc[code, "status"] == STATUS_INSUFFICIENT
        assert np.isnan(scores.loc[code, "probability"])
        assert scores.loc[code, "message"].startswith("insufficient data")
        assert scores.loc[code, "top_factors"] == []
    assert scores.loc["NEW-WND1", "status"] == STATUS_OK
    assert (scores.loc[fleet.equipment["equipment_code"], "status"] != STATUS_INSUFFICIENT).all()


def test_score_with_no_telemetry_at_all_returns_insufficient_data(
    fleet: Fleet, model: MaintenanceModel
) -> None:
    # Act
    scores = score(model, pd.DataFrame(), fleet.equipment, fleet.end)

    # Assert
    assert len(scores) == len(fleet.equipment)
    assert (scores["status"] == STATUS_INSUFFICIENT).all()
    assert scores["probability"].isna().all()


def test_score_marks_equipment_with_an_open_failure(fleet: Fleet, model: MaintenanceModel) -> None:
    # Arrange: a failure yesterday and no maintenance since.
    as_of = fleet.end - 10 * DAY
    code = "MARSEILLE-LOC1"
    events = pd.DataFrame({"equipment_code": [code], "ts": [as_of - DAY], "kind": ["failure"]})

    # Act
    scores = score(model, fleet.telemetry, fleet.equipment, as_of, events)

    # Assert
    row = scores.set_index("equipment_code").loc[code]
    assert row["status"] == STATUS_DOWN and np.isnan(row["probability"])


def test_score_refuses_a_naive_as_of(fleet: Fleet, model: MaintenanceModel) -> None:
    # Act / Assert
    with pytest.raises(ValueError, match="timezone-aware"):
        score(model, fleet.telemetry, fleet.equipment, pd.Timestamp("2024-05-01"))
