"""From class probabilities to a decision: Platt calibration of a binary model's positive
class, and the label rule. Each rule is written once here; training, reports, scorers and
answers all call these (how the calibration and threshold are *chosen* is
`training.thresholds`).

Calibration is Platt scaling in log-odds space, p' = sigmoid(a · logit(p) + b): monotone, so
it leaves ROC AUC unchanged, and affine in log-odds, so explanations stay exact (scaled by a).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TINY = 1e-15  # probabilities are clipped here before their logs


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, TINY, 1 - TINY)
    return np.log(p) - np.log1p(-p)


def sigmoid(z: float) -> float:
    """1 / (1 + e^-z) of one number, without overflow for large |z|."""
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


@dataclass(frozen=True)
class Calibration:
    """Platt scaling of the positive class's probability."""

    slope: float
    intercept: float

    def apply(self, positive: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.slope * logit(positive) + self.intercept)))

    def apply_one(self, positive: float) -> float:
        p = min(max(positive, TINY), 1 - TINY)
        return sigmoid(self.slope * (math.log(p) - math.log1p(-p)) + self.intercept)


def calibrate(proba: np.ndarray, calibration: Calibration | None) -> np.ndarray:
    """Class probabilities (rows × 2) with the positive class calibrated (unchanged if None)."""
    if calibration is None:
        return proba
    positive = calibration.apply(proba[:, 1])
    return np.column_stack([1.0 - positive, positive])


def label_codes(proba: np.ndarray, threshold: float | None) -> np.ndarray:
    """Each record's class index: binary, the positive class (1) when its probability reaches
    the threshold; otherwise the most probable class."""
    if proba.shape[1] == 2:
        return (proba[:, 1] >= threshold).astype(np.intp)
    return proba.argmax(axis=1)


def label_code(row: list[float], threshold: float | None) -> int:
    """`label_codes` of one record's probabilities, as a list (no numpy: it costs more)."""
    if len(row) == 2:
        return int(row[1] >= threshold)
    return row.index(max(row))
