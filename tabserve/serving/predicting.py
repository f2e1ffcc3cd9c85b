"""Answers for request records: validate, encode with the bundle's layout, score, and shape.

Answers are msgspec structs compiled from the bundle (its target name and class labels become
JSON keys), which build and serialise in about half the time of dicts.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from tabserve.model.bundle import ModelBundle
from tabserve.model.decision import label_code, label_codes
from tabserve.model.encoding import Encoder
from tabserve.model.validation import Validated, validate
from tabserve.serving.decoding import Body
from tabserve.serving.drift import DriftCounter
from tabserve.serving.scorers import Scorer, compile_scorer

ANSWER_KEYS = ("label", "probabilities", "model_version", "warnings")


def answers_target_keys(bundle: ModelBundle) -> bool:
    """Whether answers also carry `<target>_probability` and `<target>`: binary models do, as
    the course's clients expect, unless the target's name would overwrite the answer's keys."""
    target = bundle.schema.target
    return (bundle.task == "binary" and target not in ANSWER_KEYS
            and f"{target}_probability" not in ANSWER_KEYS)


def _answer_types(bundle: ModelBundle, target_keys: bool) -> tuple[type, type]:
    """Struct types for one answer and its class probabilities, keyed as the JSON shows."""
    classes = bundle.classes
    probabilities = msgspec.defstruct(
        "Probabilities", [(f"p{i}", float) for i in range(len(classes))],
        rename={f"p{i}": label for i, label in enumerate(classes)}, gc=False)
    fields: list[tuple] = [("label", str), ("probabilities", probabilities)]
    rename = {}
    if target_keys:
        fields += [("target_probability", float), ("target", bool)]
        rename = {"target_probability": f"{bundle.schema.target}_probability",
                  "target": bundle.schema.target}
    fields += [("model_version", str), ("warnings", list[str] | msgspec.UnsetType, msgspec.UNSET)]
    # gc=False: answers hold no cycles, and untracked objects don't trigger collections
    return msgspec.defstruct("Answer", fields, rename=rename or None, gc=False), probabilities


class Predictor:
    """A bundle made ready to answer: its encoder, its scorer and its answer shape."""

    def __init__(self, bundle: ModelBundle, speedups_off: frozenset[str] = frozenset()):
        self.bundle = bundle
        self.encoder: Encoder = bundle.pipeline.named_steps["encode"].encoder_
        self.scorer: Scorer = compile_scorer(bundle, speedups_off)
        self.target_keys = answers_target_keys(bundle)
        self._answer, self._probabilities = _answer_types(bundle, self.target_keys)
        self.drift: DriftCounter | None = None  # counts what /predict and /v2 answer, if set

    def probabilities(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """Class probabilities (rows × classes, float64) for typed columns."""
        return self.scorer(self.encoder.encode(columns))

    def predict(self, records: list[dict[str, Any]], indexed: bool = True) -> list[dict[str, Any]]:
        """One answer (a plain dict) per record, in order; `RequestError` names every problem.
        Not counted for drift (the readiness probe asks this)."""
        validated = validate(self.bundle.schema, records, indexed).raise_problems()
        return msgspec.to_builtins(self.answers(self.probabilities(validated.columns),
                                                validated.warnings))

    def predict_body(self, body: Body) -> list:
        """Answers (structs, ready to serialise) for a parsed request body (see `decoding`)."""
        if body.row is not None:  # one record of plain values: no numpy
            row = self.scorer.row(self.encoder.encode_row(body.row))
            if self.drift is not None:
                self.drift.count_row(body.row, row)
            return [self._answer_one(row)]
        if body.plain is not None:
            return self._counted_answers(body.plain, {})
        return self.answer(validate(self.bundle.schema, body.records, indexed=body.is_batch))

    def columns(self, body: Body) -> tuple[dict, dict[int, list[str]]]:
        """Typed columns and per-record warnings for a parsed body; `RequestError` if invalid."""
        schema = self.bundle.schema
        if body.plain is not None:
            return body.plain, {}
        # one plain record: its values are valid as they stand, and the validator types them
        records = [dict(zip(schema.names, body.row))] if body.row is not None else body.records
        validated = validate(schema, records, indexed=body.is_batch).raise_problems()
        return validated.columns, validated.warnings

    def answer(self, validated: Validated) -> list:
        """Answers for validated records; `RequestError` if validation found problems."""
        validated.raise_problems()
        return self._counted_answers(validated.columns, validated.warnings, validated.unseen)

    def _counted_answers(self, columns: dict, warnings: dict[int, list[str]],
                         unseen: list[tuple[int, str, str]] = ()) -> list:
        proba = self.probabilities(columns)
        if self.drift is not None:
            self.drift.count_columns(columns, proba, unseen)
        return self.answers(proba, warnings)

    def _answer_one(self, row: list[float]) -> Any:
        bundle = self.bundle
        code = label_code(row, bundle.threshold)
        label = bundle.classes[code]
        if self.target_keys:
            return self._answer(label, self._probabilities(*row), row[1], code == 1,
                                bundle.version)
        return self._answer(label, self._probabilities(*row), bundle.version)

    def answers(self, proba: np.ndarray, warnings: dict[int, list[str]]) -> list:
        """Answer structs for class probabilities (rows × classes), with each row's warnings."""
        bundle = self.bundle
        codes = label_codes(proba, bundle.threshold).tolist()
        labels = list(map(bundle.classes.__getitem__, codes))
        probabilities = list(map(self._probabilities, *proba.T.tolist()))
        versions = [bundle.version] * len(labels)
        if self.target_keys:
            answers = list(map(self._answer, labels, probabilities, proba[:, 1].tolist(),
                               map(bool, codes), versions))
        else:
            answers = list(map(self._answer, labels, probabilities, versions))
        for i, messages in warnings.items():
            answers[i].warnings = messages
        return answers
