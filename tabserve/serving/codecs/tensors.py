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
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, Union

import msgspec
import numpy as np

from tabserve.model.schema import Field, Kind, Schema
from tabserve.model.validation import Column, KnownCodes
from tabserve.serving.core import AnswerShape, Scored
from tabserve.serving.decoding import packed_levels

DATATYPES = {"numeric": "FP64", "categorical": "BYTES", "boolean": "INT64"}
NUMERIC_SPELLINGS = {("1", "0"), ("1.0", "0.0")}
# the fixed-size datatypes a client may send, as numpy reads their raw bytes
RAW_DTYPES = {"BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
              "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
              "FP32": "<f4", "FP64": "<f8"}
_LENGTH = struct.Struct("<I")
SHOWN_NAMES = 5  # unknown input names quoted in a warning; the rest are counted
TENSOR_LEVELS = "tensor_levels"  # the name for `speedups_off`: see `typed_json_request`
# a few records' body is read faster in the general decoder's one pass (one Telco record's
# JSON tensors are ~1.5 KB: typed, 154 against 148 µs a request)
TYPED_FROM_BYTES = 8192


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


@dataclass(frozen=True)
class Tensor:
    """An input tensor as a transport carried it: its values parsed (`data`: JSON, gRPC's
    typed contents), its binary data (`raw`), read only for the fields the model has, or
    its column already read (`column`: `typed_column`)."""

    name: str
    datatype: str = ""
    data: list | None = None
    raw: bytes | None = None
    column: Column | None = None


def json_inputs(body: Any, raw: dict[int, bytes] | None = None,
                typed: dict[int, Column] | None = None) -> list[Tensor]:
    """The input tensors of a JSON request; `raw` holds the binary data of those that had
    theirs after the JSON, `typed` the columns of those already read (both by position).
    `ValueError` saying what is wrong."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise ValueError("expected an object with a list of 'inputs'")
    raw, typed = raw or {}, typed or {}
    inputs = []
    for i, tensor in enumerate(body["inputs"]):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str) \
                or not (i in raw or i in typed or isinstance(tensor.get("data"), list)):
            raise ValueError(f"inputs[{i}]: expected an object with a 'name' and a 'data' list")
        inputs.append(Tensor(tensor["name"], str(tensor.get("datatype")),
                             None if i in raw or i in typed else tensor["data"], raw.get(i),
                             typed.get(i)))
    return inputs


class _RawTensor(msgspec.Struct):
    name: str
    datatype: Any = None
    shape: Any = None
    parameters: Any = None
    data: msgspec.Raw = msgspec.Raw()  # empty: not given


class _RawRequest(msgspec.Struct):
    inputs: list[_RawTensor]
    id: Any = None
    parameters: Any = None
    outputs: Any = None


_RAW_REQUEST = msgspec.json.Decoder(_RawRequest)


def typed_json_request(raw: bytes, schema: Schema) -> tuple[dict[str, Any], list[Tensor]] | None:
    """A JSON request (no binary data) whose categorical and boolean fields' tensors are
    read straight into columns where every value is a level exactly (msgspec matches the texts
    in C, with no Python string per value) or a boolean as it stands (true/false, 1/0, a
    spelling validation takes as it is): its JSON as the
    general decoder gives it but for those tensors' data, and its input tensors. None for any
    request this does not read as the general decoder would (that decoder then reads it
    whole)."""
    if len(raw) < TYPED_FROM_BYTES:
        return None
    try:
        request = _RAW_REQUEST.decode(raw)
        body = {"inputs": [], "id": request.id, "parameters": request.parameters,
                "outputs": request.outputs}
        typed: dict[int, Column] = {}
        fields = {f.name: f for f in schema.fields if f.kind is not Kind.NUMERIC}
        for i, tensor in enumerate(request.inputs):
            column = None
            given = len(tensor.data) > 0
            if tensor.name in fields and given:
                column = typed_column(fields[tensor.name], tensor.data)
            if column is not None:
                typed[i] = column
            data = msgspec.json.decode(tensor.data) if given and column is None else None
            body["inputs"].append({"name": tensor.name, "datatype": tensor.datatype,
                                   "shape": tensor.shape, "parameters": tensor.parameters,
                                   **({} if data is None else {"data": data})})
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    return body, json_inputs(body, typed=typed)


def typed_column(f: Field, data: bytes) -> Column | None:
    """A categorical's or a boolean's JSON tensor data (two values or more) as its codes or
    flags, as a binary tensor gives them, if every value is one of its levels exactly or a
    boolean as it stands; else None."""
    try:
        values = _typed_decoder(f).decode(data)
    except msgspec.DecodeError:
        return None
    if len(values) < 2:  # one record takes the row path, which reads lists
        return None
    if f.kind is Kind.CATEGORICAL:
        return KnownCodes(np.frombuffer(b"".join(values), np.int64))
    # the decoder gives back its own spellings' strings, whose hashes are kept
    return np.fromiter(map(f.boolean_table.__getitem__, values), np.float64, len(values))


@lru_cache(maxsize=256)
def _typed_decoder(f: Field) -> msgspec.json.Decoder:
    if f.kind is Kind.CATEGORICAL:
        return msgspec.json.Decoder(list[packed_levels(f)])
    spellings = tuple(k for k in f.boolean_table if isinstance(k, str))
    return msgspec.json.Decoder(list[Union[bool, Literal[0, 1], Literal[spellings]]])


def input_columns(inputs: list[Tensor], schema: Schema, limit: int) -> tuple[
        dict[str, Column], int, list[str]]:
    """Each field's column from its input tensor (a list, or typed: see `raw_column`), the
    record count, and the names of inputs the model does not know; `ValueError` saying what
    is wrong with the tensors."""
    given: dict[str, Tensor] = {}
    for i, tensor in enumerate(inputs):
        if tensor.name in given:  # the protocol: names are unique
            raise ValueError(f"inputs[{i}]: input {shown(tensor.name)} is given twice")
        given[tensor.name] = tensor
    missing = [f.name for f in schema.fields if f.name not in given]
    if missing:
        raise ValueError(f"missing input tensors: {', '.join(missing)}")
    columns = {f.name: _column(f, given[f.name], limit) for f in schema.fields}
    lengths = {len(column.codes if isinstance(column, KnownCodes) else column)
               for column in columns.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError("every input tensor must hold the same number (at least 1) of values")
    count = lengths.pop()
    if count > limit:
        raise ValueError(f"{count} records exceed the limit of {limit} (MAX_BATCH_RECORDS)")
    return columns, count, sorted(set(given) - set(schema.names))


def _column(f: Field, tensor: Tensor, limit: int) -> Column:
    if tensor.column is not None:
        return tensor.column
    if tensor.raw is not None:
        return raw_column(f, tensor.name, tensor.datatype, tensor.raw, limit)
    data = tensor.data
    if data and all(isinstance(item, list) and len(item) == 1 for item in data):
        data = [item[0] for item in data]  # shape [n, 1]
    return data


def first_record(columns: dict[str, Column], schema: Schema) -> dict[str, Any]:
    """The first record of `input_columns`' columns, each value as JSON would give it."""
    record = {}
    for f in schema.fields:
        column = columns[f.name]
        if isinstance(column, KnownCodes):
            record[f.name] = f.categories[column.codes[0]]
        else:
            record[f.name] = column[0].item() if isinstance(column, np.ndarray) else column[0]
    return record


def raw_column(f: Field, name: str, datatype: str, raw: bytes, limit: int) -> Column:
    """Field `f`'s column from a tensor's binary data, typed where it can be: numbers as a
    numpy array read from the bytes, texts that are all known levels (or a boolean's
    spellings) as their codes (values); otherwise a list, as JSON gives it. `ValueError`
    naming the tensor when the bytes do not fit its datatype, or hold more than `limit`
    values (refused before a Python object is made for each)."""
    if datatype == "BYTES":
        levels = _byte_levels(f)
        known = levels.read(raw) if levels is not None else None
        if known is None:
            return _decode_bytes_elements(name, raw, limit)
        _within(name, len(known), limit)
        return KnownCodes(known) if f.kind is Kind.CATEGORICAL else known
    dtype = RAW_DTYPES.get(datatype)
    if dtype is None:
        raise ValueError(f"input {shown(name)}: datatype {shown(datatype)} is not one of "
                         f"{', '.join(['BYTES', *RAW_DTYPES])}")
    size = np.dtype(dtype).itemsize
    if len(raw) % size:
        raise ValueError(f"input {shown(name)}: {len(raw)} bytes is not a whole number of "
                         f"{datatype} elements ({size} bytes each)")
    _within(name, len(raw) // size, limit)
    values = np.frombuffer(raw, dtype=dtype)
    # a categorical's numbers are looked up as levels written as numbers, one by one
    return values.tolist() if f.kind is Kind.CATEGORICAL else values


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


class ByteLevels:
    """Reads a BYTES tensor whose every element is one of a few known texts (a categorical's
    levels, a boolean's spellings) into their values, in C-speed steps.

    Each element is its length (4 bytes, little-endian) then its text. When every text is 1
    to 255 bytes long without a NUL byte, the only NULs in such data are the three of each
    length, so splitting at them gives, between the first length byte and the last text,
    pieces of one text followed by the next element's length byte: each piece is looked up
    whole, and the lengths are checked to chain. Data that is anything else, or a single
    element, gives None: it is read one element at a time."""

    MAX_TEXTS = 64  # pieces pair a text with the next one's length: at most 64 × 64 of them

    def __init__(self, texts: dict[str, Any]):
        encoded = {text.encode(): value for text, value in texts.items()}
        self.values = np.array(list(encoded.values()))
        self.sizes = np.array([len(text) for text in encoded], np.intp)
        sizes = sorted(set(self.sizes.tolist()))
        self.last = {text: i for i, text in enumerate(encoded)}
        self.inner = {text + bytes([size]): i << 8 | size
                      for text, i in self.last.items() for size in sizes}

    @classmethod
    def usable(cls, texts: dict[str, Any]) -> bool:
        return 0 < len(texts) <= cls.MAX_TEXTS and all(
            0 < len(text.encode()) < 256 and "\0" not in text for text in texts)

    def read(self, raw: bytes) -> np.ndarray | None:
        pieces = raw.split(b"\0\0\0")
        if len(pieces) < 3 or len(pieces[0]) != 1:  # one element: as cheap read as text
            return None
        try:
            inner = np.fromiter(map(self.inner.__getitem__, pieces[1:-1]), np.intp,
                                len(pieces) - 2)
            last = self.last[pieces[-1]]
        except KeyError:
            return None
        index = np.append(inner >> 8, last)
        following = np.append(pieces[0][0], inner & 255)  # the length before each text
        if not (following == self.sizes[index]).all():
            return None
        return self.values[index]


@lru_cache(maxsize=256)
def _byte_levels(f: Field) -> ByteLevels | None:
    """`f`'s reader of known texts: a categorical's levels to their codes, a boolean's
    spellings to 1/0 (exactly as validation takes them as they stand); None where texts must
    be read one by one."""
    if f.kind is Kind.CATEGORICAL:
        texts = {level: code for level, code in f.category_codes.items() if type(level) is str}
    elif f.kind is Kind.BOOLEAN:
        texts = {text: value for text, value in f.boolean_table.items() if type(text) is str}
    else:
        return None
    return ByteLevels(texts) if ByteLevels.usable(texts) else None


def requested_outputs(shape: AnswerShape, names: list[str] | None) -> list[str]:
    """The names of the output tensors a request asked for, in its order (all when it named
    none); `ValueError` for a name the model has not."""
    known = [tensor["name"] for tensor in output_tensors(shape)]
    if not names:
        return known
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown output {shown(unknown[0])}: this model's outputs are "
                         f"{', '.join(map(repr, known))}")
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class Output:
    """An output tensor of scored records: its values as an array (BYTES: indexes into
    `texts`), written as JSON data or as binary data."""

    name: str
    datatype: str
    shape: list[int]
    values: np.ndarray
    texts: tuple[str, ...] = ()

    def data(self) -> list:
        """The values as a JSON tensor's `data`."""
        if self.datatype == "BYTES":
            return list(map(self.texts.__getitem__, self.values.tolist()))
        return self.values.tolist()

    def raw(self) -> bytes:
        """The values as binary data."""
        if self.datatype == "BYTES":
            encoded = [_LENGTH.pack(len(text.encode())) + text.encode() for text in self.texts]
            return b"".join(map(encoded.__getitem__, self.values.tolist()))
        return self.values.astype(RAW_DTYPES[self.datatype], copy=False).tobytes()

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape}


def outputs(scored: Scored, names: list[str]) -> list[Output]:
    """The output tensors `names` (as `requested_outputs` gives them) of scored records."""
    count, classes = len(scored), len(scored.shape.classes)
    made = {"label": Output("label", "BYTES", [count], scored.codes, scored.shape.classes),
            "probabilities": Output("probabilities", "FP64", [count, classes],
                                    scored.probabilities.ravel())}
    if scored.shape.binary:
        name = scored.shape.target_probability
        made[name] = Output(name, "FP64", [count], scored.positive)
    return [made[name] for name in names]


def warnings(scored: Scored, unknown: list[str]) -> str | None:
    """The answer's warnings as one string (a parameter's value is a string, a number or a
    boolean): unknown inputs ignored, then each record's, by record; None without any."""
    ignored = [f"unknown input {shown(name)} ignored" for name in unknown[:SHOWN_NAMES]]
    if len(unknown) > SHOWN_NAMES:
        ignored.append(f"and {len(unknown) - SHOWN_NAMES} more unknown inputs ignored")
    listed = ignored + \
        [f"records[{i}]: {w}" for i, ws in sorted(scored.warnings.items()) for w in ws]
    return "; ".join(listed) or None
