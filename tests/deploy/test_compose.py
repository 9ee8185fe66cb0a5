"""Static checks of the deployment files (no Docker engine here): what they run must exist."""

from __future__ import annotations

import importlib
import re

import yaml

from services.common.stack import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = ("ingest", "forecast", "alerts", "gateway")


def test_compose_publishes_only_the_gateway() -> None:
    published = {name for name, svc in COMPOSE["services"].items() if svc.get("ports")}

    assert published == {"gateway"}


def test_compose_services_wait_for_migrations_and_database() -> None:
    for name in SERVICES:
        deps = COMPOSE["services"][name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
    assert COMPOSE["services"]["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert "healthcheck" in COMPOSE["services"]["db"]


def test_compose_volumes_are_named() -> None:
    assert set(COMPOSE["volumes"]) >= {"pgdata", "promdata"}
    db_volumes = COMPOSE["services"]["db"]["volumes"]
    assert any(v.startswith("pgdata:") for v in db_volumes)


def test_commands_run_by_the_images_exist() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    command = re.search(r"exec python -m ([\w.]+) \$\{SERVICE\}", dockerfile)
    migrate = COMPOSE["services"]["migrate"]["command"]

    # The image runs the module that services.common.stack runs for make run and the tests.
    assert command is not None and command.group(1) == "services.common.serve"
    serve = importlib.import_module(command.group(1))
    stack_source = (ROOT / "services/common/stack.py").read_text()
    assert '"-m", "services.common.serve"' in stack_source
    for name in SERVICES:
        assert name in serve.SERVICES
        module = importlib.import_module(f"services.{name}.main")
        assert callable(module.build_app), name
        assert COMPOSE["services"][name]["environment"]["SERVICE"] == name
    assert migrate[:2] == ["python", "-m"]
    assert callable(importlib.import_module(migrate[2]).main)


def test_every_setting_is_in_env_example() -> None:
    from services.alerts.config import AlertsSettings
    from services.forecast.config import ForecastSettings
    from services.gateway.config import GatewaySettings
    from services.ingest.config import IngestSettings

    documented = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
    for cls in (IngestSettings, ForecastSettings, AlertsSettings, GatewaySettings):
        missing = {f.upper() for f in cls.model_fields} - documented
        assert not missing, f"{cls.__name__}: {sorted(missing)} not in .env.example"


def test_image_builds_the_ui_with_the_makefile_commands() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()

    for command in ("npm ci", "npm run build"):
        assert command in dockerfile and command in makefile, command
    assert "GATEWAY_STATIC_DIR=/app/ui" in dockerfile
    assert "COPY --from=ui /ui /app/ui" in dockerfile
