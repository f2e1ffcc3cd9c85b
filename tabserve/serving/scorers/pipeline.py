"""Fitted steps that have no data form (pickled, from a trusted file), called through
scikit-learn; and an imported model served through its own `predict_proba` (pickled, or an
ONNX graph)."""

from __future__ import annotations

import copy

import numpy as np

from tabserve.model.pickles import unpickled
from tabserve.model.fitted import OnnxGraph, OwnModel, PickledSteps
from tabserve.model.frames import frame_from_columns


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
