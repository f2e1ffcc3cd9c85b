"""Per-field contributions to each prediction's raw score.

Each scorer that can explain itself offers `contributions()` (`scorers.base.ExplainingScorer`)
on the encoded columns: exact linear SHAP values for logistic regression, XGBoost's tree SHAP
values, a blend's members weighted as it weighs their raw scores, Platt scaling as an affine
map of log-odds. Here the contributions of a field's encoded columns (its one-hot levels and
its "is missing" column) are summed back to the field, and base value + contributions = raw
score: the log-odds of the positive class for a binary model, each class's margin otherwise.
A new kind of model explains itself in its scorer, nowhere else.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tabserve.serving.codecs.json_answers import explanations
from tabserve.serving.core import Predictor, Scored


class ExplanationsUnavailable(RuntimeError):
    """The bundle's model kind has no exact explanation here."""


class Explainer:
    """Contributions for one predictor's model, summed to its input fields."""

    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        encoder = predictor.encoder
        self.fields = predictor.schema.names
        # encoded column → input field, as a 0/1 matrix: contributions @ to_fields sums them
        self.to_fields = np.zeros((len(encoder.feature_names), len(self.fields)))
        for column, field in enumerate(encoder.field_of_column):
            self.to_fields[column, self.fields.index(field)] = 1.0

    def contributions(self, columns: dict) -> tuple[np.ndarray, np.ndarray]:
        """Per record and class, for typed columns: field contributions (n × k × fields) and
        base values (n × k); k is 1 for a binary model (the positive class)."""
        return self._contributions(self.predictor.encoder.encode(columns))

    def _contributions(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        explain = getattr(self.predictor.scorer, "contributions", None)
        if explain is None:
            from tabserve.model.kinds import explained_kinds

            fitted = self.predictor.bundle.model
            model = getattr(fitted, "inner_name", fitted.name)
            *names, last = explained_kinds()
            raise ExplanationsUnavailable(
                f"explanations are available for {', '.join(names)} and {last} models and "
                f"blends of them; this model is a {model}")
        per_column, base = explain(matrix)
        return per_column @ self.to_fields, base

    def explain(self, columns: dict, warnings: dict[int, list[str]]) -> list[dict[str, Any]]:
        """One explanation per record (JSON-ready), with its label and warnings."""
        predictor = self.predictor
        matrix = predictor.encoder.encode(columns)
        contributions, base = self._contributions(matrix)
        scored: Scored = predictor.scored(predictor.scorer(matrix), warnings)
        return explanations(scored, self.fields, contributions, base)
