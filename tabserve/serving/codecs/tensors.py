"""The Open Inference Protocol's (v2) tensors: the schema's fields as input tensors, and the
core's `Scored` as output tensors, apart from the transport that carries them.

Tabular input is one tensor per field (BYTES for text, FP64/INT64 for numbers, BOOL or INT64
for booleans); the outputs are the predicted label, the class probabilities, and for a binary
model the positive class's probability.

Binary tensor data (HTTP's binary extension, gRPC's raw contents) has one layout in both
transports: numbers little-endian, BOOL one byte each, BYTES each element as its length
(4 bytes, little-endian) then its bytes.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from tabserve.model.schema import Field, Kind, Schema
from tabserve.serving.core import AnswerShape, Scored

DATATYPES = {"numeric": "FP64", "categorical": "BYTES", "boolean": "INT64"}
NUMERIC_SPELLINGS = {("1", "0"), ("1.0", "0.0")}
# the fixed-size datatypes a client may send, as numpy reads their raw bytes
RAW_DTYPES = {"BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
              "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
              "FP32": "<f4", "FP64": "<f8"}
_LENGTH = struct.Struct("<I")
SHOWN_NAMES = 5  # unknown input names quoted in a warning; the rest are counted


def shown(name: str) -> str:
    """A client's tensor name as an answer quotes it: cut, so a long name makes no long
    answer."""
    return repr(name if len(name) <= 40 else name[:37] + "...")


def datatype(f: Field) -> str:
    """A field's tensor datatype as its training values were written: a boolean spelled 1/0 is
    INT64, one spelled in words ("yes"/"no") is BYTES, as the example record holds it (both,
    and BOOL, are read either way)."""
    if f.kind is Kind.BOOLEAN and tuple(f.spellings) not in NUMERIC_SPELLINGS:
        return "BYTES"
    return DATATYPES[f.kind.value]


def input_tensors(schema: Schema) -> list[dict[str, Any]]:
    """The metadata of the input tensors, one per field."""
    return [{"name": f.name, "datatype": datatype(f), "shape": [-1]} for f in schema.fields]


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
        if tensor["name"] in tensors:  # the protocol: names are unique
            raise ValueError(f"inputs[{i}]: input {shown(tensor['name'])} is given twice")
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


def decode_raw(name: str, datatype: str, raw: bytes, limit: int) -> list:
    """The values of one tensor's binary data; `ValueError` naming the tensor when the bytes
    do not fit its datatype, or hold more than `limit` values (refused before a Python
    object is made for each)."""
    if datatype == "BYTES":
        return _decode_bytes_elements(name, raw, limit)
    dtype = RAW_DTYPES.get(datatype)
    if dtype is None:
        raise ValueError(f"input {shown(name)}: datatype {shown(datatype)} is not one of "
                         f"{', '.join(['BYTES', *RAW_DTYPES])}")
    size = np.dtype(dtype).itemsize
    if len(raw) % size:
        raise ValueError(f"input {shown(name)}: {len(raw)} bytes is not a whole number of "
                         f"{datatype} elements ({size} bytes each)")
    _within(name, len(raw) // size, limit)
    return np.frombuffer(raw, dtype=dtype).tolist()


def _within(name: str, count: int, limit: int) -> None:
    if count > limit:
        raise ValueError(f"input {shown(name)}: {count} or more values exceed the limit of "
                         f"{limit} records (MAX_BATCH_RECORDS)")


def _decode_bytes_elements(name: str, raw: bytes, limit: int) -> list[str]:
    pieces, offset, end, unpack = [], 0, len(raw), _LENGTH.unpack_from
    try:
        while offset < end:
            if len(pieces) == limit:
                _within(name, limit + 1, limit)
            start = offset + 4
            offset = start + unpack(raw, offset)[0]
            pieces.append(raw[start:offset])
    except struct.error:
        raise ValueError(f"input {shown(name)}: BYTES data ends inside an element's length") from None
    if offset > end:
        raise ValueError(f"input {shown(name)}: a BYTES element of {len(pieces[-1]) + offset - end} "
                         "bytes runs past the end of the data")
    texts: dict[bytes, str] = {}  # a categorical field repeats a few levels
    try:
        return [texts[p] if p in texts else texts.setdefault(p, p.decode()) for p in pieces]
    except UnicodeDecodeError:
        bad = next(i for i, p in enumerate(pieces) if p not in texts)
        raise ValueError(f"input {shown(name)}: element {bad} is not UTF-8 text") from None


def encode_raw(tensor: dict[str, Any]) -> bytes:
    """The binary data of an output tensor (its `data` as `outputs` made it)."""
    if tensor["datatype"] == "BYTES":
        encoded = [value.encode() for value in tensor["data"]]
        return b"".join(_LENGTH.pack(len(item)) + item for item in encoded)
    return np.asarray(tensor["data"], dtype=RAW_DTYPES[tensor["datatype"]]).tobytes()


def requested_outputs(tensors: list[dict[str, Any]], names: list[str] | None) -> list[dict[str, Any]]:
    """The output tensors a request asked for, in its order (all when it named none);
    `ValueError` for a name the model has not."""
    if not names:
        return tensors
    by_name = {tensor["name"]: tensor for tensor in tensors}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ValueError(f"unknown output {shown(unknown[0])}: this model's outputs are "
                         f"{', '.join(map(repr, by_name))}")
    return [by_name[name] for name in dict.fromkeys(names)]


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


def warnings(scored: Scored, unknown: list[str]) -> str | None:
    """The answer's warnings as one string (a parameter's value is a string, a number or a
    boolean): unknown inputs ignored, then each record's, by record; None without any."""
    ignored = [f"unknown input {shown(name)} ignored" for name in unknown[:SHOWN_NAMES]]
    if len(unknown) > SHOWN_NAMES:
        ignored.append(f"and {len(unknown) - SHOWN_NAMES} more unknown inputs ignored")
    listed = ignored + \
        [f"records[{i}]: {w}" for i, ws in sorted(scored.warnings.items()) for w in ws]
    return "; ".join(listed) or None
