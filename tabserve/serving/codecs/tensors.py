"""The Open Inference Protocol's (v2) tensors: the schema's fields as input tensors, and the
core's `Scored` as output tensors, apart from the transport that carries them.

Tabular input is one tensor per field (BYTES for text, FP64/INT64 for numbers, BOOL or INT64
for booleans); the outputs are the predicted label, the class probabilities, and for a binary
model the positive class's probability.
"""

from __future__ import annotations

from typing import Any

from tabserve.model.schema import Schema
from tabserve.serving.core import AnswerShape, Scored

DATATYPES = {"numeric": "FP64", "categorical": "BYTES", "boolean": "INT64"}


def input_tensors(schema: Schema) -> list[dict[str, Any]]:
    """The metadata of the input tensors, one per field."""
    return [{"name": f.name, "datatype": DATATYPES[f.kind.value], "shape": [-1]}
            for f in schema.fields]


def output_tensors(shape: AnswerShape) -> list[dict[str, Any]]:
    """The metadata of the output tensors."""
    outputs = [{"name": "label", "datatype": "BYTES", "shape": [-1]},
               {"name": "probabilities", "datatype": "FP64", "shape": [-1, len(shape.classes)]}]
    if shape.binary:
        outputs.append({"name": shape.target_probability, "datatype": "FP64", "shape": [-1]})
    return outputs


def input_values(body: Any, names: list[str], limit: int) -> tuple[dict[str, list], int,
                                                                     list[str]]:
    """Each field's values from a request's input tensors, the record count, and the names of
    inputs the model does not know; `ValueError` saying what is wrong with the tensors."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise ValueError("expected an object with a list of 'inputs'")
    tensors: dict[str, list] = {}
    for i, tensor in enumerate(body["inputs"]):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str) \
                or not isinstance(tensor.get("data"), list):
            raise ValueError(f"inputs[{i}]: expected an object with a 'name' and a 'data' list")
        data = tensor["data"]
        if data and all(isinstance(item, list) and len(item) == 1 for item in data):
            data = [item[0] for item in data]  # shape [n, 1]
        tensors[tensor["name"]] = data
    missing = [name for name in names if name not in tensors]
    if missing:
        raise ValueError(f"missing input tensors: {', '.join(missing)}")
    lengths = {len(tensors[name]) for name in names}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError("every input tensor must hold the same number (at least 1) of values")
    count = lengths.pop()
    if count > limit:
        raise ValueError(f"{count} records exceed the limit of {limit} (MAX_BATCH_RECORDS)")
    return {name: tensors[name] for name in names}, count, sorted(set(tensors) - set(names))


def outputs(scored: Scored) -> list[dict[str, Any]]:
    """The output tensors of scored records."""
    count, classes = len(scored), len(scored.shape.classes)
    tensors = [
        {"name": "label", "datatype": "BYTES", "shape": [count], "data": scored.labels},
        {"name": "probabilities", "datatype": "FP64", "shape": [count, classes],
         "data": scored.probabilities.ravel().tolist()},
    ]
    if scored.shape.binary:
        tensors.append({"name": scored.shape.target_probability, "datatype": "FP64",
                        "shape": [count], "data": scored.positive.tolist()})
    return tensors


def warnings(scored: Scored, unknown: list[str]) -> list[str]:
    """The answer's warnings: unknown inputs ignored, then each record's, by record."""
    return [f"unknown input {name!r} ignored" for name in unknown] + \
        [f"records[{i}]: {w}" for i, ws in sorted(scored.warnings.items()) for w in ws]
