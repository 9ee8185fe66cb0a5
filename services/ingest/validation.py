"""Row validation for bulk writes: a fast twin of each row model, the model as the final judge.

Validating 10,000 readings with ``TypeAdapter(list[ReadingIn])`` costs about 6 us a row, most
of it in the timestamp's Python ``AfterValidator`` (``datetime.now()`` per row) and in
building model instances. ``FastValidator`` derives from the model a slotted dataclass with
the same fields and constraints, with the timestamp bounds checked in Rust instead (``ge`` /
``le`` fixed when the adapter is built, so never looser than the model's), which validates
the same batch about three times faster.

The twin is only a filter: a row it accepts is one the model accepts (it is at least as
strict, which ``FastValidator`` checks when it is built), and every row it rejects, or
cannot judge alone (``suspect``), is judged again by the model itself, whose verdict and
error messages are the ones that count. A model the twin cannot mirror (a field validator it
does not know) simply gets no fast path.
"""

from __future__ import annotations

import dataclasses
import time
import typing
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import pydantic_core
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.functional_validators import (
    AfterValidator,
    BeforeValidator,
    PlainValidator,
    WrapValidator,
)
from pydantic_core import ErrorDetails

from services.ingest.schemas import EARLIEST

_FUNCTION_VALIDATORS = (AfterValidator, BeforeValidator, PlainValidator, WrapValidator)
# Rebuilding moves the fast path's upper time bound along with the clock.
_REFRESH_S = 10.0


class BodyError(Exception):
    """The input as a whole is unusable: not JSON, or not the expected shape."""

    def __init__(self, detail: str, *, malformed: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.malformed = malformed


@dataclasses.dataclass(frozen=True)
class TimeBound:
    """A timestamp field whose model type (``MeasuredAt``...) is a bounded ``AwareDatetime``."""

    model_type: Any
    future_slack: timedelta


class FastValidator:
    """Validates whole batches like ``model`` would, without Python code per row (see above)."""

    def __init__(
        self,
        model: type[BaseModel],
        *,
        time_bounds: dict[str, TimeBound],
        covered_model_validators: frozenset[str] = frozenset(),
    ) -> None:
        self.model = model
        self.time_bounds = time_bounds
        self.covered = covered_model_validators
        self.reason_unsupported = self._unsupported()
        self._adapter: TypeAdapter[list[Any]] | None = None
        self._built_at = 0.0

    @property
    def enabled(self) -> bool:
        return self.reason_unsupported is None

    def _unsupported(self) -> str | None:
        decorators = self.model.__pydantic_decorators__
        if decorators.field_validators:
            return "the model has field validators"
        if set(decorators.model_validators) - self.covered:
            return "the model has model validators the fast path does not cover"
        for name, info in self.model.model_fields.items():
            if info.alias or info.validation_alias or info.default_factory or info.discriminator:
                return f"field {name!r} uses an option the fast path does not mirror"
            functions = [m for m in info.metadata if isinstance(m, _FUNCTION_VALIDATORS)]
            bound = self.time_bounds.get(name)
            if bound is None and functions:
                return f"field {name!r} has a validator function"
            if bound is not None:
                expected = [
                    m for m in typing.get_args(bound.model_type)[1:]
                    if isinstance(m, _FUNCTION_VALIDATORS)
                ]  # fmt: skip
                if functions != expected or info.annotation is not AwareDatetime:
                    return f"field {name!r} is not the declared bounded timestamp type"
        return None

    def adapter(self) -> TypeAdapter[list[Any]]:
        """The batch adapter, rebuilt every few seconds so its time bounds follow the clock."""
        now = time.monotonic()
        if self._adapter is None or now - self._built_at > _REFRESH_S:
            self._adapter = TypeAdapter(list[self._twin(datetime.now(UTC))])  # type: ignore[misc,arg-type]
            self._built_at = now
        return self._adapter

    def _twin(self, now: datetime) -> type:
        fields: list[tuple[Any, ...]] = []
        for name, info in self.model.model_fields.items():
            bound = self.time_bounds.get(name)
            if bound is not None:
                annotation: Any = Annotated[
                    AwareDatetime, Field(ge=EARLIEST, le=now + bound.future_slack)
                ]
            else:
                annotation = (
                    Annotated[(info.annotation, *info.metadata)]  # type: ignore[valid-type]
                    if info.metadata
                    else info.annotation
                )
            if info.is_required():
                fields.append((name, annotation))
            else:
                fields.append((name, annotation, dataclasses.field(default=info.default)))
        twin = dataclasses.make_dataclass(
            f"Fast{self.model.__name__}", fields, slots=True, kw_only=True
        )
        twin.__pydantic_config__ = ConfigDict(**self.model.model_config)  # type: ignore[attr-defined]
        return twin


@dataclasses.dataclass
class Judged:
    """A chunk sorted into rows to store (with their input index) and rejected rows."""

    rows: list[Any]
    index: Sequence[int]
    rejected: list[tuple[int, str]]


def judge_json(
    validator: FastValidator,
    body: bytes,
    suspect: Callable[[Any], bool] | None,
) -> tuple[Judged, Callable[[], list[Any]]]:
    """Validate a JSON array of rows; also return how to get the raw items (for quarantine)."""
    raw: list[Any] | None = None

    def raw_items() -> list[Any]:
        nonlocal raw
        if raw is None:
            raw = pydantic_core.from_json(body)
        return raw

    if not validator.enabled:
        items = _json_array(body)
        raw = items
        return _judge_each(validator.model, items, range(len(items)), json_mode=True), raw_items
    try:
        rows: list[Any] = validator.adapter().validate_json(body)
        index: Sequence[int] = range(len(rows))
        bad: set[int] = set()
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        _raise_if_body_error(errors)
        bad = {int(e["loc"][0]) for e in errors}
        items = raw_items()
        keep = [i for i in range(len(items)) if i not in bad]
        rows, index, more = _validate_subset(
            validator, [items[i] for i in keep], keep, json_mode=True
        )
        bad.update(more)
    return _finish(validator.model, rows, index, bad, suspect, raw_items, json_mode=True), raw_items


def judge_python(
    validator: FastValidator,
    items: list[dict[str, Any]],
    suspect: Callable[[Any], bool] | None,
) -> Judged:
    """Validate rows read from a file (strings and spreadsheet values, so in lax mode)."""
    if not validator.enabled:
        return _judge_each(validator.model, items, range(len(items)), json_mode=False)
    rows, index, bad = _validate_subset(validator, items, range(len(items)), json_mode=False)
    return _finish(validator.model, rows, index, set(bad), suspect, lambda: items, json_mode=False)


def _validate_subset(
    validator: FastValidator, items: list[Any], index: Sequence[int], *, json_mode: bool
) -> tuple[list[Any], Sequence[int], list[int]]:
    """Validate ``items`` (at positions ``index``); return valid rows, their positions, the bad."""
    adapter = validator.adapter()
    bad: list[int] = []
    for _ in range(3):
        if not items:
            break
        try:
            if json_mode:
                rows = adapter.validate_json(pydantic_core.to_json(items))
            else:
                rows = adapter.validate_python(items, strict=False)
            return rows, index, bad
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False, include_context=False)
            failed = {int(e["loc"][0]) for e in errors if e["loc"]}
            if not failed:  # pragma: no cover - a list of rows always fails at some row
                break
            bad.extend(index[i] for i in failed)
            keep = [i for i in range(len(items)) if i not in failed]
            items = [items[i] for i in keep]
            index = [index[i] for i in keep]
    # Still failing after three rounds: let the model judge every remaining row.
    judged = _judge_each(validator.model, items, range(len(items)), json_mode=json_mode)
    bad.extend(index[i] for i, _ in judged.rejected)
    return judged.rows, [index[i] for i in judged.index], bad


def _finish(
    model: type[BaseModel],
    rows: list[Any],
    index: Sequence[int],
    bad: set[int],
    suspect: Callable[[Any], bool] | None,
    raw_items: Callable[[], Sequence[Any]],
    *,
    json_mode: bool,
) -> Judged:
    """Have the model judge the rows the fast path rejected or could not judge alone."""
    if suspect is not None:
        flagged = [i for i, row in enumerate(rows) if suspect(row)]
        if flagged:
            drop = set(flagged)
            bad.update(index[i] for i in flagged)
            keep = [i for i in range(len(rows)) if i not in drop]
            rows, index = [rows[i] for i in keep], [index[i] for i in keep]
    if not bad:
        return Judged(rows, index, [])
    items = raw_items()
    ordered = sorted(bad)
    second = _judge_each(model, [items[i] for i in ordered], ordered, json_mode=json_mode)
    if second.rows:  # rows the twin was stricter about (e.g. a clock edge): put them back
        merged = sorted(
            [*zip(index, rows, strict=True), *zip(second.index, second.rows, strict=True)],
            key=lambda pair: pair[0],
        )
        index, rows = [i for i, _ in merged], [r for _, r in merged]
    return Judged(list(rows), index, second.rejected)


def _judge_each(
    model: type[BaseModel], items: Sequence[Any], index: Sequence[int], *, json_mode: bool
) -> Judged:
    rows: list[Any] = []
    kept: list[int] = []
    rejected: list[tuple[int, str]] = []
    for position, item in zip(index, items, strict=True):
        try:
            if json_mode:
                row = model.model_validate_json(pydantic_core.to_json(item))
            else:
                row = model.model_validate(item, strict=False)
        except ValidationError as exc:
            rejected.append((position, reason_of(exc)))
        else:
            rows.append(row)
            kept.append(position)
    return Judged(rows, kept, rejected)


def _json_array(body: bytes) -> list[Any]:
    try:
        value = pydantic_core.from_json(body)
    except ValueError as exc:
        raise BodyError(f"the body is not valid JSON: {exc}", malformed=True) from None
    if not isinstance(value, list):
        raise BodyError("the body must be a JSON array of rows", malformed=False)
    return value


def _raise_if_body_error(errors: Iterable[ErrorDetails]) -> None:
    for error in errors:
        if not error["loc"]:
            if error["type"] == "json_invalid":
                raise BodyError(f"the body is not valid JSON: {error['msg']}", malformed=True)
            raise BodyError("the body must be a JSON array of rows", malformed=False)


def parse_single(model: type[BaseModel], body: bytes) -> tuple[Any, BaseModel | None, str | None]:
    """One JSON row: (raw value, the validated row or None, the reason it was rejected)."""
    try:
        raw = pydantic_core.from_json(body)
    except ValueError as exc:
        raise BodyError(f"the body is not valid JSON: {exc}", malformed=True) from None
    try:
        return raw, model.model_validate_json(body), None
    except ValidationError as exc:
        return raw, None, reason_of(exc)


def reason_of(exc: ValidationError) -> str:
    """A person-readable reason naming each wrong field and the bound it broke."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(p) for p in error["loc"])
        kind = error["type"]
        msg = error["msg"].removeprefix("Value error, ")
        if kind == "timezone_aware":
            msg = "timestamp has no timezone; give an offset such as +02:00 or Z"
        elif kind in ("model_type", "dataclass_type", "dict_type", "model_attributes_type"):
            msg = "row is not a JSON object"
        elif kind == "extra_forbidden":
            msg = "unknown field"
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts) or "invalid row"
