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
    factory = re.search(r"services\.\$\{SERVICE\}\.main:(\w+)", dockerfile)
    migrate = COMPOSE["services"]["migrate"]["command"]

    assert factory is not None
    for name in SERVICES:
        module = importlib.import_module(f"services.{name}.main")
        assert callable(getattr(module, factory.group(1))), name
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
