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
        self.codes = adapted.codes
        if self.codes is not None:
            codes = self.codes
            # levels × coded columns: a level's 0/1 times its code lands in its column
            self._by_level = np.zeros((len(codes.level_at), len(codes.columns)))
            self._by_level[np.arange(len(codes.level_at)), codes.level_of] = 1.0
            self._row_codes = [
                (int(column), float(codes.unknown[i]), int(codes.missing_at[i]),
                 float(codes.missing[i]),
                 [(int(at), float(code)) for at, code, of
                  in zip(codes.level_at, codes.code, codes.level_of) if of == i])
                for i, column in enumerate(codes.columns)]
        if not hasattr(inner, "contributions"):
            self.contributions = None

    def coded(self, matrix: np.ndarray) -> np.ndarray:
        """The coded columns (records × coded columns): a set level's code, else the unseen
        code, and the missing code where the field is missing."""
        codes = self.codes
        levels = matrix[:, codes.level_at.astype(np.intp)]
        values = np.where(levels @ self._by_level > 0, (levels * codes.code) @ self._by_level,
                          codes.unknown)
        for i, at in enumerate(codes.missing_at.tolist()):
            if at >= 0:
                values[matrix[:, at] == 1, i] = codes.missing[i]
        return values

    def columns(self, matrix: np.ndarray) -> np.ndarray:
        gathered = matrix[:, self.source]
        if self.codes is not None:
            gathered[:, self.codes.columns.astype(np.intp)] = self.coded(matrix)
        return (np.where(np.isnan(gathered), self.fill, gathered) - self.center) / self.scale

    def row(self, x: list[float]) -> list[float]:
        if self.codes is None:
            return self.inner.row([((fill if x[at] != x[at] else x[at]) - center) / scale
                                   for at, fill, center, scale in self._plan])
        values = [x[at] for at in self.source.tolist()]
        for column, unknown, missing_at, missing, levels in self._row_codes:
            values[column] = next((code for at, code in levels if x[at] == 1.0), unknown)
            if missing_at >= 0 and x[missing_at] == 1.0:
                values[column] = missing
        return self.inner.row([((fill if v != v else v) - center) / scale
                               for v, (_, fill, center, scale) in zip(values, self._plan)])

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        return self.inner(self.columns(matrix))

    def contributions(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        per_column, base = self.inner.contributions(self.columns(matrix))
        return per_column @ self.to_encoded, base
