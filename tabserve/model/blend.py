"""A blend of a linear model and boosted trees: the weighted mean of their log-odds.

No family wins everywhere, and the two are wrong in different ways (a straight or bent line
per field against interactions learned by splitting), so the mean of their log-odds often
ranks better than either. The search weighs a blend of each family's best configuration by
the same out-of-fold predictions it scored them with (`training.search.blend_trial`), and the blend
competes with them like any trial. Both members have fast exact scorers and exact SHAP
values, and log-odds are additive, so a blend keeps both.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from tabserve.model.decision import TINY

MEMBERS = ("logistic_regression", "xgboost")
WEIGHTS = (0.25, 0.5, 0.75)  # the linear member's share, tried in turn


def combine(probabilities: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """Class probabilities (rows × classes) from each member's, mixed in log space: binary
    models by their log-odds, more classes by their log-probabilities (a normalised weighted
    geometric mean, which equals the softmax of the weighted mean of the members' margins)."""
    logs = sum(w * np.log(np.clip(p, TINY, 1.0)) for w, p in zip(weights, probabilities))
    logs -= logs.max(axis=1, keepdims=True)
    exp = np.exp(logs)
    return exp / exp.sum(axis=1, keepdims=True)


class Blend(ClassifierMixin, BaseEstimator):
    """Fitted member pipelines (steps after the encoder) and their weights."""

    def __init__(self, members: list, weights: list[float]):
        self.members = members
        self.weights = weights

    def fit(self, matrix: np.ndarray, y: np.ndarray) -> Blend:
        for member in self.members:
            member.fit(matrix, y)
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return True  # built from fitted members (see `training.search.fit_model`)

    @property
    def classes_(self) -> np.ndarray:
        return self.members[0].classes_

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        return combine([m.predict_proba(matrix) for m in self.members], self.weights)

    def decision_function(self, matrix: np.ndarray) -> np.ndarray:
        """The weighted members' log-odds (binary) or margins: the blend's raw score."""
        return sum(w * _margin(member, matrix) for w, member in zip(self.weights, self.members))

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(matrix).argmax(axis=1)]


def _margin(member, matrix: np.ndarray) -> np.ndarray:
    model = member[-1]
    if hasattr(model, "get_booster"):
        inputs = member[:-1].transform(matrix) if len(member) > 1 else matrix
        return model.predict(inputs, output_margin=True)
    return member.decision_function(matrix)
