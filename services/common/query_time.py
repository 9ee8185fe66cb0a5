"""Timestamps in query strings: timezone required, an unencoded '+' forgiven, sane years."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

# "…T00:00:00+01:00" with the '+' left unencoded in a URL arrives as "…T00:00:00 01:00".
_UNENCODED_PLUS = re.compile(r"^(.*[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)$")
EARLIEST_YEAR, LATEST_YEAR = 1900, 2200


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
QueryTime = Annotated[datetime, BeforeValidator(restore_plus), AfterValidator(require_aware)]
