"""Turn typed columns (see `schema`) into the model's numeric matrix.

The layout is compiled once from the schema, and the same code encodes training rows and
request records, so the served model sees exactly what the trained one saw.
Numbers and booleans become one column each (NaN when missing; the model imputes or routes
it); a categorical becomes one 0/1 column per known level (an unseen or missing value sets
none); every field that had missing values in training gets a 0/1 "is missing" column too,
because missingness itself can carry signal.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from tabserve.schema import Kind, Schema

MAX_ONE_HOT_LEVELS = 64  # rarer levels of a wider categorical share the "none known" encoding


class Encoder:
    """The compiled layout: where each field's values go in the model's matrix."""

    def __init__(self, schema: Schema):
        self.schema = schema
        self.feature_names: list[str] = []
        self.field_of_column: list[str] = []  # the input field behind each matrix column
        self._plan: list[tuple[str, Kind, int, dict[str, int] | None, int | None]] = []
        for f in schema.fields:
            start = len(self.feature_names)
            levels = None
            if f.kind is Kind.CATEGORICAL:
                kept = f.categories[:MAX_ONE_HOT_LEVELS]
                levels = {level: position for position, level in enumerate(kept)}
                self._add(f.name, [f"{f.name}={level}" for level in kept])
            else:
                self._add(f.name, [f.name])
            missing_at = None
            if f.nullable:
                missing_at = len(self.feature_names)
                self._add(f.name, [f"{f.name} is missing"])
            self._plan.append((f.name, f.kind, start, levels, missing_at))

    def _add(self, field_name: str, column_names: list[str]) -> None:
        self.feature_names += column_names
        self.field_of_column += [field_name] * len(column_names)

    def encode(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """A float64 matrix, one row per record, from typed columns."""
        rows = len(next(iter(columns.values()))) if columns else 0
        matrix = np.zeros((rows, len(self.feature_names)), dtype=np.float64)
        for name, kind, start, levels, missing_at in self._plan:
            column = columns[name]
            if levels is None:
                matrix[:, start] = column
                if missing_at is not None:
                    matrix[:, missing_at] = np.isnan(column)
                continue
            codes = np.fromiter((levels.get(v, -1) for v in column), dtype=np.intp, count=rows)
            hit = codes >= 0
            matrix[np.flatnonzero(hit), start + codes[hit]] = 1.0
            if missing_at is not None:
                matrix[:, missing_at] = [v is None for v in column]
        return matrix


class FrameEncoder(TransformerMixin, BaseEstimator):
    """The encoder as the first step of a scikit-learn pipeline: training rows in, matrix out.

    Nothing is learned from the rows passed to `fit`: the layout comes from the schema, which
    was inferred beforehand, so cross-validation folds all share one layout.
    """

    def __init__(self, schema: Schema):
        self.schema = schema

    def fit(self, frame: pd.DataFrame, y=None) -> FrameEncoder:
        self.encoder_ = Encoder(self.schema)
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        return self.encoder_.encode(self.schema.columns_from_frame(frame))

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.asarray(self.encoder_.feature_names, dtype=object)
