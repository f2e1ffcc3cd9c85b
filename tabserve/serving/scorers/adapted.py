"""A model trained elsewhere (`model.fitted.Adapted`): its own columns made from the encoded
record, then its scorer."""

from __future__ import annotations

import numpy as np

from tabserve.model.fitted import Adapted
from tabserve.serving.scorers.base import Scorer


class AdaptedScorer:
    """The model's columns gathered from the encoded record, filled, centred and scaled as the
    user's own steps did, then scored by `inner` (built from the same arrays as a trained
    model's). Explanations are the inner model's, each of its columns credited to the encoded
    column it came from."""

    def __init__(self, adapted: Adapted, inner: Scorer, width: int):
        self.source, self.fill = adapted.source.astype(np.intp), adapted.fill
        self.center, self.scale = adapted.center, adapted.scale
        self.inner = inner
        self._plan = list(zip(self.source.tolist(), self.fill.tolist(),
                              self.center.tolist(), self.scale.tolist()))
        self.to_encoded = np.zeros((len(self.source), width))
        self.to_encoded[np.arange(len(self.source)), self.source] = 1.0
        if not hasattr(inner, "contributions"):
            self.contributions = None

    def columns(self, matrix: np.ndarray) -> np.ndarray:
        gathered = matrix[:, self.source]
        return (np.where(np.isnan(gathered), self.fill, gathered) - self.center) / self.scale

    def row(self, x: list[float]) -> list[float]:
        return self.inner.row([((fill if x[at] != x[at] else x[at]) - center) / scale
                               for at, fill, center, scale in self._plan])

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        return self.inner(self.columns(matrix))

    def contributions(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        per_column, base = self.inner.contributions(self.columns(matrix))
        return per_column @ self.to_encoded, base
