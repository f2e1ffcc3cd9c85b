"""Fitted steps that have no data form (pickled, from a trusted file), called through
scikit-learn; an imported model served through its own `predict_proba`; and scikit-learn's
forests, whose single records walk the trees as arrays."""

from __future__ import annotations

import copy

import numpy as np

from tabserve.model.pickles import unpickled
from tabserve.model.fitted import Forest, OnnxGraph, OwnModel, PickledSteps
from tabserve.model.frames import frame_from_columns
from tabserve.serving.scorers.trees import TreeArrays, tree_spans


class PipelineScorer:
    """Any fitted steps, called through scikit-learn."""

    def __init__(self, model: PickledSteps):
        steps = unpickled(model.steps)
        name, last = steps.steps[-1]
        if hasattr(last, "n_jobs"):
            # workers are processes: one thread each, set on a shallow copy (the fitted parts
            # are shared)
            last = copy.copy(last)
            last.n_jobs = 1
            steps = type(steps)([*steps.steps[:-1], (name, last)])
        self.steps = steps

    def row(self, x: list[float]) -> list[float]:
        return self(np.array([x]))[0].tolist()

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        return np.asarray(self.steps.predict_proba(matrix), dtype=np.float64)


# what an imported model is given for a level it has never seen: no model knows this text,
# so its encoders treat it as they would the request's own unseen text (docs/import.md)
UNSEEN_LEVEL = "(unseen level)"


class OwnModelScorer:
    """An imported model whose steps have no data form, or an ONNX graph: its input fields
    rebuilt from the encoded record (a number as it came, a level from its 0/1 column, a
    missing value as NaN, as pandas reads an empty cell, or left out of a DictVectorizer's
    dict), then the model's own `predict_proba` (the graph's, run by onnxruntime)."""

    def __init__(self, model: OwnModel):
        self.model = own_classifier(model)
        self.takes_records = model.takes_records
        # a graph reads the columns as arrays: a DataFrame a request would cost more than it
        self.takes_frame = not isinstance(model.model, OnnxGraph)
        self.missing_level = np.nan if model.missing_text is None else model.missing_text
        self.plan = [(name, at, np.array(levels, dtype=object), missing)
                     for name, at, levels, missing
                     in zip(model.fields, model.columns, model.levels, model.missing)]

    def fields(self, matrix: np.ndarray):
        """The records as the model receives them: a pandas DataFrame (for a graph, its
        columns by name)."""
        fields = {}
        for name, at, levels, missing in self.plan:
            if not len(levels):
                fields[name] = matrix[:, at]
                continue
            ones = matrix[:, at:at + len(levels)]
            values = levels[ones.argmax(axis=1)]
            values[ones.max(axis=1) == 0] = UNSEEN_LEVEL
            if missing >= 0:
                values[matrix[:, missing] == 1] = self.missing_level
            fields[name] = values
        return frame_from_columns(fields) if self.takes_frame else fields

    def row(self, x: list[float]) -> list[float]:
        return self(np.array([x]))[0].tolist()

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        fields = self.fields(matrix)
        if self.takes_records:
            records = [{name: value for name, value in record.items() if value == value}
                       for record in fields.to_dict(orient="records")]
            return np.asarray(self.model.predict_proba(records), dtype=np.float64)
        return np.asarray(self.model.predict_proba(fields), dtype=np.float64)


def own_classifier(model: OwnModel):
    """What answers `predict_proba` for an own model: its unpickled object, or its graph."""
    if isinstance(model.model, OnnxGraph):
        from tabserve.model.onnx_graph import OnnxClassifier

        return OnnxClassifier(model.model.data)
    return unpickled(model.model)


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
