"""Static checks of docker-compose.yml (no Docker engine here): valid against the compose
specification, only the gateway published, health-gated start order, named volumes, settings
from .env. What the containers run is checked by running it: tests/deploy/test_live_stack.py."""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from typing import Any

import jsonschema
import pytest
import yaml

from services.common.stack import ROOT
from tests.deploy import dockerfile

COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
DOCKERFILE = (ROOT / "Dockerfile").read_text()
SERVICES = ("ingest", "forecast", "alerts", "gateway")
ENV_EXAMPLE = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))


def _compose_schema() -> dict[str, Any]:
    """The compose-spec JSON schema as check-jsonschema vendors it (compose-spec/compose-spec's
    schema/compose-spec.json, Apache-2.0, licence beside it in the package); its version is the
    check-jsonschema pin in constraints.txt."""
    vendor = resources.files("check_jsonschema") / "builtin_schemas" / "vendor"
    schema: dict[str, Any] = json.loads((vendor / "compose-spec.json").read_text())
    return schema


SCHEMA = _compose_schema()
VALIDATOR = jsonschema.validators.validator_for(SCHEMA)  # the draft its $schema names


def _errors(document: dict[str, Any]) -> list[str]:
    validator = VALIDATOR(SCHEMA)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def _default_profile() -> dict[str, Any]:
    return {n: s for n, s in COMPOSE["services"].items() if not s.get("profiles")}


def test_compose_file_matches_the_compose_specification() -> None:
    VALIDATOR.check_schema(SCHEMA)

    assert _errors(COMPOSE) == []


def test_compose_schema_rejects_a_broken_file() -> None:
    broken = copy.deepcopy(COMPOSE)
    broken["services"]["gateway"]["depends_on"] = {"migrate": {"condition": "service_done"}}
    broken["services"]["ingest"]["helthcheck"] = {"test": ["CMD", "true"]}

    errors = _errors(broken)

    assert any("service_done" in e for e in errors), errors
    assert any("helthcheck" in e for e in errors), errors


def test_only_the_gateway_is_published() -> None:
    published = {name for name, svc in _default_profile().items() if svc.get("ports")}

    assert published == {"gateway"}
    assert COMPOSE["services"]["gateway"]["ports"] == ["${GATEWAY_PUBLISHED_PORT:-8000}:8000"]


def test_grafana_is_an_optional_profile_reachable_from_the_host_only() -> None:
    grafana = COMPOSE["services"]["grafana"]

    assert grafana["profiles"] == ["grafana"]
    assert all(port.startswith("127.0.0.1:") for port in grafana["ports"]), grafana["ports"]
    assert grafana["depends_on"] == {"prometheus": {"condition": "service_healthy"}}


def test_services_start_after_a_healthy_database_and_the_migrations() -> None:
    migrate = COMPOSE["services"]["migrate"]

    assert migrate["depends_on"] == {"db": {"condition": "service_healthy"}}
    for name in SERVICES:
        deps = COMPOSE["services"][name]["depends_on"]
        assert deps["db"]["condition"] == "service_healthy", name
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
    gateway = COMPOSE["services"]["gateway"]["depends_on"]
    for name in ("ingest", "forecast", "alerts"):
        assert gateway[name]["condition"] == "service_healthy", name


def _has_healthcheck(name: str) -> bool:
    service = COMPOSE["services"][name]
    if "healthcheck" in service:
        return not service["healthcheck"].get("disable", False)
    build = service.get("build")
    return isinstance(build, dict) and (
        dockerfile.target(DOCKERFILE, build["target"]).healthcheck is not None
    )


def test_every_long_running_service_has_a_healthcheck() -> None:
    for name, service in COMPOSE["services"].items():
        if name != "migrate":
            assert _has_healthcheck(name), name
        for dep, how in (service.get("depends_on") or {}).items():
            if how["condition"] == "service_healthy":
                assert _has_healthcheck(dep), f"{name} waits for {dep} to be healthy"


def test_each_service_is_its_own_dockerfile_target() -> None:
    stages = {stage.name for stage in dockerfile.stages(DOCKERFILE)}

    for name in (*SERVICES, "migrate"):
        service = COMPOSE["services"][name]
        assert service["build"] == {"context": ".", "dockerfile": "Dockerfile", "target": name}
        assert name in stages, name
        assert service["image"] == f"spe-{name}:${{SPE_VERSION:-local}}"
        assert service["pull_policy"] == "build", name


def test_data_lives_in_named_volumes_and_config_is_mounted_read_only() -> None:
    named = set(COMPOSE["volumes"])
    used = set()
    for name, service in COMPOSE["services"].items():
        for volume in service.get("volumes", []):
            source, target, *mode = volume.split(":")
            if source.startswith("./"):
                assert mode == ["ro"] and source.startswith("./deploy/"), (name, volume)
                assert (ROOT / source).exists(), (name, volume)
            else:
                assert source in named, (name, volume)
                used.add(source)
    assert used == named == {"pgdata", "promdata", "grafana-data"}


def test_services_read_their_settings_from_dot_env() -> None:
    for name in (*SERVICES, "migrate"):
        assert COMPOSE["services"][name]["env_file"] == [{"path": ".env", "required": False}]
        env = COMPOSE["services"][name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql://"), name
        assert env["INGEST_URL"] == "http://ingest:8001", name


def test_every_compose_variable_is_in_env_example() -> None:
    body = "\n".join(
        line for line in COMPOSE_TEXT.splitlines() if not line.lstrip().startswith("#")
    )
    used = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", body))

    assert used, "no ${VAR} found: the pattern is wrong"
    assert used - ENV_EXAMPLE == set()


def test_compose_ports_match_the_images_and_the_prometheus_targets() -> None:
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in prometheus["scrape_configs"]
    }

    for name in SERVICES:
        port = dockerfile.target(DOCKERFILE, name).env["UVICORN_PORT"]
        assert targets[name] == [f"{name}:{port}"], name
        if name != "gateway":
            assert COMPOSE["services"]["gateway"]["environment"][f"{name.upper()}_URL"] == (
                f"http://{name}:{port}"
            )
    assert COMPOSE["services"]["gateway"]["ports"][0].endswith(":8000")


@pytest.mark.parametrize(
    "settings",
    [
        "services.ingest.config:IngestSettings",
        "services.forecast.config:ForecastSettings",
        "services.alerts.config:AlertsSettings",
        "services.gateway.config:GatewaySettings",
    ],
)
def test_every_setting_is_in_env_example(settings: str) -> None:
    import importlib

    module, _, name = settings.partition(":")
    cls = getattr(importlib.import_module(module), name)

    missing = {f.upper() for f in cls.model_fields} - ENV_EXAMPLE
    assert not missing, f"{name}: {sorted(missing)} not in .env.example"
