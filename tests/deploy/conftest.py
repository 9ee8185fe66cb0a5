"""The stack as the images run it, outside Docker: compose's migrate job, then each service
image's CMD with its ENV (UVICORN_PORT, ...) and compose's environment, on loopback ports.

Started once for tests/deploy: test_live_stack.py checks the commands, the healthchecks and
every service's /metrics (promtool), test_grafana.py and test_prometheus.py check the
dashboard's and the alert rules' metric names against what the services really export.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from services.common.stack import ROOT, create_database, drop_database, free_port, wait_ready
from tests.conftest import TEST_SECRET, token_for
from tests.deploy import dockerfile

SERVICES = ("ingest", "forecast", "alerts", "gateway")
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
VENV_BIN = str(Path(sys.executable).parent)
PROMTOOL = "/usr/bin/promtool"
# Where the gateway image keeps the built UI, and where `make ui` builds it here.
IMAGE_UI_DIR = "/app/ui"
LOCAL_UI_DIR = ROOT / "services" / "gateway" / "static"


def promtool() -> str:
    """Debian's promtool (`make promtool` installs it when missing)."""
    found = PROMTOOL if os.access(PROMTOOL, os.X_OK) else None
    assert found, "promtool not found: `make promtool` installs Debian's prometheus package"
    return found


@dataclass
class Container:
    """One compose service run as its image would run it, as a local process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['UVICORN_PORT']}"

    def run(self, argv: list[str], **overrides: str) -> subprocess.CompletedProcess[str]:
        """Run another command in this container's environment (a healthcheck, a job)."""
        return subprocess.run(
            argv, cwd=self.cwd, env=self.env | overrides, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip


@dataclass
class LiveStack:
    containers: dict[str, Container]
    migrate: subprocess.CompletedProcess[str]
    metrics: dict[str, str]  # service -> /metrics text after some traffic
    log_dir: Path
    database_url: str


def container(name: str, env: dict[str, str], cwd: Path) -> Container:
    """The argv and environment compose would give service ``name`` (image ENV, then compose's
    environment), with loopback addresses, the test database and the local UI build swapped in
    for the compose network's names and the image's /app/ui."""
    service = COMPOSE["services"][name]
    image = dockerfile.target(DOCKERFILE, service["build"]["target"])
    argv = service.get("command") or image.cmd
    assert argv, name
    image_env = {k: v for k, v in image.env.items() if k != "PATH"}
    # The image puts the venv first on PATH; here the project's venv is that venv.
    merged = env | image_env | {k: str(v) for k, v in service.get("environment", {}).items()}
    merged |= {"PATH": f"{VENV_BIN}:{env.get('PATH', '')}", "UVICORN_HOST": "127.0.0.1"}
    merged |= {k: env[k] for k in env if k.endswith("_URL") or k.endswith("_PORT")}
    if "UVICORN_PORT" in image_env:
        merged["UVICORN_PORT"] = env[f"{name.upper()}_PORT"]
    if merged.get("GATEWAY_STATIC_DIR") == IMAGE_UI_DIR:
        merged["GATEWAY_STATIC_DIR"] = str(LOCAL_UI_DIR)
    return Container(name, list(argv), merged, cwd)


def _traffic(containers: dict[str, Container]) -> None:
    """A little of everything the dashboard shows: writes (good and quarantined rows), a
    deficit that opens an incident whose webhook delivery fails, a queued forecast job, reads,
    a 404, a login through the gateway."""
    headers = {"Authorization": f"Bearer {token_for('operator')}"}
    ingest = httpx.Client(base_url=containers["ingest"].url, headers=headers, timeout=10)
    forecast = httpx.Client(base_url=containers["forecast"].url, headers=headers, timeout=10)
    alerts = httpx.Client(base_url=containers["alerts"].url, headers=headers, timeout=10)
    gateway = httpx.Client(base_url=containers["gateway"].url, timeout=10)
    site = {"code": "DEPLOY1", "name": "Deploy", "timezone": "Europe/Paris", "capacity_kw": 500.0}
    assert ingest.post("/v1/sites", json=site).status_code == 201
    first = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    rows = [
        {"site": "DEPLOY1", "ts": (first + timedelta(hours=i)).isoformat(),
         "consumption_kwh": 150.0 + i, "production_kwh": 40.0}
        for i in range(3)
    ] + [{"site": "DEPLOY1", "ts": first.isoformat(), "consumption_kwh": -5.0,
          "production_kwh": 0.0}]  # fmt: skip
    posted = ingest.post("/v1/readings/batch", json=rows)
    assert posted.status_code == 200, posted.text
    assert posted.json()["accepted"] == 3 and posted.json()["quarantined"] == 1
    assert ingest.get("/v1/sites/DEPLOY1").status_code == 200
    assert ingest.get("/v1/sites/NOPE").status_code == 404
    assert forecast.post("/v1/jobs/retrain", json={"site": "DEPLOY1"}).status_code == 202
    login = gateway.post("/api/v1/auth/login", json={"username": "admin", "password": "changethis"})
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    assert (
        gateway.get("/api/v1/sites", headers={"Authorization": f"Bearer {token}"}).status_code
        == 200
    )
    assert gateway.get("/api/v1/sites").status_code == 401
    # The incident's webhook delivery fails (nothing listens): wait for the first failure.
    deadline = time.monotonic() + 15
    while "alerts_notification_failures_total{" not in alerts.get("/metrics").text:
        assert time.monotonic() < deadline, "no failed webhook delivery within 15 s"
        time.sleep(0.2)


@pytest.fixture(scope="package")
def live_stack(pg_server_url: str) -> Iterator[LiveStack]:
    db_name = f"spe_deploy_{os.getpid()}"
    database_url = create_database(pg_server_url, db_name)
    work = Path(tempfile.mkdtemp(prefix="spe-deploy-"))  # like /app: no source, no .env
    ports = {name: free_port() for name in SERVICES}
    env = dict(os.environ)
    env |= {
        "ENVIRONMENT": "test", "SECRET_KEY": TEST_SECRET, "LOG_JSON": "false",
        "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1",
        "ADMIN_USERNAME": "admin", "ADMIN_PASSWORD": "changethis",
        "ALERTS_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/hook",
        "ALERTS_GROUP_WAIT_S": "0", "ALERTS_DELIVERY_POLL_S": "0.2",
        "ALERTS_EVAL_INTERVAL_S": "0", "FORECAST_SCHEDULE_ENABLED": "false",
        "FORECAST_JOB_POLL_S": "0", "REPORTS_POLL_S": "0", "INGEST_NOTIFY_ALERTS": "true",
    }  # fmt: skip
    for name, port in ports.items():
        env[f"{name.upper()}_PORT"] = str(port)
        env[f"{name.upper()}_URL"] = f"http://127.0.0.1:{port}"
    containers = {name: container(name, env, work) for name in SERVICES}
    for c in containers.values():
        c.env["DATABASE_URL"] = database_url
    migrate_job = container("migrate", env, work)
    migrate_job.env["DATABASE_URL"] = database_url
    try:
        migrated = migrate_job.run(migrate_job.argv)
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        for c in containers.values():
            log = open(work / f"{c.name}.log", "wb")  # noqa: SIM115 (closed with the process)
            c.proc = subprocess.Popen(
                c.argv, cwd=c.cwd, env=c.env, stdout=log, stderr=subprocess.STDOUT
            )
        for c in containers.values():
            wait_ready(c.name, c.url, c.proc, timeout_s=60)
        _traffic(containers)
        metrics = {name: httpx.get(f"{c.url}/metrics").text for name, c in containers.items()}
        yield LiveStack(containers, migrated, metrics, work, database_url)
    finally:
        for c in containers.values():
            if c.proc is not None and c.proc.poll() is None:
                c.proc.terminate()
        for c in containers.values():
            if c.proc is not None:
                try:
                    c.proc.wait(10)
                except subprocess.TimeoutExpired:
                    c.proc.kill()
        drop_database(pg_server_url, db_name)


# --- metric names ----------------------------------------------------------------------------

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}


def exported_names(exposition: str) -> set[str]:
    """Every series name an exposition offers: its samples, and those its TYPE lines promise
    (a labelled counter nobody incremented yet still has a family)."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(maxsplit=3)
            names |= {family + s for s in _SUFFIXES.get(kind, ("",))}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


# Series that Prometheus itself makes, not the services.
SYNTHETIC = {"up", "ALERTS", "ALERTS_FOR_STATE"}
_KEYWORDS = {"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring"}


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects (functions, labels, keywords left out)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        before = s[m.start() - 1] if m.start() else " "
        if before.isdigit() or before == ".":
            continue  # a duration's unit or an exponent
        if s[m.end() :].lstrip().startswith("(") or m.group(0) in _KEYWORDS:
            continue
        names.add(m.group(0))
    return names


# Families that only get a sample when a rare event happens (a training run finishing, a
# scheduled report being sent). A single-process service lists them anyway (TYPE line); under
# prometheus_client's multiprocess mode a family appears only once some worker touched it, so
# for these the declaration in the service's registry stands in for the live output.
EVENT_ONLY = {
    "forecast_training_duration_seconds",
    "gateway_report_deliveries",
    "forecast_backtest_mape",
}


def declared_event_only_names() -> set[str]:
    import prometheus_client

    import services.forecast.metrics  # noqa: F401 (registers the families)
    import services.gateway.subscriptions  # noqa: F401

    names: set[str] = set()
    for family in prometheus_client.REGISTRY.collect():
        if family.name in EVENT_ONLY:
            names |= {family.name + s for s in _SUFFIXES.get(family.type, ("",))}
    return names


def exported(stack: LiveStack) -> set[str]:
    """Every series name the four services export (plus Prometheus's own: up, ALERTS)."""
    names = set(SYNTHETIC) | declared_event_only_names()
    for text in stack.metrics.values():
        names |= exported_names(text)
    return names


def check_promql(exprs: dict[str, str], tmp_dir: Path) -> subprocess.CompletedProcess[str]:
    """`promtool check rules` on the expressions written as recording rules: PromQL syntax."""
    rules = {"groups": [{"name": "check", "rules": [
        {"record": f"check:{key}", "expr": expr} for key, expr in exprs.items()
    ]}]}  # fmt: skip
    path = tmp_dir / "exprs.yml"
    path.write_text(yaml.safe_dump(rules))
    return subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=30
    )
