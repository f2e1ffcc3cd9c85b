"""Per-field contributions to each prediction's raw score.

- Linear model: exact linear SHAP values, coefficient × (value − training mean) on the encoded
  columns and their hinge terms; the base value is the raw score of the mean expanded record.
- XGBoost: exact tree SHAP values from the booster (`pred_contribs`), the bias as base value.
- A blend: its members' values, weighted as it weighs their log-odds (or margins).
- Calibrated binary models: Platt scaling is affine in log-odds, so both are scaled by its
  slope and the base value shifted by its intercept: they add up to the calibrated log-odds.
Either way the contributions of a field's encoded columns (its one-hot levels and its "is
missing" column) are summed back to the field, and base value + contributions = raw score:
the log-odds of the positive class for a binary model, each class's margin otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xgboost

from tabserve.serving.predicting import Predictor
from tabserve.serving.scorers import BlendScorer, BoosterScorer, LinearScorer


class ExplanationsUnavailable(RuntimeError):
    """The bundle's model kind has no exact explanation here."""


class Explainer:
    """Contributions for one predictor's model, summed to its input fields."""

    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        encoder = predictor.encoder
        self.fields = predictor.bundle.schema.names
        # encoded column → input field, as a 0/1 matrix: contributions @ to_fields sums them
        self.to_fields = np.zeros((len(encoder.feature_names), len(self.fields)))
        for column, field in enumerate(encoder.field_of_column):
            self.to_fields[column, self.fields.index(field)] = 1.0

    def contributions(self, columns: dict) -> tuple[np.ndarray, np.ndarray]:
        """Per record and class, for typed columns: field contributions (n × k × fields) and
        base values (n × k); k is 1 for a binary model (the positive class)."""
        return self._contributions(self.predictor.encoder.encode(columns))

    def _contributions(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scorer = self.predictor.scorer
        calibration = getattr(scorer, "calibration", None)
        by_field, base = self._raw_contributions(getattr(scorer, "inner", scorer), matrix)
        if calibration is not None:  # Platt scaling is affine in log-odds: scale along
            by_field = by_field * calibration.slope
            base = base * calibration.slope + calibration.intercept
        return by_field, base

    def _raw_contributions(self, scorer, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(scorer, BlendScorer):  # log-odds (margins) mix linearly: so do these
            parts = [self._raw_contributions(member, matrix) for member in scorer.members]
            return (sum(w * by_field for w, (by_field, _) in zip(scorer.weights, parts)),
                    sum(w * base for w, (_, base) in zip(scorer.weights, parts)))
        if isinstance(scorer, LinearScorer):
            weights = scorer.weights  # expanded columns × k
            per_column = (scorer.expand(matrix) - scorer.mean)[:, :, None] * weights[None, :, :]
            base = np.broadcast_to(scorer.mean @ weights + scorer.bias, (len(matrix),
                                                                        weights.shape[1]))
            per_column = per_column.transpose(0, 2, 1)  # n × k × columns
            # a field's hinge terms are its own too
            by_field = per_column @ self.to_fields[scorer.source_columns]
        elif isinstance(scorer, BoosterScorer):
            # XGBoost works in float32 and its DMatrix refuses what float32 cannot hold; a
            # clipped value takes the same branches as the number it stands for
            limit = float(np.finfo(np.float32).max)
            raw = scorer.booster.predict(
                xgboost.DMatrix(np.clip(matrix, -limit, limit), missing=np.nan),
                pred_contribs=True)
            if raw.ndim == 2:  # binary: n × (columns + bias)
                raw = raw[:, None, :]
            per_column, base = raw[:, :, :-1].astype(np.float64), raw[:, :, -1].astype(np.float64)
            by_field = per_column @ self.to_fields
        else:
            model = type(self.predictor.bundle.pipeline.steps[-1][1]).__name__
            raise ExplanationsUnavailable(
                "explanations are available for logistic regression, XGBoost and blends of "
                f"them; this model is a {model}")
        return by_field, np.asarray(base, dtype=np.float64)

    def explain(self, columns: dict, warnings: dict[int, list[str]]) -> list[dict[str, Any]]:
        """One explanation per record."""
        predictor = self.predictor
        bundle = predictor.bundle
        matrix = predictor.encoder.encode(columns)
        contributions, base = self._contributions(matrix)
        labels = [a.label for a in predictor.answers(predictor.scorer(matrix), {})]
        out = []
        for i, label in enumerate(labels):
            if bundle.task == "binary":
                by_field = dict(zip(self.fields, contributions[i, 0].tolist()))
                explanation: dict[str, Any] = {
                    "label": label,
                    "output": f"log-odds of {bundle.positive_class!r}",
                    "base_value": float(base[i, 0]),
                    "raw_score": float(base[i, 0] + contributions[i, 0].sum()),
                    "contributions": by_field,
                }
            else:
                explanation = {
                    "label": label,
                    "output": "margin (log-probability up to a constant) of each class",
                    "base_value": dict(zip(bundle.classes, base[i].tolist())),
                    "raw_score": dict(zip(bundle.classes,
                                          (base[i] + contributions[i].sum(axis=1)).tolist())),
                    "contributions": {c: dict(zip(self.fields, contributions[i, k].tolist()))
                                      for k, c in enumerate(bundle.classes)},
                }
            explanation["model_version"] = bundle.version
            if i in warnings:
                explanation["warnings"] = warnings[i]
            out.append(explanation)
        return out
