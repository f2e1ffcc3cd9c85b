"""The scikit-learn steps of training's pipelines that tabserve defines: the schema's encoder
as a pipeline's first step (`FrameEncoder`), and the hinge terms of the linear model
(`Hinges`). Training and import use them; serving never does (its models are data, and
scikit-learn stays out of a server's start), so they live apart from `encoding`."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from tabserve.model.encoding import Encoder
from tabserve.model.frames import columns_from_frame
from tabserve.model.schema import Schema


class FrameEncoder(TransformerMixin, BaseEstimator):
    """The encoder as the first step of a scikit-learn pipeline: training rows in, matrix out.

    Nothing is learned from the rows passed to `fit`: the layout comes from the schema, which
    was inferred beforehand, so cross-validation folds all share one layout.
    """

    def __init__(self, schema: Schema):
        self.schema = schema

    def fit(self, frame, y=None) -> FrameEncoder:
        self.encoder_ = Encoder(self.schema)
        self.fitted_ = True
        return self

    def __getstate__(self) -> dict:
        # the layout is rebuilt from the schema on load, so model.bin holds no encoder internals
        return {k: v for k, v in self.__dict__.items() if k != "encoder_"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if "schema" in state and state.get("fitted_", False):
            self.encoder_ = Encoder(self.schema)

    def transform(self, frame) -> np.ndarray:
        # C order, as models were always trained on (a layout can change float sums' order)
        return np.ascontiguousarray(self.encoder_.encode(columns_from_frame(self.schema, frame)))

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.asarray(self.encoder_.feature_names, dtype=object)


class Hinges(TransformerMixin, BaseEstimator):
    """Bent lines for a linear model: for each continuous column of the (imputed) matrix, the
    terms max(0, x − knot) at `knots` training quantiles, appended after the columns.

    A logistic model then fits each number's effect as a piecewise-linear curve instead of a
    straight line (on Telco, churn falls steeply over the first months of tenure and then
    flattens). Columns with few distinct values (one-hot levels, flags) get none.
    """

    MIN_DISTINCT = 10

    def __init__(self, knots: int = 4):
        self.knots = knots

    def fit(self, matrix: np.ndarray, y=None) -> Hinges:
        columns, knots = [], []
        quantiles = np.arange(1, self.knots + 1) / (self.knots + 1)
        for j in range(matrix.shape[1] if self.knots else 0):
            values = matrix[:, j]
            if len(np.unique(values)) < self.MIN_DISTINCT:
                continue
            at = np.unique(np.quantile(values, quantiles))
            at = at[at < values.max()]  # a knot at the maximum would bend nothing
            columns += [j] * len(at)
            knots += at.tolist()
        self.columns_ = np.array(columns, dtype=np.intp)
        self.knots_ = np.array(knots, dtype=np.float64)
        return self

    def transform(self, matrix: np.ndarray) -> np.ndarray:
        return np.hstack([matrix, np.maximum(matrix[:, self.columns_] - self.knots_, 0.0)])
