"""The serving core, without transport: a bundle made ready to score (`Predictor`), what every
answer holds (`AnswerShape`), and one call from validated columns to a `Scored` result.

Every door is a codec around this (`serving.codecs`): JSON for /predict and /explain, v2
tensors for the Open Inference Protocol, named columns for score.py and Spark. None of them
scores, picks labels or knows the answer's keys on its own. Drift is counted by the callers
that want it (the web service), with the columns and the `Scored` they pass on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tabserve.model.bundle import ModelBundle
from tabserve.model.decision import label_code, label_codes
from tabserve.model.encoding import Encoder
from tabserve.model.schema import Schema
from tabserve.model.validation import Validated, validate
from tabserve.serving.scorers import Scorer, compile_scorer
from tabserve.serving.shape import AnswerShape

__all__ = ["AnswerShape", "Scored", "Predictor"]

@dataclass
class Scored:
    """Records scored: class probabilities (records × classes), each record's class index,
    and the warnings validation gave (by record), with the shape every codec reads."""

    probabilities: np.ndarray
    codes: np.ndarray
    warnings: dict[int, list[str]]
    shape: AnswerShape

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def labels(self) -> list[str]:
        return list(map(self.shape.classes.__getitem__, self.codes.tolist()))

    @property
    def positive(self) -> np.ndarray:
        """The positive class's probability of a binary model."""
        return self.probabilities[:, 1]


@dataclass
class Predictor:
    """A bundle made ready to score: its encoder, its compiled scorer and its answer shape."""

    bundle: ModelBundle
    speedups_off: frozenset[str] = frozenset()
    encoder: Encoder = field(init=False)
    scorer: Scorer = field(init=False)
    shape: AnswerShape = field(init=False)

    def __post_init__(self) -> None:
        self.encoder = Encoder(self.bundle.schema)
        self.scorer = compile_scorer(self.bundle, self.speedups_off)
        self.shape = AnswerShape.of(self.bundle)

    @property
    def schema(self) -> Schema:
        return self.bundle.schema

    def probabilities(self, columns: dict[str, Any]) -> np.ndarray:
        """Class probabilities (records × classes, float64) for typed columns."""
        return self.scorer(self.encoder.encode(columns))

    def score(self, columns: dict[str, Any],
              warnings: dict[int, list[str]] | None = None) -> Scored:
        """Typed columns (as validation or the plain decoder give them) scored."""
        return self.scored(self.probabilities(columns), warnings or {})

    def scored(self, probabilities: np.ndarray, warnings: dict[int, list[str]]) -> Scored:
        """Probabilities someone computed (the batch door: none for an empty chunk) labelled."""
        codes = label_codes(probabilities, self.shape.threshold) if len(probabilities) \
            else np.zeros(0, np.intp)
        return Scored(probabilities, codes, warnings, self.shape)

    def score_validated(self, validated: Validated) -> Scored:
        """Validated records scored; `RequestError` naming every problem validation found."""
        validated.raise_problems()
        return self.score(validated.columns, validated.warnings)

    def score_records(self, records: list[dict[str, Any]], indexed: bool = True) -> Scored:
        """Records as a JSON body holds them, validated and scored."""
        return self.score_validated(validate(self.schema, records, indexed))

    def score_row(self, row: tuple) -> list[float]:
        """Class probabilities of one record of plain values in schema order (the plain
        decoder's; no numpy for one record)."""
        return self.scorer.row(self.encoder.encode_row(row))

    def row_code(self, probabilities: list[float]) -> int:
        """The class index `score_row`'s probabilities give."""
        return label_code(probabilities, self.shape.threshold)
