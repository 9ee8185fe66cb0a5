"""Prometheus config and alert rules: promtool-valid, each alert proven by a unit test on a
synthetic series, and every metric they use one the services really export."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.common.stack import ROOT
from tests.deploy.conftest import LiveStack, exported, metric_names, promtool

PROM_DIR = ROOT / "deploy" / "prometheus"
RULES: dict[str, Any] = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())
UNIT_TESTS: dict[str, Any] = yaml.safe_load((PROM_DIR / "alerts_test.yml").read_text())
ALERTS = [rule for group in RULES["groups"] for rule in group["rules"] if "alert" in rule]


def _promtool(*args: str, cwd: Path = PROM_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_prometheus_config_is_valid() -> None:
    result = _promtool("check", "config", "prometheus.yml")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_alert_rules_are_valid() -> None:
    result = _promtool("check", "rules", "alerts.yml")

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(ALERTS)} rules found" in result.stdout


def test_alert_rule_unit_tests_pass() -> None:
    result = _promtool("test", "rules", "alerts_test.yml")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_rule_unit_tests_fail_when_a_rule_is_wrong(tmp_path: Path) -> None:
    # The unit tests are only proof if they can fail: make ingest stall after 2 hours.
    broken = (
        (PROM_DIR / "alerts.yml").read_text().replace("[10m])) or vector(0)", "[2h])) or vector(0)")
    )
    (tmp_path / "alerts.yml").write_text(broken)
    (tmp_path / "alerts_test.yml").write_text((PROM_DIR / "alerts_test.yml").read_text())

    result = _promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)

    assert result.returncode != 0
    assert "SpeIngestStalled" in result.stdout + result.stderr


def test_every_alert_is_proven_firing_by_a_unit_test() -> None:
    fired = {
        case["alertname"]
        for test in UNIT_TESTS["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }

    assert fired == {rule["alert"] for rule in ALERTS}


def test_alerts_cover_what_an_sre_is_paged_for() -> None:
    names = {rule["alert"] for rule in ALERTS}

    assert {
        "SpeServiceDown", "SpeHttpErrorRateHigh", "SpeHttpLatencyP99High", "SpeIngestStalled",
        "SpeNotificationDeliveryFailing",
    } <= names  # fmt: skip
    for rule in ALERTS:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_prometheus_scrapes_the_four_services() -> None:
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}

    assert {"gateway", "ingest", "forecast", "alerts"} <= jobs
    assert config["rule_files"] == ["alerts.yml"]


@pytest.mark.e2e
def test_alert_rules_use_only_metrics_the_services_export(live_stack: LiveStack) -> None:
    available = exported(live_stack)

    for rule in ALERTS:
        used = metric_names(rule["expr"])
        assert used, rule["alert"]
        assert used <= available, (rule["alert"], used - available)
