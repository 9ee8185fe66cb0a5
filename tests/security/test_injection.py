"""SQL injection strings, LIKE wildcards and odd unicode in every filter and path parameter of
every read endpoint of every service: a 4xx or an empty (correct) answer, never a 5xx, and
the tables are intact afterwards.

The cases are generated from each service's OpenAPI document, so a new read route or filter
is covered without touching this file: for each GET operation, each string parameter (query
or path) gets each payload while the other required parameters get valid values.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.security.conftest import (
    ADMIN,
    HOURS,
    SERVICES,
    SITE,
    START,
    SecurityStack,
    admin_headers,
)
from tests.security.routes import openapi_document

pytestmark = pytest.mark.e2e

PAYLOADS = {
    "or_true": "' OR 1=1 --",
    "or_true_dq": '" OR ""="',
    "drop_table": "'; DROP TABLE ingest.site; --",
    "union": "x' UNION SELECT username, password_hash FROM auth.users --",
    "percent": "%",
    "underscore": "____",
    "prefix_wildcard": "SEC%",
    "like_escape": "SEC\\%",
    "semicolon_comment": "SEC1; --",
    "unicode": "Zürich-éèà-電力-🔥",
    "rtl_and_zero_width": "\u202eSEC1\u200b",
    "nul_byte": "SEC1\x00",
    "newline": "SEC1\r\nX-Injected: 1",
}
# Tables whose row counts must not change (reads only here, and no DROP may get through).
TABLES = ("ingest.site", "ingest.reading", "ingest.equipment", "alerts.rule",
          "alerts.incident", "auth.users", "auth.api_token")  # fmt: skip
END = START.replace(day=START.day + HOURS // 24)
VALID = {
    "start": START.isoformat(),
    "end": END.isoformat(),
    "site": SITE,
    "code": SITE,
    "username": ADMIN,
    "format": "csv",
}


def _valid(param: dict[str, Any]) -> str:
    schema = _schema(param)
    if param["name"] in VALID:
        return VALID[param["name"]]
    if "enum" in schema:
        return str(schema["enum"][0])
    if schema.get("type") == "integer":
        return str(max(1, schema.get("minimum", 1)))
    if schema.get("format") == "date":
        return START.date().isoformat()
    if schema.get("format") == "date-time":
        return START.isoformat()
    return SITE


def _schema(param: dict[str, Any]) -> dict[str, Any]:
    schema = param.get("schema", {})
    for option in schema.get("anyOf", []):  # Optional[str] → anyOf [str, null]
        if option.get("type") != "null":
            return dict(option)
    return dict(schema)


def _is_text(param: dict[str, Any]) -> bool:
    schema = _schema(param)
    return schema.get("type") == "string" and schema.get("format") not in ("date", "date-time")


def read_cases() -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(service, path template, injected parameter, the operation) for every text parameter."""
    for service in SERVICES:
        for path, item in openapi_document(service)["paths"].items():
            operation = item.get("get")
            if operation is None or path in ("/health", "/ready"):
                continue
            for param in operation.get("parameters", []):
                if param["in"] in ("query", "path") and _is_text(param):
                    yield service, path, param["name"], operation


CASES = list(read_cases())
# Not filters: the rules that would apply to a site code (alerts keeps no site list; every rule
# for all sites applies to any code), so rows come back whatever the code.
NOT_FILTERS = {("alerts", "/v1/sites/{code}/rules")}


def _request(
    path: str, operation: dict[str, Any], target: str, payload: str
) -> tuple[str, dict[str, str]]:
    params: dict[str, str] = {}
    for param in operation.get("parameters", []):
        name = param["name"]
        value = payload if name == target else _valid(param)
        if param["in"] == "path":
            path = path.replace("{" + name + "}", quote(value, safe=""))
        elif param["in"] == "query" and (name == target or param.get("required")):
            params[name] = value
    return path, params


def _rows(body: Any) -> list[Any] | None:
    """The rows of a list answer (a list, or a page's items); None for anything else."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for key in ("items", "rows", "points", "readings", "forecasts"):
            if isinstance(body.get(key), list):
                return list(body[key])
    return None


@pytest.fixture(scope="module")
def counts_before(security_stack: SecurityStack) -> dict[str, int]:
    return {t: security_stack.count(t) for t in TABLES}


@pytest.mark.parametrize(
    ("service", "path", "target", "operation"),
    CASES,
    ids=[f"{s}:{p}:{t}" for s, p, t, _ in CASES],
)
def test_injection_strings_in_read_parameters(
    service: str,
    path: str,
    target: str,
    operation: dict[str, Any],
    security_stack: SecurityStack,
    counts_before: dict[str, int],
) -> None:
    failures = []
    with httpx.Client(
        base_url=security_stack.url(service), headers=admin_headers(), timeout=30
    ) as http:
        for label, payload in PAYLOADS.items():
            url, params = _request(path, operation, target, payload)
            r = http.get(url, params=params)
            if r.status_code >= 500:
                failures.append(f"{label}: {r.status_code} {r.text[:200]}")
            elif r.status_code < 300 and r.headers.get("content-type", "").startswith(
                "application/json"
            ):
                rows = None if (service, path) in NOT_FILTERS else _rows(r.json())
                # Nothing is named like these payloads: a filter that matched rows took a
                # payload as SQL or as a LIKE pattern.
                if rows:
                    failures.append(f"{label}: {len(rows)} rows for a filter nothing matches")

    assert not failures, f"GET {path} with {target}=…:\n" + "\n".join(failures)


def test_tables_intact_after_the_injections(
    security_stack: SecurityStack, counts_before: dict[str, int]
) -> None:
    # Runs after the parametrized cases above (same module, defined later).
    assert {t: security_stack.count(t) for t in TABLES} == counts_before


def test_injection_cases_cover_every_service() -> None:
    assert {s for s, *_ in CASES} == set(SERVICES)
    assert len(CASES) > 20
