"""Logistic regression after median imputation, hinge terms and standardisation, folded into
one affine map: a record's raw scores are `x @ weights + bias`."""

from __future__ import annotations

import operator

import numpy as np

from tabserve.model.fitted import LinearModel
from tabserve.serving.scorers.base import probabilities_from_margins, probability_matrix


class LinearScorer:
    """Median imputation, optional hinge terms (see `sklearn_steps.Hinges`), standardisation and a
    logistic model folded into one affine map of the imputed, hinged record."""

    def __init__(self, model: LinearModel):
        self.fill = model.fill
        self.hinge_columns = model.hinge_columns.astype(np.intp)
        self.hinge_knots = model.hinge_knots
        # the encoded column behind each column of the expanded record, as a 0/1 matrix
        # (expanded × encoded): a hinge term's contribution is its column's too
        source_columns = np.concatenate([np.arange(len(self.fill)), self.hinge_columns])
        width = len(source_columns)
        self.to_encoded = np.zeros((width, len(self.fill)))
        self.to_encoded[np.arange(width), source_columns] = 1.0
        mean, scale = model.mean, model.scale
        self.mean = mean  # of the expanded training matrix: the explanations' reference record
        # ((x - mean) / scale) @ coef.T + intercept  ==  x @ weights + bias
        self.weights = (model.coef / scale).T
        self.bias = model.intercept - (mean / scale) @ model.coef.T

        # plain-Python copies for `row`: one record costs less without numpy's per-call overhead
        self._fill_list = self.fill.tolist()
        self._hinge_list = list(zip(self.hinge_columns.tolist(), self.hinge_knots.tolist()))
        self._weights_lists = self.weights.T.tolist()
        self._bias_list = np.atleast_1d(self.bias).tolist()

    def expand(self, matrix: np.ndarray) -> np.ndarray:
        """Encoded records, imputed and with their hinge terms: what the weights apply to."""
        filled = np.where(np.isnan(matrix), self.fill, matrix)
        hinges = np.maximum(filled[:, self.hinge_columns] - self.hinge_knots, 0.0)
        return np.hstack([filled, hinges])

    def margins_row(self, x: list[float]) -> list[float]:
        """Raw scores of one encoded record (log-odds when binary)."""
        x = [fill if value != value else value for value, fill in zip(x, self._fill_list)]
        x += [max(x[column] - knot, 0.0) for column, knot in self._hinge_list]
        return [bias + sum(map(operator.mul, weights, x))
                for weights, bias in zip(self._weights_lists, self._bias_list)]

    def row(self, x: list[float]) -> list[float]:
        """Class probabilities for one encoded record."""
        return probabilities_from_margins(self.margins_row(x))

    def margins(self, matrix: np.ndarray) -> np.ndarray:
        """`expand(matrix) @ weights + bias`, without copying the matrix when nothing is
        missing or into one expanded matrix."""
        filled = np.where(np.isnan(matrix), self.fill, matrix) if np.isnan(matrix).any() \
            else matrix
        hinges = np.maximum(filled[:, self.hinge_columns] - self.hinge_knots, 0.0)
        width = len(self.fill)
        return filled @ self.weights[:width] + hinges @ self.weights[width:] + self.bias

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        return probability_matrix(self.margins(matrix))

    def contributions(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact linear SHAP values: weight × (value − training mean) on each expanded column,
        summed to its encoded column; the base value is the raw score of the mean record."""
        per_expanded = (self.expand(matrix) - self.mean)[:, :, None] * self.weights[None, :, :]
        per_column = per_expanded.transpose(0, 2, 1) @ self.to_encoded  # records × k × columns
        base = np.broadcast_to(self.mean @ self.weights + self.bias,
                               (len(matrix), self.weights.shape[1]))
        return per_column, np.asarray(base, dtype=np.float64)
