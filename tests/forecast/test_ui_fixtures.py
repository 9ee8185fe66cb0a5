"""The web UI's Vitest fixtures are real answers: each validates against its response model.

frontend/src/api.test.ts parses these files; if a field the UI reads is renamed or retyped in
the API, this test fails here instead of the UI quietly showing "—".
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import TypeAdapter

from services.alerts.schemas import EffectiveRuleOut
from services.forecast.schemas import ForecastOut, JobOut, RiskOut

FIXTURES = Path(__file__).resolve().parents[2] / "frontend" / "src" / "fixtures"


MODELS: dict[str, object] = {
    "forecast.json": ForecastOut,
    "job.json": JobOut,
    "risk.json": RiskOut,
    "site-rules.json": list[EffectiveRuleOut],
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_ui_fixture_is_a_valid_api_answer(name: str) -> None:
    TypeAdapter(MODELS[name]).validate_json((FIXTURES / name).read_bytes())


def test_every_ui_fixture_is_checked() -> None:
    assert {p.name for p in FIXTURES.glob("*.json")} == set(MODELS)
