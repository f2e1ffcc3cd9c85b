"""A binary scorer followed by the bundle's Platt scaling (`model.decision`)."""

from __future__ import annotations

import numpy as np

from tabserve.model.decision import Calibration, calibrate
from tabserve.serving.scorers.base import Scorer


class CalibratedScorer:
    """`inner`'s probabilities with the positive class calibrated."""

    def __init__(self, inner: Scorer, calibration: Calibration):
        self.inner = inner
        self.calibration = calibration
        if not hasattr(inner, "contributions"):  # explains only what its inner model does
            self.contributions = None

    def row(self, x: list[float]) -> list[float]:
        positive = self.calibration.apply_one(self.inner.row(x)[1])
        return [1.0 - positive, positive]

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        return calibrate(self.inner(matrix), self.calibration)

    def contributions(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Platt scaling is affine in log-odds: the inner model's contributions scaled by its
        slope, and its base value moved by its intercept, add up to the calibrated log-odds."""
        per_column, base = self.inner.contributions(matrix)
        slope, intercept = self.calibration.slope, self.calibration.intercept
        return per_column * slope, base * slope + intercept
