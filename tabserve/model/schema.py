"""The input schema: the fields a record must carry, stored in the bundle and read by
everything the service does (inferred from the training rows by `training.schema_inference`).

Validation (`validation`) and encoding (`encoding`) both work on *columns*, one array per
field: floats for numbers and booleans (NaN when missing), level codes for categoricals (the
level's position in `Field.categories`, `UNSEEN_CODE` or `MISSING_CODE`).
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from typing import Any

import numpy as np

# Values a boolean-like field accepts, compared after trimming and lower-casing strings.
# (JSON true/false and the numbers 1/0 hash alike in Python, so they share entries.)
BOOLEAN_VALUES: dict[Any, float] = {
    True: 1.0, False: 0.0,
    "1": 1.0, "0": 0.0, "1.0": 1.0, "0.0": 0.0,
    "yes": 1.0, "no": 0.0, "y": 1.0, "n": 0.0,
    "true": 1.0, "false": 0.0, "t": 1.0, "f": 0.0,
}
# Spellings of a missing cell in a CSV file (pandas' defaults), compared after trimming: how
# training reads its rows, and how the batch scorer reads the rows it scores.
MISSING_TOKENS = frozenset(
    ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
     "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]
)
UNSEEN_CODE = -1        # categorical codes for a level not seen in training, and for null
MISSING_CODE = -2
_LOOKUPS = ("category_codes", "numbered_levels", "loose_codes", "boolean_table",
            "packed_lookup")  # cached: never pickled
_SEPARATORS = re.compile(r"[\s_-]+")


def loose_spelling(text: str) -> str:
    """A name or level as a person might type it: case, spaces, `-` and `_` do not count
    ("Month-to-month", "month_to_month" and "MonthToMonth" are alike)."""
    return _SEPARATORS.sub("", text).casefold()


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
    def category_codes(self) -> dict[str | int | None, int]:
        """A categorical's code for each level (its position), and for null if allowed; a
        level written as a whole number (a code, a 0/1 flag read as levels) is also found by
        that number, as a JSON client sends it (`1` and `1.0` alike)."""
        codes: dict[str | int | None, int] = {level: code
                                              for code, level in enumerate(self.categories)}
        if self.numbered_levels:
            codes.update({int(level): code for code, level in enumerate(self.categories)})
        if self.nullable:
            codes[None] = MISSING_CODE
        return codes

    @cached_property
    def numbered_levels(self) -> bool:
        """Whether every level is a whole number written plainly ("0", "12", "-3")."""
        return bool(self.categories) and all(
            level.lstrip("-").isdigit() and str(int(level)) == level for level in self.categories)

    @cached_property
    def loose_codes(self) -> dict[str, int]:
        """A categorical's code for each level by its loose spelling, where only one level
        has that spelling (two levels that differ only in case stay apart)."""
        by_spelling: dict[str, list[int]] = {}
        for code, level in enumerate(self.categories):
            by_spelling.setdefault(loose_spelling(level), []).append(code)
        return {spelling: codes[0] for spelling, codes in by_spelling.items() if len(codes) == 1}

    @property
    def ranks(self) -> list[float] | None:
        """An ordered categorical's rank by level code, then NaN twice: indexed by a code,
        `UNSEEN_CODE` (-1) and `MISSING_CODE` (-2) land on the NaNs."""
        if not self.order:
            return None
        return [float(self.order.index(level)) for level in self.categories] + [math.nan] * 2

    @cached_property
    def boolean_table(self) -> dict[Any, float]:
        """Exact values a boolean field accepts without trimming: every accepted spelling in
        lower case, UPPER case and Capitalised, and the spellings seen in training."""
        table = dict(BOOLEAN_VALUES)
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
        then join into one buffer that numpy reads whole (`serving.decoding`)."""
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
class Schema:
    """The contract for inputs: the fields a record must carry, and the columns dropped."""

    target: str
    fields: tuple[Field, ...]
    dropped: tuple[Dropped, ...] = ()

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    def problems(self) -> list[str]:
        """What makes a schema read from a file unusable (a crafted or damaged one): one
        sentence each; none for every schema that training infers."""
        found = [] if self.fields else ["it has no fields"]
        if len(set(self.names)) != len(self.names):
            found.append("it names a field twice")
        for f in self.fields:
            if f.kind is Kind.NUMERIC and (f.minimum is None) != (f.maximum is None):
                found.append(f"field {f.name!r} has a minimum or a maximum, not both")
            if f.kind is Kind.CATEGORICAL and (not f.categories
                                               or len(set(f.categories)) != len(f.categories)):
                found.append(f"field {f.name!r} needs distinct categories")
            if f.order and sorted(f.order) != sorted(f.categories):
                found.append(f"field {f.name!r} orders other levels than its categories")
            if f.kind is Kind.BOOLEAN and len(set(f.spellings)) != 2:
                found.append(f"field {f.name!r} spells true and false alike")
        return found
