"""The provisioned Grafana: datasource and dashboard consistent with compose, every panel's
PromQL valid and made only of metrics the services really export."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.common.stack import ROOT
from tests.deploy.conftest import COMPOSE, LiveStack, check_promql, exported, metric_names

GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCE = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
PROVIDERS = yaml.safe_load((GRAFANA / "provisioning/dashboards/spe.yml").read_text())
# Grafana's own variables, as Grafana would substitute them before querying.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "6h", "$service": ".*"}


def _load(path: Path) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text())
    return dashboard


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found += panel.get("panels", [])
    return found


def _exprs(dashboard: dict[str, Any]) -> dict[str, str]:
    exprs = {}
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            exprs[f"panel_{panel['id']}_{target['refId']}"] = target["expr"]
    for i, annotation in enumerate(dashboard.get("annotations", {}).get("list", [])):
        if "expr" in annotation:
            exprs[f"annotation_{i}"] = annotation["expr"]
    for key, expr in exprs.items():
        for var, value in GRAFANA_VARS.items():
            expr = expr.replace(var, value)
        exprs[key] = expr
    return exprs


def test_there_is_a_dashboard() -> None:
    assert [p.name for p in DASHBOARDS] == ["spe-sre.json"]


def test_datasource_is_the_compose_prometheus() -> None:
    (source,) = DATASOURCE["datasources"]

    assert source["type"] == "prometheus" and source["uid"] == "spe-prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in COMPOSE["services"]


def test_dashboards_provider_reads_the_folder_compose_mounts() -> None:
    (provider,) = PROVIDERS["providers"]
    mounts = dict(
        v.split(":")[:2] for v in COMPOSE["services"]["grafana"]["volumes"] if v.startswith("./")
    )

    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


def test_dashboard_structure() -> None:
    for path in DASHBOARDS:
        dashboard = _load(path)
        panels = _panels(dashboard)
        ids = [p["id"] for p in panels]
        assert (
            dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
        )
        assert len(ids) == len(set(ids)), "panel ids must be unique"
        cells: set[tuple[int, int]] = set()
        for panel in panels:
            pos = panel["gridPos"]
            assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
            mine = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                    for y in range(pos["y"], pos["y"] + pos["h"])}  # fmt: skip
            assert not mine & cells, f"{panel['title']} overlaps another panel"
            cells |= mine
            if panel["type"] == "row":
                continue
            assert panel["title"] and panel["targets"], panel["id"]
            assert panel["datasource"]["uid"] == DATASOURCE["datasources"][0]["uid"]
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), panel["title"]
            for target in panel["targets"]:
                assert target["expr"].strip() and target["datasource"] == panel["datasource"]


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    for path in DASHBOARDS:
        result = check_promql(_exprs(_load(path)), tmp_path)

        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.e2e
def test_dashboard_uses_only_metrics_the_services_export(live_stack: LiveStack) -> None:
    available = exported(live_stack)

    for path in DASHBOARDS:
        dashboard = _load(path)
        for key, expr in _exprs(dashboard).items():
            used = metric_names(expr)
            assert used and used <= available, (path.name, key, expr, used - available)
        for variable in dashboard["templating"]["list"]:
            metric, label = re.fullmatch(
                r"label_values\((\w+),\s*(\w+)\)", variable["query"]["query"]
            ).groups()  # type: ignore[union-attr]
            assert metric in available
            assert any(f'{label}="' in t for t in live_stack.metrics.values() if metric in t)


def test_dashboard_shows_the_sre_view() -> None:
    used = set().union(
        *(metric_names(e) for e in _exprs(_load(GRAFANA / "dashboards/spe-sre.json")).values())
    )

    assert {
        "up", "http_requests_total", "http_request_duration_seconds_bucket", "ingest_rows_total",
        "ingest_batch_rows_bucket", "alerts_open_incidents", "alerts_notification_deliveries_total",
        "alerts_notification_failures_total", "forecast_jobs_total",
        "forecast_training_duration_seconds_bucket",
    } <= used  # fmt: skip
