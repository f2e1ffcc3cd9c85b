"""Answers for validated records: encode with the bundle's compiled layout, then the model."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from tabserve.bundle import ModelBundle
from tabserve.encoding import Encoder
from tabserve.schema import RequestError

ANSWER_KEYS = ("label", "probabilities", "model_version", "warnings")


class Predictor:
    """A bundle made ready to answer: its encoder and the model steps after the encoder."""

    def __init__(self, bundle: ModelBundle):
        self.bundle = bundle
        self.encoder: Encoder = bundle.pipeline.named_steps["encode"].encoder_
        # the fitted steps after the encoder, sharing the bundle's fitted estimators
        self.model = Pipeline(bundle.pipeline.steps[1:])
        model = self.model.steps[-1][1]
        if hasattr(model, "get_booster"):
            # workers are processes: one thread each keeps them from fighting over the cores
            model.set_params(n_jobs=1)
            model.get_booster().set_param({"nthread": 1})
        target = bundle.schema.target
        # binary models also answer `<target>_probability` and `<target>`, as the course's
        # clients expect, unless the target's name would overwrite one of the answer's keys
        self.target_keys = (bundle.task == "binary"
                            and target not in ANSWER_KEYS
                            and f"{target}_probability" not in ANSWER_KEYS)

    def probabilities(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """Class probabilities (rows × classes, float64) for typed columns."""
        return np.asarray(self.model.predict_proba(self.encoder.encode(columns)),
                          dtype=np.float64)

    def predict(self, records: list[dict[str, Any]], indexed: bool = True) -> list[dict[str, Any]]:
        """One answer per record, in order; `RequestError` lists every invalid field."""
        validated = self.bundle.schema.validate(records, indexed=indexed)
        if validated.problems:
            raise RequestError(validated.problems)
        proba = self.probabilities(validated.columns)
        bundle = self.bundle
        classes = bundle.classes
        if bundle.task == "binary":
            positive = proba[:, 1] >= bundle.threshold
            labels = np.where(positive, classes[1], classes[0]).tolist()
        else:
            labels = [classes[i] for i in proba.argmax(axis=1)]
        answers = []
        target = bundle.schema.target
        for i, (label, row) in enumerate(zip(labels, proba.tolist())):
            answer: dict[str, Any] = {"label": label, "probabilities": dict(zip(classes, row))}
            if self.target_keys:
                answer[f"{target}_probability"] = row[1]
                answer[target] = label == classes[1]
            answer["model_version"] = bundle.version
            if i in validated.warnings:
                answer["warnings"] = validated.warnings[i]
            answers.append(answer)
        return answers
