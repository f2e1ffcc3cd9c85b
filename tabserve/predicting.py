"""Answers for validated records: encode with the bundle's compiled layout, then the model."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from tabserve.bundle import ModelBundle
from tabserve.compiled import compile_steps
from tabserve.encoding import Encoder
from tabserve.decoding import Body
from tabserve.schema import RequestError, Validated

ANSWER_KEYS = ("label", "probabilities", "model_version", "warnings")


class Predictor:
    """A bundle made ready to answer: its encoder and the model steps after the encoder."""

    def __init__(self, bundle: ModelBundle):
        self.bundle = bundle
        self.encoder: Encoder = bundle.pipeline.named_steps["encode"].encoder_
        # the fitted steps after the encoder, in their fastest exact form
        self.score = compile_steps(Pipeline(bundle.pipeline.steps[1:]))
        target = bundle.schema.target
        # binary models also answer `<target>_probability` and `<target>`, as the course's
        # clients expect, unless the target's name would overwrite one of the answer's keys
        self.target_keys = (bundle.task == "binary"
                            and target not in ANSWER_KEYS
                            and f"{target}_probability" not in ANSWER_KEYS)

    def probabilities(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """Class probabilities (rows × classes, float64) for typed columns."""
        return self.score(self.encoder.encode(columns))

    def predict(self, records: list[dict[str, Any]], indexed: bool = True) -> list[dict[str, Any]]:
        """One answer per record, in order; `RequestError` lists every invalid field."""
        return self.answer(self.bundle.schema.validate(records, indexed=indexed))

    def predict_body(self, body: Body) -> list[dict[str, Any]]:
        """Answers for a parsed request body (see `decoding`)."""
        schema = self.bundle.schema
        if body.values is not None:
            return self.answer(schema.validate_columns(body.values, indexed=body.is_batch))
        return self.answer(schema.validate(body.records, indexed=body.is_batch))

    def answer(self, validated: Validated) -> list[dict[str, Any]]:
        """Answers for validated records; `RequestError` if validation found problems."""
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
        version = bundle.version
        rows = proba.tolist()
        if self.target_keys:
            target, target_probability = bundle.schema.target, f"{bundle.schema.target}_probability"
            positive = classes[1]
            answers = [{"label": label, "probabilities": dict(zip(classes, row)),
                        target_probability: row[1], target: label == positive,
                        "model_version": version}
                       for label, row in zip(labels, rows)]
        else:
            answers = [{"label": label, "probabilities": dict(zip(classes, row)),
                        "model_version": version}
                       for label, row in zip(labels, rows)]
        for i, warnings in validated.warnings.items():
            answers[i]["warnings"] = warnings
        return answers
