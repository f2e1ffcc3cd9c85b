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

    def row(self, x: list[float]) -> list[float]:
        positive = self.calibration.apply_one(self.inner.row(x)[1])
        return [1.0 - positive, positive]

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        return calibrate(self.inner(matrix), self.calibration)
