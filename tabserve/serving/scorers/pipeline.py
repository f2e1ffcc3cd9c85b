"""Fitted steps the other scorers do not know, called through scikit-learn; and scikit-learn's
forests, whose single records walk the trees as arrays."""

from __future__ import annotations

import numpy as np
from sklearn.pipeline import Pipeline

from tabserve.serving.scorers.trees import TreeArrays


class PipelineScorer:
    """Any fitted steps, called through scikit-learn."""

    def __init__(self, steps: Pipeline):
        self.steps = steps

    def row(self, x: list[float]) -> list[float]:
        return self(np.array([x]))[0].tolist()

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        return np.asarray(self.steps.predict_proba(matrix), dtype=np.float64)


class ForestScorer(PipelineScorer):
    """A scikit-learn forest (RandomForest, ExtraTrees): one record walks its trees as arrays
    (`TreeArrays.from_forest`) instead of `predict_proba` calling each tree in turn; a batch
    calls each tree's own C walk, as the forest does, without joblib's set-up per tree: the
    same numbers, to the bit."""

    def __init__(self, steps: Pipeline):
        super().__init__(steps)
        self.forest = steps.steps[0][1]
        self.arrays = TreeArrays.from_forest(self.forest)

    def row(self, x: list[float]) -> list[float]:
        return self.arrays.margins_row(x).tolist()  # the leaves hold fractions: the sum is proba

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        # scikit-learn refuses numbers beyond float32's range (its cast makes them infinite);
        # every split sends them where it sends float32's largest, as the walk of `row` does
        limit = np.finfo(np.float32).max
        # the forest's `predict_proba` step by step: its input check's float32 copy, each
        # tree's fractions added up in order, the mean (so the sums are the same to the bit)
        records = np.ascontiguousarray(np.clip(matrix, -limit, limit), dtype=np.float32)
        total = np.zeros((len(records), self.forest.n_classes_))
        for tree in self.forest.estimators_:
            total += tree.predict_proba(records, check_input=False)
        return total / len(self.forest.estimators_)
