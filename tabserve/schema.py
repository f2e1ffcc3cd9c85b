"""The input schema: inferred from training data, stored in the bundle, and the contract that
every request is validated against.

Both paths produce the same *columns*, one numpy array per field (floats for numbers and
booleans, NaN when missing; level codes for categoricals: the level's position in
`Field.categories`, `UNSEEN_CODE` or `MISSING_CODE`), so the encoder that turns columns into
the model's matrix is shared by training and serving:
- `Schema.columns_from_frame(frame)`: training rows (a frame of trimmed strings)
- `Schema.validate(records)`: request records (parsed JSON objects), collecting every problem
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from collections.abc import Sequence
from itertools import repeat
from typing import Any

import numpy as np
import pandas as pd

# Values a boolean-like field accepts, compared after trimming and lower-casing strings.
# (JSON true/false and the numbers 1/0 hash alike in Python, so they share entries.)
BOOLEAN_VALUES: dict[Any, float] = {
    True: 1.0, False: 0.0,
    "1": 1.0, "0": 0.0, "1.0": 1.0, "0.0": 0.0,
    "yes": 1.0, "no": 0.0, "y": 1.0, "n": 0.0,
    "true": 1.0, "false": 0.0, "t": 1.0, "f": 0.0,
}
_BOOLEAN_PAIRS = [{"1", "0"}, {"1.0", "0.0"}, {"yes", "no"}, {"y", "n"}, {"true", "false"},
                  {"t", "f"}]
_ID_NAME = re.compile(r"(^|[_\s-])(id|key|uuid|guid|index|idx)$|^(id|key|uuid|index)[_\s-]",
                      re.IGNORECASE)
_MAX_TEXT_LEVELS = 200  # a text column with more distinct values than this that are nearly
                        # unique per row is free text or an identifier, not a category
_MISSING = object()     # a key absent from a record (distinct from JSON null)
UNSEEN_CODE = -1        # categorical codes for a level not seen in training, and for null
MISSING_CODE = -2
_LOOKUPS = ("category_codes", "boolean_table", "packed_lookup")  # cached: never pickled
_JSON_TYPE_NAMES = {str: "string", bool: "boolean", int: "number", float: "number",
                    dict: "object", list: "array", type(None): "null"}


class Kind(str, Enum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"


@dataclass(frozen=True)
class Field:
    """One input field: its kind, whether training saw it missing, and what values it took."""

    name: str
    kind: Kind
    nullable: bool
    categories: tuple[str, ...] = ()    # categorical: levels seen, most frequent first
    order: tuple[str, ...] = ()         # an ordered categorical: its levels, lowest first
    spellings: tuple[str, str] = ("", "")  # boolean: how true and false were written
    minimum: float | None = None        # numeric: range seen (documentation, not a limit)
    maximum: float | None = None

    @cached_property
    def category_codes(self) -> dict[str | None, int]:
        """A categorical's code for each level (its position), and for null if allowed."""
        codes: dict[str | None, int] = {level: code for code, level in enumerate(self.categories)}
        if self.nullable:
            codes[None] = MISSING_CODE
        return codes

    @property
    def ranks(self) -> list[float] | None:
        """An ordered categorical's rank by level code, then NaN twice: indexed by a code,
        `UNSEEN_CODE` (-1) and `MISSING_CODE` (-2) land on the NaNs."""
        if not self.order:
            return None
        return [float(self.order.index(level)) for level in self.categories] + [math.nan] * 2

    @cached_property
    def boolean_table(self) -> dict[Any, float]:
        """Exact values a boolean field accepts without trimming or case folding."""
        table = {k: v for k, v in BOOLEAN_VALUES.items()}
        for text, number in BOOLEAN_VALUES.items():
            if isinstance(text, str):
                table[text.upper()] = table[text.capitalize()] = number
        table.update({self.spellings[0]: 1.0, self.spellings[1]: 0.0})
        if self.nullable:
            table[None] = np.nan
        return table

    @cached_property
    def packed_lookup(self) -> dict[Any, bytes]:
        """`boolean_table` with each number packed as 8 bytes (a float64): a column's values
        then join into one buffer that numpy reads whole, instead of converting a Python
        object per value (`decoding.BodyDecoder.columns`)."""
        return {k: struct.pack("<d", number) for k, number in self.boolean_table.items()}

    def __getstate__(self) -> dict[str, Any]:
        # leave out the cached lookups: a set's pickled order varies by process, and the
        # bundle's bytes (hence the model version id) must not; an unordered field leaves out
        # its empty order, so models that have none keep the version they had before it
        return {k: v for k, v in self.__dict__.items()
                if k not in _LOOKUPS and not (k == "order" and not v)}

    def describe(self) -> dict[str, Any]:
        """The field as plain JSON for `GET /model`."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind.value,
                               "nullable": self.nullable}
        if self.kind is Kind.CATEGORICAL:
            out["categories"] = list(self.categories)
            if self.order:
                out["order"] = list(self.order)
        elif self.kind is Kind.BOOLEAN:
            out["true"], out["false"] = self.spellings
        else:
            out["minimum"], out["maximum"] = self.minimum, self.maximum
        return out


@dataclass(frozen=True)
class Dropped:
    """A column of the training data that the model does not use, and why."""

    name: str
    reason: str


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

    def warn(self, index: int, message: str) -> None:
        self.warnings.setdefault(index, []).append(message)


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


def _infer_field(name: str, column: pd.Series,
                 order: Sequence[str] | None = None) -> Field | Dropped:
    present = column.dropna()
    if present.empty:
        return Dropped(name, "every value is missing")
    nullable = len(present) < len(column)
    distinct = present.unique()
    if len(distinct) == 1 and not nullable:
        return Dropped(name, f"constant: every row is {distinct[0]!r}")

    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.notna().all() and np.isfinite(numbers.to_numpy(dtype=float)).all():
        if set(numbers.unique()) <= {0, 1} and len(distinct) <= 2:
            return _boolean_field(name, present, nullable)
        integral = bool((numbers == numbers.round()).all())
        unique_per_row = numbers.nunique() == len(column)
        consecutive = unique_per_row and numbers.max() - numbers.min() + 1 == len(column)
        if integral and unique_per_row and (consecutive or _ID_NAME.search(name)):
            return Dropped(name, "identifier: a distinct integer on every row")
        return Field(name, Kind.NUMERIC, nullable,
                     minimum=float(numbers.min()), maximum=float(numbers.max()))

    lowered = set(present.str.lower().unique())
    if len(lowered) == 2 and lowered in _BOOLEAN_PAIRS:
        return _boolean_field(name, present, nullable)
    if len(distinct) == len(column) and len(column) >= 20:
        return Dropped(name, "identifier: a distinct text value on every row")
    if len(distinct) > _MAX_TEXT_LEVELS and len(distinct) > 0.5 * len(present):
        return Dropped(name, f"free text or identifier: {len(distinct)} distinct values "
                             f"in {len(present)} rows")
    counts = present.value_counts()
    levels = sorted(counts.index, key=lambda level: (-counts[level], level))
    return Field(name, Kind.CATEGORICAL, nullable, categories=tuple(levels),
                 order=ordered_levels(levels) if order is None else _declared(name, levels, order))


# Scales whose words say their order; a categorical whose levels (any case) all belong to one,
# at least three of them, is ordered by it.
ORDERED_SCALES = (
    ("very low", "low", "medium", "high", "very high"),
    ("none", "low", "moderate", "high", "severe"),
    ("poor", "fair", "good", "very good", "excellent"),
    ("never", "rarely", "sometimes", "often", "always"),
    ("strongly disagree", "disagree", "neutral", "agree", "strongly agree"),
    ("xs", "s", "m", "l", "xl", "xxl"),
    ("extra small", "small", "medium", "large", "extra large"),
    ("elementary", "middle school", "high school", "bachelor", "master", "doctorate"),
)
_LEADING_NUMBER = re.compile(r"\s*(<|less than|under)?\s*(\d+(?:\.\d+)?)", re.IGNORECASE)


def ordered_levels(levels: Sequence[str]) -> tuple[str, ...]:
    """The levels in their natural order, when their words or numbers give one, else ().

    Words: every level belongs to one of `ORDERED_SCALES`. Numbers: every level starts with
    a distinct number ("< 1 year", "1-2 years", "10+ years"; a leading "<" sorts just below).
    """
    if len(levels) < 3:
        return ()
    lowered = {level: level.lower() for level in levels}
    for scale in ORDERED_SCALES:
        if set(lowered.values()) <= set(scale):
            return tuple(sorted(levels, key=lambda level: scale.index(lowered[level])))
    keys = {}
    for level in levels:
        match = _LEADING_NUMBER.match(level)
        if match is None:
            return ()
        keys[level] = float(match.group(2)) - (0.5 if match.group(1) else 0.0)
    if len(set(keys.values())) < len(keys):
        return ()
    return tuple(sorted(levels, key=keys.__getitem__))


def _declared(name: str, levels: Sequence[str], order: Sequence[str]) -> tuple[str, ...]:
    """A user's order for a field (`--ordinal`), checked against the levels in the data."""
    unknown = set(levels) - set(order)
    if unknown:
        raise ValueError(f"--ordinal {name}: the data also holds "
                         f"{', '.join(repr(v) for v in sorted(unknown)[:5])}; list every level")
    return tuple(level for level in order if level in set(levels))


def _boolean_field(name: str, present: pd.Series, nullable: bool) -> Field:
    by_value: dict[float, str] = {}
    for spelling in present.unique():
        by_value.setdefault(BOOLEAN_VALUES[spelling.lower()], spelling)
    # a column that only ever held one of the two values still names the other
    true = by_value.get(1.0) or {"0": "1", "0.0": "1.0", "no": "yes"}.get(by_value[0.0].lower(), "true")
    false = by_value.get(0.0) or {"1": "0", "1.0": "0.0", "yes": "no"}.get(by_value[1.0].lower(), "false")
    return Field(name, Kind.BOOLEAN, nullable, spellings=(true, false))


@dataclass(frozen=True)
class Schema:
    """The contract for inputs: the fields a record must carry, and the columns dropped."""

    target: str
    fields: tuple[Field, ...]
    dropped: tuple[Dropped, ...] = ()

    @classmethod
    def infer(cls, frame: pd.DataFrame, target: str,
              ordinal: dict[str, Sequence[str]] | None = None) -> Schema:
        """Infer each column's kind from a frame of trimmed strings (see `data.load_csv`);
        `ordinal` gives the order of a text field's levels, lowest first (`ValueError` when it
        names a column that is not text or misses a level)."""
        ordinal = ordinal or {}
        unknown = set(ordinal) - set(frame.columns) - {target}
        if unknown:
            raise ValueError(f"--ordinal names no column of the data: {', '.join(sorted(unknown))}")
        fields: list[Field] = []
        dropped: list[Dropped] = []
        for name in frame.columns:
            if name == target:
                continue
            inferred = _infer_field(name, frame[name], ordinal.get(name))
            if name in ordinal and not (isinstance(inferred, Field) and inferred.order):
                raise ValueError(f"--ordinal {name}: the column is not text with several levels")
            (fields if isinstance(inferred, Field) else dropped).append(inferred)
        return cls(target=target, fields=tuple(fields), dropped=tuple(dropped))

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    def example_record(self, frame: pd.DataFrame) -> dict[str, Any]:
        """A record in request form, from the first training row with no missing field."""
        complete = frame[self.names].dropna()
        row = (complete if len(complete) else frame[self.names]).iloc[0]
        return {f.name: _json_value(f, row[f.name]) for f in self.fields}

    def columns_from_frame(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Typed columns from training rows: floats for numbers and booleans, objects for text."""
        missing = [name for name in self.names if name not in frame.columns]
        if missing:
            raise KeyError(f"frame lacks the schema's fields: {', '.join(missing)}")
        columns: dict[str, np.ndarray] = {}
        for f in self.fields:
            column = frame[f.name]
            if f.kind is Kind.NUMERIC:
                columns[f.name] = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
            elif f.kind is Kind.BOOLEAN:
                lowered = column.astype("object").map(
                    lambda v: BOOLEAN_VALUES.get(v.strip().lower(), np.nan) if isinstance(v, str)
                    else BOOLEAN_VALUES.get(v, np.nan))
                columns[f.name] = lowered.to_numpy(dtype=np.float64)
            else:
                text = column.astype("object").map(lambda v: v.strip() if isinstance(v, str) else v)
                codes = pd.Categorical(text, categories=list(f.categories)).codes
                columns[f.name] = np.where(text.isna(), MISSING_CODE, codes).astype(np.intp)
        return columns

    def validate(self, records: list[dict[str, Any]], indexed: bool = True) -> Validated:
        """Check records against the schema, column by column, collecting every problem.

        Errors: a missing field, a wrong JSON type, a non-finite number, a null where training
        had no missing values. Warnings: unknown fields and unseen categories.
        With `indexed=False` (a single record) problems carry no record index.
        """
        values = {f.name: [record.get(f.name, _MISSING) for record in records]
                  for f in self.fields}
        out = self.validate_columns(values, indexed)
        # a record with every field and no more keys than fields has no unknown ones
        if set(map(len, records)) != {len(self.fields)} or out.problems:
            known = set(self.names)
            for i, record in enumerate(records):
                for name in sorted(record.keys() - known):
                    why = "the target is not an input" if name == self.target else \
                        "the model does not use it"
                    out.warn(i, f"unknown field {_short(name)!r} ignored ({why})")
        return out

    def validate_columns(self, values: dict[str, list], indexed: bool = True) -> Validated:
        """Check each field's values (one list per field, as decoded from JSON)."""
        out = Validated(columns={})
        for f in self.fields:
            out.columns[f.name] = _CHECKERS[f.kind](f, values[f.name], out, indexed)
        return out


def _json_value(f: Field, text: str) -> Any:
    if f.kind is Kind.NUMERIC:
        number = float(text)
        return int(number) if number.is_integer() and "." not in text else number
    if f.kind is Kind.BOOLEAN and text in ("0", "1"):
        return int(text)
    return text


def _type_problem(value: Any, expected: str) -> str:
    if value is _MISSING:
        return "required field is missing"
    if value is None:
        return "null is not allowed: the training data had no missing values for this field"
    return f"expected {expected}, got {_shown(value)}"


def _report(out: Validated, f: Field, index: int, indexed: bool, message: str) -> None:
    out.problems.append(Problem(f.name, message, index if indexed else None))


def _check_numeric(f: Field, values: list, out: Validated, indexed: bool) -> np.ndarray:
    allowed = {int, float, type(None)} if f.nullable else {int, float}
    if set(map(type, values)) <= allowed:  # the fast path: every value is a number
        try:
            column = np.array(values, dtype=np.float64)
        except OverflowError:  # an integer beyond the range of a double
            column = None
        if column is not None and (np.isfinite(column).all()
                                   or (f.nullable and not np.isinf(column).any())):
            return column
    column = np.full(len(values), np.nan)
    for i, value in enumerate(values):
        if value is None and f.nullable:
            continue
        if type(value) not in (int, float):
            _report(out, f, i, indexed, _type_problem(value, "a number"))
            continue
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if math.isfinite(number):
            column[i] = number
        else:
            _report(out, f, i, indexed, f"expected a finite number, got {value!r:.40}")
    return column


def _check_boolean(f: Field, values: list, out: Validated, indexed: bool) -> np.ndarray:
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


def _check_categorical(f: Field, values: list, out: Validated, indexed: bool) -> np.ndarray:
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
            if code == UNSEEN_CODE:
                out.warn(i, f"unseen category {_short(value.strip())!r} for field {f.name!r} "
                            "(encoded as none of the known categories)")
            codes[i] = code
        elif value is None and f.nullable:
            codes[i] = MISSING_CODE
        else:
            _report(out, f, i, indexed, _type_problem(value, "a string"))
    return codes


_CHECKERS = {Kind.NUMERIC: _check_numeric, Kind.BOOLEAN: _check_boolean,
             Kind.CATEGORICAL: _check_categorical}
