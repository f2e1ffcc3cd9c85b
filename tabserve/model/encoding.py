"""Turn typed columns (see `schema`) into the model's numeric matrix.

The layout is compiled once from the schema, and the same code encodes training rows and
request records, so the served model sees exactly what the trained one saw.
Numbers and booleans become one column each (NaN when missing; the model imputes or routes
it); a categorical becomes one 0/1 column per known level (an unseen or missing value sets
none), and an ordered one also a rank column (its level's place in the order; NaN when unseen
or missing), so trees can split between low and high and a linear model can fit a trend; every field that had missing values in training gets a 0/1 "is missing" column too,
because missingness itself can carry signal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tabserve.model.schema import MISSING_CODE, Kind, Schema

MAX_ONE_HOT_LEVELS = 64  # rarer levels of a wider categorical share the "none known" encoding


class Encoder:
    """The compiled layout: where each field's values go in the model's matrix.

    Encoding is columnar: numbers and booleans are copied as one block, and the level codes of
    every categorical are set as ones in one scatter, feature by feature.
    """

    def __init__(self, schema: Schema):
        self.schema = schema
        self.feature_names: list[str] = []
        self.field_of_column: list[str] = []  # the input field behind each matrix column
        self._numbers: list[str] = []         # numeric and boolean fields, in block order
        self._number_at: list[int] = []
        self._number_missing_at: list[int] = []   # "is missing" columns of nullable ones
        self._number_nullable: list[int] = []     # their index within the block
        self._categories: list[tuple[str, int, int | None]] = []  # field, start, "missing" at
        self._ranked: list[tuple[str, int, np.ndarray]] = []  # field, rank column, rank by code
        widths: list[int] = []  # how many levels of each categorical are one-hot columns
        for f in schema.fields:
            if f.kind is Kind.CATEGORICAL:
                kept = f.categories[:MAX_ONE_HOT_LEVELS]
                start = len(self.feature_names)
                self._add(f.name, [f"{f.name}={level}" for level in kept])
                missing_at = self._add(f.name, [f"{f.name} is missing"]) if f.nullable else None
                self._categories.append((f.name, start, missing_at))
                widths.append(len(kept))
                if f.order:
                    self._ranked.append((f.name, self._add(f.name, [f"{f.name} (rank)"]),
                                         np.array(f.ranks)))
            else:
                self._numbers.append(f.name)
                self._number_at.append(self._add(f.name, [f.name]))
                if f.nullable:
                    self._number_nullable.append(len(self._numbers) - 1)
                    self._number_missing_at.append(self._add(f.name, [f"{f.name} is missing"]))
        self._row_plan = self._compile_row_plan()
        self._category_starts = np.array([[start] for _, start, _ in self._categories], np.intp)
        self._category_widths = np.array([[width] for width in widths], np.intp)

    def _compile_row_plan(self) -> list[tuple[Kind, int, int | None, dict | None, tuple | None]]:
        """Per field, in schema order: kind, first column, "is missing" column, value lookup,
        and for an ordered categorical its rank column and ranks by code."""
        plan = []
        numbers = iter(zip(self._number_at, range(len(self._numbers))))
        categories = iter(self._categories)
        missing_of_number = dict(zip(self._number_nullable, self._number_missing_at))
        ranked = {name: (at, ranks.tolist()) for name, at, ranks in self._ranked}
        for f in self.schema.fields:
            if f.kind is Kind.CATEGORICAL:
                _, start, missing_at = next(categories)
                plan.append((f.kind, start, missing_at, f.category_codes, ranked.get(f.name)))
            else:
                at, index = next(numbers)
                lookup = f.boolean_table if f.kind is Kind.BOOLEAN else None
                plan.append((f.kind, at, missing_of_number.get(index), lookup, None))
        return plan

    def encode_row(self, row: tuple) -> list[float]:
        """One record's matrix row, as a list, from its plain values in schema order (valid as
        they stand, as `serving.decoding` guarantees); for one record this beats numpy's per-call
        overhead in `encode`."""
        x = [0.0] * len(self.feature_names)
        for value, (kind, at, missing_at, lookup, ranked) in zip(row, self._row_plan):
            if kind is Kind.CATEGORICAL:
                code = lookup[value]
                if code == MISSING_CODE:
                    x[missing_at] = 1.0
                elif code < MAX_ONE_HOT_LEVELS:
                    x[at + code] = 1.0
                if ranked is not None:
                    rank_at, ranks = ranked
                    x[rank_at] = ranks[code]  # the codes for missing index the NaNs at the end
                continue
            number = lookup[value] if kind is Kind.BOOLEAN else value
            if number is None or number != number:  # an allowed null
                x[at] = math.nan
                x[missing_at] = 1.0
            else:
                x[at] = number
        return x

    def _add(self, field_name: str, column_names: list[str]) -> int:
        """Append matrix columns for a field; the position of the first."""
        position = len(self.feature_names)
        self.feature_names += column_names
        self.field_of_column += [field_name] * len(column_names)
        return position

    def encode(self, columns: dict[str, Sequence]) -> np.ndarray:
        """A float64 matrix, one row per record, from typed columns (arrays or sequences;
        numbers may hold None for missing). It is filled feature by feature (each field's
        values land side by side) and comes back as the transposed view: Fortran order."""
        rows = len(next(iter(columns.values()))) if columns else 0
        width = len(self.feature_names)
        # one spare feature row past the others takes the ones of levels that have no column
        # (unseen, missing, rarer than those kept), so the scatter needs no mask
        matrix = np.zeros((width + 1, rows), dtype=np.float64)
        if self._numbers:  # one conversion for all number-like fields
            block = np.array([columns[name] for name in self._numbers], dtype=np.float64)
            matrix[self._number_at] = block
            if self._number_nullable:
                matrix[self._number_missing_at] = np.isnan(block[self._number_nullable])
        if self._categories:
            codes = np.array([columns[name] for name, _, _ in self._categories], dtype=np.intp)
            known = (codes >= 0) & (codes < self._category_widths)
            at = (codes + self._category_starts) * rows + np.arange(rows)
            matrix.reshape(-1)[np.where(known, at, width * rows)] = 1.0
            for i, (_, _, missing_at) in enumerate(self._categories):
                if missing_at is not None:
                    matrix[missing_at] = codes[i] == MISSING_CODE
        for name, rank_at, ranks in self._ranked:
            matrix[rank_at] = ranks[np.asarray(columns[name], dtype=np.intp)]
        return matrix[:width].T
