"""The input schema inferred from training rows (a frame of trimmed strings, see
`data.load_csv`): each column's kind, whether it may be missing, its levels or range, and
the columns left out with the reason."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tabserve.model.schema import BOOLEAN_VALUES, Dropped, Field, Kind, Schema

_BOOLEAN_PAIRS = [{"1", "0"}, {"1.0", "0.0"}, {"yes", "no"}, {"y", "n"}, {"true", "false"},
                  {"t", "f"}]
_ID_NAME = re.compile(r"(^|[_\s-])(id|key|uuid|guid|index|idx)$|^(id|key|uuid|index)[_\s-]",
                      re.IGNORECASE)
_MAX_TEXT_LEVELS = 200  # a text column with more distinct values than this that are nearly
                        # unique per row is free text or an identifier, not a category

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


def infer_schema(frame: pd.DataFrame, target: str,
                 ordinal: dict[str, Sequence[str]] | None = None) -> Schema:
    """Infer each column's kind from a frame of trimmed strings; `ordinal` gives the order of
    a text field's levels, lowest first (`ValueError` when it names a column that is not text
    or misses a level)."""
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
    return Schema(target=target, fields=tuple(fields), dropped=tuple(dropped))


def example_record(schema: Schema, frame: pd.DataFrame) -> dict[str, Any]:
    """A record in request form, from the first training row with no missing field."""
    complete = frame[schema.names].dropna()
    row = (complete if len(complete) else frame[schema.names]).iloc[0]
    return {f.name: _json_value(f, row[f.name]) for f in schema.fields}


def _json_value(f: Field, text: str) -> Any:
    if f.kind is Kind.NUMERIC:
        number = float(text)
        return int(number) if number.is_integer() and "." not in text else number
    if f.kind is Kind.BOOLEAN and text in ("0", "1"):
        return int(text)
    return text


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
