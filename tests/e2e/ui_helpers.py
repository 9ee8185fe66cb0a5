"""The real stack for browser tests: four services on free ports, simulated data, users, and
Debian's Chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, Page, Playwright

from services.common.stack import ROOT, ServiceProcess, start_services
from services.ingest.simulator.catalog import equipment_specs, site_specs
from services.ingest.simulator.client import IngestClient, backfill, client_auth
from tests.conftest import process_env

CHROMIUM = "/usr/bin/chromium"
# As root in a container: no sandbox; no GPU; no call to Google's hosts (the network is closed).
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = ROOT / "test-artifacts" / "ui"
UI_DIR = ROOT / "services" / "gateway" / "static"
ADMIN_PASSWORD = "ui admin passphrase"
PASSWORD = "ui user passphrase"
SERVICES = ("ingest", "forecast", "alerts", "gateway")


def launch_chromium(playwright: Playwright) -> Browser:
    """Debian's Chromium, headless, with the flags this closed network needs."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def ensure_ui_built() -> None:
    """Build the UI if sources are newer than the build (what `make test` already did)."""
    subprocess.run(["make", "-s", "ui"], cwd=ROOT, check=True)
    if not (UI_DIR / "index.html").is_file():
        raise RuntimeError(f"the web UI was not built into {UI_DIR}")


@dataclass
class UiStack:
    """The running services, their environment and the seeded sites."""

    env: dict[str, str]
    procs: dict[str, ServiceProcess]
    sites: list[str] = field(default_factory=list)
    # Each login costs an argon2 verification (~0.5 s here): one per user is enough.
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.procs["gateway"].url

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def token(self, username: str, password: str = PASSWORD) -> str:
        """An access token for the user, from the gateway's login (kept for reuse)."""
        if username in self.tokens:
            return self.tokens[username]
        with self.http() as http:
            answer = http.post(
                "/api/v1/auth/login", json={"username": username, "password": password}
            )
        answer.raise_for_status()
        self.tokens[username] = str(answer.json()["access_token"])
        return self.tokens[username]

    def get(self, path: str, token: str, **params: Any) -> httpx.Response:
        """GET a public API route as the token's user."""
        with self.http() as http:
            return http.get(path, params=params, headers={"Authorization": f"Bearer {token}"})

    def stop(self) -> None:
        for proc in reversed(self.procs.values()):
            proc.stop()


def start_stack(database_url: str, log_dir: Path, **overrides: str) -> UiStack:
    """The four services on free ports, one database, one SECRET_KEY, the built UI."""
    env = process_env(
        database_url,
        ADMIN_USERNAME="admin",
        ADMIN_PASSWORD=ADMIN_PASSWORD,
        GATEWAY_STATIC_DIR=str(UI_DIR),
        **overrides,
    )
    procs = start_services(env, SERVICES, log_dir=log_dir)
    return UiStack(env=env, procs={p.name: p for p in procs})


def seed(stack: UiStack, *, sites: int, days: float, seed: int = 7) -> list[str]:
    """Simulated sites, equipment and history posted through ingest, as the simulator does."""
    specs = site_specs(sites)
    with IngestClient(stack.procs["ingest"].url, client_auth(stack.env), echo=lambda _: None) as c:
        backfill(c, specs, equipment_specs(specs), days=days, seed=seed)
    stack.sites = [s.code for s in specs]
    return stack.sites


def create_users(stack: UiStack, roles: dict[str, str]) -> None:
    """Users ``{username: role}`` with PASSWORD, created by the admin through the API."""
    token = stack.token("admin", ADMIN_PASSWORD)
    with stack.http() as http:
        for username, role in roles.items():
            answer = http.post(
                "/api/v1/users",
                json={"username": username, "password": PASSWORD, "role": role},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert answer.status_code == 201, answer.text


def ui_login(page: Page, base_url: str, username: str, password: str = PASSWORD) -> None:
    """Open the UI and sign in through the login form; wait for the shell."""
    page.goto(base_url + "/")
    page.get_by_label(re.compile("Identifiant|Username")).fill(username)
    page.get_by_label(re.compile("Mot de passe|Password")).fill(password)
    page.locator("form[data-testid=login-form] button[type=submit]").click()
    page.wait_for_selector("[data-testid=current-user]")


def shot(page: Page, name: str) -> Path:
    """A full-page screenshot under test-artifacts/ui/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def parse_energy(text: str) -> float:
    """kWh from a French display such as '12 345 kWh' or '123,5 MWh'."""
    compact = re.sub(r"[\s\u00a0\u202f]", "", text)
    match = re.search(r"(-?[\d,]+)(MWh|kWh)", compact)
    assert match, f"no energy in {text!r}"
    value = float(match.group(1).replace(",", "."))
    return value * 1000 if match.group(2) == "MWh" else value


def energy_step(kwh: float) -> float:
    """Half the last displayed digit of formatEnergy: the largest honest rounding error."""
    return 50.0 if abs(kwh) >= 10_000 else 0.5 if abs(kwh) >= 100 else 0.05


def parse_percent(text: str) -> float:
    """A ratio from a French percentage such as '87,3 %'."""
    compact = re.sub(r"[\s\u00a0\u202f]", "", text)
    match = re.search(r"(-?[\d,]+)%", compact)
    assert match, f"no percentage in {text!r}"
    return float(match.group(1).replace(",", ".")) / 100


def page_overflow_px(page: Page) -> int:
    """How far the page is wider than the viewport (0: no sideways scrolling)."""
    return int(
        page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    )
