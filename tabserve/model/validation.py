"""The one validator of request records, in two forms read from the same `Field` tables:

- `strict_type(field)`: the values a field accepts *as they stand* (a finite number, a level
  seen in training, an accepted boolean spelling, null where allowed), as a type that msgspec
  checks in C while it parses a body (`serving.decoding`'s plain path);
- `validate(schema, records)`: any parsed records, column by column, naming every problem
  (errors) and every tolerated oddity (warnings: unknown fields, unseen levels, levels and
  field names that differ from the known ones only in spelling, numbers outside the range
  seen in training).

A record that `strict_type` accepts validates with no problem and no warning, and to the same
values; `tests/test_decoding.py` checks it on generated values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from itertools import repeat
from typing import Annotated, Any, Literal, Optional, Union

import msgspec
import numpy as np

from tabserve.model.schema import (BOOLEAN_VALUES, MISSING_CODE, UNSEEN_CODE, Field, Kind, Schema,
                                   loose_spelling)

_MISSING = object()     # a key absent from a record (distinct from JSON null)
_REQUIRED = "required field is missing"
_JSON_TYPE_NAMES = {str: "string", bool: "boolean", int: "number", float: "number",
                    dict: "object", list: "array", type(None): "null"}


@dataclass(frozen=True)
class Problem:
    """What is wrong with one field of one record; `index` is None for a single record."""

    field: str | None
    message: str
    index: int | None = None

    def __str__(self) -> str:
        where = "" if self.index is None else f"records[{self.index}]"
        if self.field is not None:
            where = f"{where}.{self.field}" if where else self.field
        return f"{where}: {self.message}" if where else self.message

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "message": self.message}
        if self.index is not None:
            out["index"] = self.index
        return out


class RequestError(ValueError):
    """A client mistake; the app answers it with a 4xx problem+json that lists `problems`."""

    def __init__(self, problems: list[Problem], status: int = 422, title: str | None = None):
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems
        self.status = status
        self.title = title


@dataclass
class Validated:
    """The outcome of validating records: typed columns, problems, and per-record warnings."""

    columns: dict[str, np.ndarray]
    problems: list[Problem] = field(default_factory=list)
    warnings: dict[int, list[str]] = field(default_factory=dict)
    # (record, field, value) for each level training never saw: the drift report names them
    unseen: list[tuple[int, str, str]] = field(default_factory=list)

    def warn(self, index: int, message: str) -> None:
        self.warnings.setdefault(index, []).append(message)

    def raise_problems(self) -> Validated:
        """Itself when valid; `RequestError` naming every problem otherwise."""
        if self.problems:
            raise RequestError(self.problems)
        return self


def strict_type(f: Field, level: Any = None) -> Any:
    """The values `f` accepts as they stand, as a type msgspec checks in C. `level` replaces
    a categorical's `Literal` of its levels by a type that decodes the same texts (an Enum)."""
    if f.kind is Kind.NUMERIC:
        # JSON has no NaN or infinity, and msgspec refuses numbers beyond a double; a number
        # outside the training range goes to `validate`, which warns about it
        kind = float if f.minimum is None else \
            Annotated[float, msgspec.Meta(ge=f.minimum, le=f.maximum)]
    elif f.kind is Kind.CATEGORICAL and level is None and f.numbered_levels:
        kind = Union[Literal[f.categories], Literal[tuple(int(c) for c in f.categories)]]
    elif f.kind is Kind.CATEGORICAL:
        kind = level or Literal[f.categories]
    else:
        spellings = tuple(k for k in f.boolean_table if isinstance(k, str))
        kind = Union[bool, Literal[0, 1], Literal[spellings]]
    return Optional[kind] if f.nullable else kind


def validate(schema: Schema, records: list[dict[str, Any]], indexed: bool = True) -> Validated:
    """Check records against the schema, column by column, collecting every problem.

    A field missing from a record is read from a key that has its loose spelling (case,
    spaces, `-` and `_` aside: `SeniorCitizen` or `senior-citizen` for `senior_citizen`), with
    one warning per record naming each such key.
    Errors: a missing field (with the key sent instead, when more than one key could be it),
    a wrong JSON type, a non-finite number, a null where training had no missing values.
    Warnings: unknown fields, unseen categories, levels read by their loose spelling,
    numbers outside the training range.
    With `indexed=False` (a single record) problems carry no record index.
    """
    known = set(schema.names)
    out = validate_columns(schema, _columns_of(schema, records), indexed)
    renamed = {}
    if any(p.message == _REQUIRED for p in out.problems):
        renamed = _loosely_named(schema, records, known)
    if renamed:
        records = [_renamed(record, renamed[i]) if i in renamed else record
                   for i, record in enumerate(records)]
        out = validate_columns(schema, _columns_of(schema, records), indexed)
        for i, keys in renamed.items():
            out.warn(i, "fields read by their loose spelling: " + ", ".join(
                f"{_short(key)!r} as {name!r}" for key, name in keys.items()))
    # a record with every field and no more keys than fields has no unknown ones
    if set(map(len, records)) != {len(schema.fields)} or out.problems:
        for i, record in enumerate(records):
            for name in sorted(record.keys() - known):
                why = "the target is not an input" if name == schema.target else \
                    "the model does not use it"
                out.warn(i, f"unknown field {_short(name)!r} ignored ({why})")
        out.problems = [_with_near_key(p, records, known) for p in out.problems]
    return out


def _columns_of(schema: Schema, records: list[dict[str, Any]]) -> dict[str, list]:
    return {f.name: [record.get(f.name, _MISSING) for record in records]
            for f in schema.fields}


@lru_cache(maxsize=8)
def _loose_names(names: tuple[str, ...]) -> dict[str, str]:
    """Each field by its loose spelling, where only one field has it."""
    by_spelling: dict[str, list[str]] = {}
    for name in names:
        by_spelling.setdefault(loose_spelling(name), []).append(name)
    return {spelling: found[0] for spelling, found in by_spelling.items() if len(found) == 1}


def _loosely_named(schema: Schema, records: list[dict[str, Any]],
                   known: set[str]) -> dict[int, dict[str, str]]:
    """For each record missing a field, the key it sent in its place ({key: field}): one key
    only, of the same loose spelling (two candidates are left for the error to name)."""
    loose = _loose_names(tuple(schema.names))
    renamed: dict[int, dict[str, str]] = {}
    for i, record in enumerate(records):
        if known <= record.keys():
            continue
        candidates: dict[str, list[str]] = {}
        for key in record.keys() - known:
            name = loose.get(loose_spelling(key)) if isinstance(key, str) else None
            if name is not None and name not in record:
                candidates.setdefault(name, []).append(key)
        keys = {sent[0]: name for name, sent in candidates.items() if len(sent) == 1}
        if keys:
            renamed[i] = dict(sorted(keys.items()))
    return renamed


def _renamed(record: dict[str, Any], keys: dict[str, str]) -> dict[str, Any]:
    return {keys.get(key, key): value for key, value in record.items()}


def _with_near_key(problem: Problem, records: list[dict[str, Any]], known: set[str]) -> Problem:
    """A missing field's problem, naming the unknown keys alike in spelling that were not
    taken for it (two of them, or a spelling two fields share)."""
    if problem.message != _REQUIRED:
        return problem
    wanted = loose_spelling(problem.field)
    record = records[problem.index or 0]
    near = [key for key in record.keys() - known
            if isinstance(key, str) and loose_spelling(key) == wanted]
    if not near:
        return problem
    shown = " or ".join(repr(_short(key)) for key in sorted(near))
    return replace(problem, message=f"{_REQUIRED} (got {shown}, alike in spelling but "
                                    "ambiguous: send the field's exact name)")


@dataclass(frozen=True)
class KnownCodes:
    """A categorical column whose every value was read as one of its levels exactly (the
    tensor codec's binary texts, matched against `Field.category_codes`): its codes."""

    codes: np.ndarray


Column = Union[list, np.ndarray, KnownCodes]


def validate_columns(schema: Schema, values: dict[str, Column], indexed: bool = True) -> Validated:
    """Check each field's values: a list as decoded from JSON, or typed as a binary tensor
    carries them (a numpy array of numbers, a categorical's `KnownCodes`), which take the
    same rules without a Python object per value; an array that breaks one is checked as a
    list, so the problems and warnings are the same."""
    out = Validated(columns={})
    for f in schema.fields:
        out.columns[f.name] = _CHECKERS[f.kind](f, values[f.name], out, indexed)
    return out


def _json_type(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _short(text: str, limit: int = 40) -> str:
    """Client text as it appears in a message: cut, so a huge value cannot bloat the answer."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _shown(value: Any) -> str:
    """A short rendering of a client's value for an error message."""
    if isinstance(value, str):
        return f"string {_short(value)!r}"
    if isinstance(value, (dict, list)):
        return _json_type(value)
    return f"{_json_type(value)} {value!r}" if not isinstance(value, bool) else \
        f"boolean {str(value).lower()}"


def _type_problem(value: Any, expected: str) -> str:
    if value is _MISSING:
        return _REQUIRED
    if value is None:
        return "null is not allowed: the training data had no missing values for this field"
    return f"expected {expected}, got {_shown(value)}"


def _number_hint(f: Field, value: Any) -> str:
    """What to send instead of a number written as text ("29.85", as a CSV gives it) or a
    blank (" ", as the Kaggle telco file has): training read both, JSON needs the number or
    null."""
    if not isinstance(value, str):
        return ""
    if not value.strip():
        return ": send null for a missing value" if f.nullable else \
            ": this field needs a number (the training data had no missing values here)"
    try:
        number = float(value)
    except ValueError:
        return ""
    return f": send the number itself, without quotes ({value.strip()})" \
        if math.isfinite(number) else ""


def _report(out: Validated, f: Field, index: int, indexed: bool, message: str) -> None:
    out.problems.append(Problem(f.name, message, index if indexed else None))


def _check_numeric(f: Field, values: Column, out: Validated, indexed: bool) -> np.ndarray:
    if isinstance(values, np.ndarray):
        if values.dtype.kind in "iuf":
            column = values.astype(np.float64)
            finite = np.isfinite(column)
            if finite.all() or (f.nullable and not np.isinf(column).any()):
                return _warn_outside_range(f, column, out)
        values = values.tolist()
    allowed = {int, float, type(None)} if f.nullable else {int, float}
    if set(map(type, values)) <= allowed:  # the fast path: every value is a number
        try:
            column = np.array(values, dtype=np.float64)
        except OverflowError:  # an integer beyond the range of a double
            column = None
        if column is not None and (np.isfinite(column).all()
                                   or (f.nullable and not np.isinf(column).any())):
            return _warn_outside_range(f, column, out)
    column = np.full(len(values), np.nan)
    for i, value in enumerate(values):
        if value is None and f.nullable:
            continue
        if type(value) not in (int, float):
            _report(out, f, i, indexed, _type_problem(value, "a number") + _number_hint(f, value))
            continue
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if math.isfinite(number):
            column[i] = number
        else:
            _report(out, f, i, indexed, f"expected a finite number, got {value!r:.40}")
    return _warn_outside_range(f, column, out)


def _warn_outside_range(f: Field, column: np.ndarray, out: Validated) -> np.ndarray:
    """The model never saw such numbers: its answer there is an extrapolation."""
    if f.minimum is not None:
        for i in np.flatnonzero((column < f.minimum) | (column > f.maximum)).tolist():
            out.warn(i, f"{column[i]:g} for field {f.name!r} is outside the range seen in "
                        f"training ({f.minimum:g} to {f.maximum:g}): the answer there is an "
                        "extrapolation")
    return column


def _check_boolean(f: Field, values: Column, out: Validated, indexed: bool) -> np.ndarray:
    if isinstance(values, np.ndarray):
        column = values.astype(np.float64)
        if ((column == 0) | (column == 1)).all():
            return column
        values = values.tolist()
    try:  # the fast path: every value is one of the accepted spellings as it stands
        return np.fromiter(map(f.boolean_table.__getitem__, values), dtype=np.float64,
                           count=len(values))
    except (KeyError, TypeError):  # TypeError: an unhashable value (an object or array)
        pass
    column = np.full(len(values), np.nan)
    expected = f"a boolean (true/false, 1/0, or {f.spellings[0]!r}/{f.spellings[1]!r})"
    for i, value in enumerate(values):
        kind = type(value)
        if kind is str:
            number = BOOLEAN_VALUES.get(value.strip().lower())
        elif kind in (bool, int, float):
            number = BOOLEAN_VALUES.get(value)
        elif value is None and f.nullable:
            continue
        else:
            number = None
        if number is None:
            _report(out, f, i, indexed, _type_problem(value, expected))
        else:
            column[i] = number
    return column


def _check_categorical(f: Field, values: Column, out: Validated, indexed: bool) -> np.ndarray:
    if isinstance(values, KnownCodes):
        return values.codes
    if isinstance(values, np.ndarray):  # numbers: a level written as a whole number is found so
        values = values.tolist()
    index = f.category_codes
    try:  # the fast path: each value's code in one C loop; what is not a level is looked at
        codes = np.fromiter(map(index.get, values, repeat(UNSEEN_CODE)), dtype=np.intp,
                            count=len(values))
        odd = np.flatnonzero(codes == UNSEEN_CODE).tolist()
    except TypeError:  # an unhashable value (an object or array)
        codes = np.full(len(values), UNSEEN_CODE, dtype=np.intp)
        odd = range(len(values))
    for i in odd:
        value = values[i]
        if type(value) is str:
            code = index.get(value.strip(), UNSEEN_CODE) if value.strip() else UNSEEN_CODE
            if code == UNSEEN_CODE and value.strip():
                code = f.loose_codes.get(loose_spelling(value), UNSEEN_CODE)
                if code != UNSEEN_CODE:
                    out.warn(i, f"{_short(value)!r} for field {f.name!r} read as the known "
                                f"category {f.categories[code]!r} (they differ only in case, "
                                "spaces, '-' or '_')")
            if code == UNSEEN_CODE:
                out.warn(i, f"unseen category {_short(value.strip())!r} for field {f.name!r} "
                            "(encoded as none of the known categories)")
                out.unseen.append((i, f.name, _short(value.strip())))
            codes[i] = code
        elif value is None and f.nullable:
            codes[i] = MISSING_CODE
        elif f.numbered_levels and type(value) in (int, float):
            out.warn(i, f"unseen category {value!r} for field {f.name!r} "
                        "(encoded as none of the known categories)")
            out.unseen.append((i, f.name, repr(value)))
        else:
            _report(out, f, i, indexed, _type_problem(value, "a string"))
    return codes


_CHECKERS = {Kind.NUMERIC: _check_numeric, Kind.BOOLEAN: _check_boolean,
             Kind.CATEGORICAL: _check_categorical}
