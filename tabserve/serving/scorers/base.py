"""What every scorer offers (`Scorer`), what blend members offer besides (`MarginScorer`), and
the maps from raw scores to probabilities that they share."""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from tabserve.model.decision import sigmoid


class Scorer(Protocol):
    """The fitted steps after the encoder, in a form with little overhead per call."""

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        """Class probabilities (records × classes, float64) for an encoded matrix."""

    def row(self, x: list[float]) -> list[float]:
        """Class probabilities for one encoded record (a list: no numpy for one record)."""


class ExplainingScorer(Scorer, Protocol):
    """A scorer that can say what each encoded column added to a record's raw score (the
    log-odds of the positive class when binary, each class's margin otherwise): /explain
    answers for the models whose scorers offer this, and 501 for the others."""

    def contributions(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per record and output: each encoded column's contribution (records × outputs ×
        columns) and the base value (records × outputs); base + contributions = raw score."""


class MarginScorer(Scorer, Protocol):
    """A scorer whose raw scores add up in a blend: the log-odds of the positive class when
    binary (one output), a margin per class otherwise."""

    def margins(self, matrix: np.ndarray) -> np.ndarray:
        """Raw scores (records × outputs) for an encoded matrix."""

    def margins_row(self, x: list[float]) -> list[float]:
        """Raw scores (one per output) for one encoded record."""


def probability_matrix(margins: np.ndarray) -> np.ndarray:
    """Class probabilities (records × classes) from raw scores (records × outputs)."""
    if margins.shape[1] == 1:
        with np.errstate(over="ignore"):  # exp(-x) = inf for x < -709: the probability is 0
            positive = 1.0 / (1.0 + np.exp(-margins[:, 0]))
        return np.column_stack([1.0 - positive, positive])
    exps = np.exp(margins - margins.max(axis=1, keepdims=True))
    return exps / exps.sum(axis=1, keepdims=True)


def probabilities_from_margins(margins: list[float]) -> list[float]:
    """`probability_matrix` for one record's raw scores, in plain Python."""
    if len(margins) == 1:
        positive = sigmoid(margins[0])
        return [1.0 - positive, positive]
    top = max(margins)
    exps = [math.exp(margin - top) for margin in margins]
    total = sum(exps)
    return [e / total for e in exps]
