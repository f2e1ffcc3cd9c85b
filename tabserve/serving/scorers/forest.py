"""scikit-learn's forests (RandomForest, ExtraTrees, a DecisionTree as a forest of one tree),
scored from their node arrays."""

from __future__ import annotations

import numpy as np

from tabserve.model.fitted import Forest
from tabserve.serving.scorers.trees import TreeArrays, tree_spans


class ForestScorer:
    """A scikit-learn forest (RandomForest, ExtraTrees), from its node arrays: one record walks
    its trees as arrays (`TreeArrays.from_forest`); a batch calls each tree's own C walk, as the
    forest's `predict_proba` does, without joblib's set-up per tree: the same numbers, to the
    bit."""

    def __init__(self, forest: Forest):
        self.n_classes = forest.n_classes
        self.arrays = TreeArrays.from_forest(forest)
        self.trees = sklearn_trees(forest)

    def row(self, x: list[float]) -> list[float]:
        return self.arrays.margins_row(x).tolist()  # the leaves hold fractions: the sum is proba

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        # scikit-learn refuses numbers beyond float32's range (its cast makes them infinite);
        # every split sends them where it sends float32's largest, as the walk of `row` does
        limit = np.finfo(np.float32).max
        # the forest's `predict_proba` step by step: its input check's float32 copy, each
        # tree's fractions added up in order, the mean (so the sums are the same to the bit)
        records = np.ascontiguousarray(np.clip(matrix, -limit, limit), dtype=np.float32)
        total = np.zeros((len(records), self.n_classes))
        for tree in self.trees:
            total += tree.predict(records)[:, :self.n_classes]
        return total / len(self.trees)


def sklearn_trees(forest: Forest) -> list:
    """scikit-learn's own tree structures, filled from the arrays (as scikit-learn fills them
    when it unpickles a tree, here without pickle), for their C walk over a batch."""
    from sklearn.tree._tree import NODE_DTYPE, Tree

    trees = []
    for (start, stop), depth in zip(tree_spans(forest), forest.depths().tolist()):
        nodes = np.zeros(stop - start, NODE_DTYPE)
        nodes["left_child"], nodes["right_child"] = forest.left[start:stop], forest.right[start:stop]
        nodes["feature"], nodes["threshold"] = forest.feature[start:stop], forest.threshold[start:stop]
        nodes["missing_go_to_left"] = forest.missing_left[start:stop]
        tree = Tree(forest.n_features, np.array([forest.n_classes], np.intp), 1)
        tree.__setstate__({"max_depth": depth, "node_count": stop - start, "nodes": nodes,
                           "values": np.ascontiguousarray(forest.value[start:stop, None, :])})
        trees.append(tree)
    return trees
