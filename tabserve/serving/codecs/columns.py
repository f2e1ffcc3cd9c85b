"""Named answer columns for the file and DataFrame doors (score.py's Arrow and CSV, Spark's
pandas), from the core's `Scored`: one array per column, named and typed from the answer shape
alone, so a parent process can plan its output without loading the model."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tabserve.serving.shape import AnswerShape

if TYPE_CHECKING:  # not imported: score.py's parent plans its columns without the model's code
    from tabserve.serving.core import Scored


def answer_types(shape: AnswerShape) -> dict[str, str]:
    """Each answer column's name and type ("string", "double" or "boolean", as Spark spells
    them), in order: the label, one probability per class, for a binary model
    `<key>_probability` and `<key>` (as the API's answers carry them), the model version
    and any warnings."""
    types = {"label": "string"}
    types.update((f"probability_{label}", "double") for label in shape.classes)
    if shape.target_keys:
        types[shape.target_probability] = "double"
        types[shape.key] = "boolean"
    return types | {"model_version": "string", "warnings": "string"}


def answer_columns(shape: AnswerShape) -> list[str]:
    """The answer columns' names, in order (see `answer_types`)."""
    return list(answer_types(shape))


def answer_arrays(scored: Scored) -> dict[str, np.ndarray]:
    """One array per answer column; a record's warnings are joined with "; " ("" for none)."""
    shape = scored.shape
    count = len(scored)
    arrays = {"label": np.asarray(shape.classes, dtype=object)[scored.codes]}
    for i, label in enumerate(shape.classes):
        arrays[f"probability_{label}"] = scored.probabilities[:, i]
    if shape.target_keys:
        arrays[shape.target_probability] = scored.positive
        arrays[shape.key] = scored.codes == 1
    arrays["model_version"] = np.full(count, shape.version, dtype=object)
    notes = np.full(count, "", dtype=object)
    for row, messages in scored.warnings.items():
        notes[row] = "; ".join(messages)
    arrays["warnings"] = notes
    return arrays
