"""JSON answers for /predict and /explain, from the core's `Scored`.

Answers are msgspec structs compiled from the answer shape (the target's name and the class
labels become JSON keys), which build and serialise in about half the time of dicts.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from tabserve.model.validation import validate
from tabserve.serving.core import AnswerShape, Predictor, Scored
from tabserve.serving.decoding import Body
from tabserve.serving.drift import DriftCounter


def _answer_types(shape: AnswerShape) -> tuple[type, type]:
    """Struct types for one answer and its class probabilities, keyed as the JSON shows."""
    probabilities = msgspec.defstruct(
        "Probabilities", [(f"p{i}", float) for i in range(len(shape.classes))],
        rename={f"p{i}": label for i, label in enumerate(shape.classes)}, gc=False)
    fields: list[tuple] = [("label", str), ("probabilities", probabilities)]
    rename = {}
    if shape.target_keys:
        fields += [("target_probability", float), ("target", bool)]
        rename = {"target_probability": shape.target_probability, "target": shape.key}
    fields += [("model_version", str), ("warnings", list[str] | msgspec.UnsetType, msgspec.UNSET)]
    # gc=False: answers hold no cycles, and untracked objects don't trigger collections
    return msgspec.defstruct("Answer", fields, rename=rename or None, gc=False), probabilities


class JsonAnswers:
    """The /predict door: parsed bodies scored by the core and shaped as JSON answers."""

    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        self.shape = predictor.shape
        self._answer, self._probabilities = _answer_types(self.shape)

    def for_body(self, body: Body, drift: DriftCounter | None = None) -> list:
        """Answers (structs, ready to serialise) for a parsed body (see `decoding`), counted
        into `drift` when given; `RequestError` naming every problem of an invalid body."""
        predictor = self.predictor
        if body.row is not None:  # one record of plain values: no numpy
            probabilities = predictor.score_row(body.row)
            if drift is not None:
                drift.count_row(body.row, probabilities)
            return [self.one(probabilities)]
        if body.plain is not None:
            columns, unseen = body.plain, ()
            scored = predictor.score(columns)
        else:
            validated = validate(predictor.schema, body.records, indexed=body.is_batch)
            columns, unseen = validated.columns, validated.unseen
            scored = predictor.score_validated(validated)
        if drift is not None:
            drift.count_columns(columns, scored.probabilities, unseen)
        return self.answers(scored)

    def columns(self, body: Body) -> tuple[dict, dict[int, list[str]]]:
        """Typed columns and per-record warnings for a parsed body (what /explain scores);
        `RequestError` if invalid."""
        schema = self.predictor.schema
        if body.plain is not None:
            return body.plain, {}
        # one plain record: its values are valid as they stand, and the validator types them
        records = [dict(zip(schema.names, body.row))] if body.row is not None else body.records
        validated = validate(schema, records, indexed=body.is_batch).raise_problems()
        return validated.columns, validated.warnings

    def for_records(self, records: list[dict[str, Any]], indexed: bool = True) -> list[dict]:
        """Answers as plain dicts for records (the readiness probe, notebooks); not counted."""
        return msgspec.to_builtins(self.answers(self.predictor.score_records(records, indexed)))

    def one(self, probabilities: list[float]) -> Any:
        """The answer for one record's class probabilities (a list)."""
        shape = self.shape
        code = self.predictor.row_code(probabilities)
        label = shape.classes[code]
        if shape.target_keys:
            return self._answer(label, self._probabilities(*probabilities), probabilities[1],
                                code == 1, shape.version)
        return self._answer(label, self._probabilities(*probabilities), shape.version)

    def answers(self, scored: Scored) -> list:
        """Answer structs for scored records, with each record's warnings."""
        labels = scored.labels
        probabilities = list(map(self._probabilities, *scored.probabilities.T.tolist()))
        versions = [self.shape.version] * len(labels)
        if self.shape.target_keys:
            answers = list(map(self._answer, labels, probabilities, scored.positive.tolist(),
                               map(bool, scored.codes.tolist()), versions))
        else:
            answers = list(map(self._answer, labels, probabilities, versions))
        for i, messages in scored.warnings.items():
            answers[i].warnings = messages
        return answers


def explanations(scored: Scored, fields: list[str], contributions: np.ndarray,
                 base: np.ndarray) -> list[dict[str, Any]]:
    """One /explain answer per scored record, from its field contributions (records × k ×
    fields) and base values (records × k); k is 1 for a binary model (the positive class)."""
    shape = scored.shape
    out = []
    for i, label in enumerate(scored.labels):
        if shape.binary:
            explanation: dict[str, Any] = {
                "label": label,
                "output": f"log-odds of {shape.classes[1]!r}",
                "base_value": float(base[i, 0]),
                "raw_score": float(base[i, 0] + contributions[i, 0].sum()),
                "contributions": dict(zip(fields, contributions[i, 0].tolist())),
            }
        else:
            explanation = {
                "label": label,
                "output": "margin (log-probability up to a constant) of each class",
                "base_value": dict(zip(shape.classes, base[i].tolist())),
                "raw_score": dict(zip(shape.classes,
                                      (base[i] + contributions[i].sum(axis=1)).tolist())),
                "contributions": {c: dict(zip(fields, contributions[i, k].tolist()))
                                  for k, c in enumerate(shape.classes)},
            }
        explanation["model_version"] = shape.version
        if i in scored.warnings:
            explanation["warnings"] = scored.warnings[i]
        out.append(explanation)
    return out
