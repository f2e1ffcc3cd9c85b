"""A `model.blend.Blend` with each member in its own fast form, mixed as the blend mixes them."""

from __future__ import annotations

import numpy as np

from tabserve.serving.scorers.base import (MarginScorer, probabilities_from_margins,
                                           probability_matrix)


class BlendScorer:
    """The weighted sum of the members' raw scores: the same as mixing their probabilities in
    log space (`model.blend.combine`), with fewer logs and exps."""

    def __init__(self, members: list[MarginScorer], weights: list[float]):
        self.members = members
        self.weights = weights

    def row(self, x: list[float]) -> list[float]:
        margins = [member.margins_row(x) for member in self.members]
        mixed = [sum(weight * m[k] for weight, m in zip(self.weights, margins))
                 for k in range(len(margins[0]))]
        return probabilities_from_margins(mixed)

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        return probability_matrix(sum(weight * member.margins(matrix)
                                      for weight, member in zip(self.weights, self.members)))

    def contributions(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The members' contributions, weighted as their raw scores are: they mix linearly."""
        parts = [member.contributions(matrix) for member in self.members]
        return (sum(w * per_column for w, (per_column, _) in zip(self.weights, parts)),
                sum(w * base for w, (_, base) in zip(self.weights, parts)))
