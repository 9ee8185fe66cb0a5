"""Timestamps in query strings: timezone required, an unencoded '+' forgiven, sane years."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator

# "…T00:00:00+01:00" with the '+' left unencoded in a URL arrives as "…T00:00:00 01:00".
_UNENCODED_PLUS = re.compile(r"^(.*[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)$")
EARLIEST_YEAR, LATEST_YEAR = 1900, 2200
_NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")


def refuse_number(value: object) -> object:
    """A timestamp is ISO 8601 text: a number (or "0.5") is not read as a Unix time.

    pydantic's lax mode would take 0 or "0.5" as seconds since 1970, so a typo or a wrong
    field silently became a date; the API documents ISO 8601 and now holds to it.
    """
    # bool is an int: True is not a time either.
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.match(value)):
        raise ValueError(
            "give an ISO 8601 timestamp with an offset, e.g. 2026-03-29T00:00:00Z "
            "(numbers are not read as Unix times)"
        )
    return value


def restore_plus(value: object) -> object:
    """Put back the '+' of an offset that a URL turned into a space."""
    if isinstance(value, str) and (m := _UNENCODED_PLUS.match(value.strip())):
        return f"{m[1]}+{m[2]}"
    return value


def require_aware(value: datetime) -> datetime:
    """The instant itself, or ValueError saying what a person must add or change."""
    if value.utcoffset() is None:
        raise ValueError(
            "a timezone is required: add an offset such as Z or +01:00 "
            "(write '+' as %2B in a URL), e.g. 2026-03-29T00:00:00Z"
        )
    # Checked on the wall-clock year so no UTC conversion can overflow at the edges.
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise ValueError(f"must lie between the years {EARLIEST_YEAR} and {LATEST_YEAR}")
    return value


# A query parameter: `start: QueryTime`; a naive or absurd value is a 422 naming the field.
QueryTime = Annotated[
    datetime,
    BeforeValidator(restore_plus),
    BeforeValidator(refuse_number),
    AfterValidator(require_aware),
]
# A timestamp in a JSON body: with an offset, as text (never a number).
IsoDatetime = Annotated[AwareDatetime, BeforeValidator(refuse_number)]
