"""Request bodies → records, by two paths:

- plain (fast): a msgspec decoder built from the schema's strict types
  (`model.validation.strict_type`) accepts, in C, exactly the records that hold every field
  and no other, with values the validator accepts as they stand. One record's values go on as
  they are; a batch's become typed columns with no Python-level validation
  (`BodyDecoder.columns`).
- general: anything else (a missing or unknown field, a wrong type, an unseen level, padded
  text, not a record at all) is parsed as plain JSON, its shape is checked here, and
  `model.validation.validate` names every problem and warning.
The parity tests hold both paths to the same answers.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from itertools import chain
from operator import itemgetter
from typing import Any, Union

import msgspec
import numpy as np

from tabserve.model.schema import MISSING_CODE, Field, Kind, Schema
from tabserve.model.validation import Problem, RequestError, strict_type

PACKED_LEVELS = "packed_levels"  # the name for `speedups_off`
TENSOR_ROWS = "tensor_rows"  # the name for `speedups_off`: see `BodyDecoder.row_of`

_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number",
               bool: "boolean", type(None): "null"}


class PackedLevel(bytes, Enum):
    """A categorical's level as a batch decodes it: the member's value is the level's text,
    which msgspec matches in C, and the member itself is the level's code packed as 8 bytes,
    so a column of members joins into one buffer that numpy reads as the codes, with no dict
    lookup per value in Python."""

    def __new__(cls, text: str, code: int):
        member = bytes.__new__(cls, struct.pack("<q", code))
        member._value_ = text
        return member

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._value_!r}>"


_PACKED_MISSING = struct.pack("<q", MISSING_CODE)


def packed_levels(f: Field) -> type[PackedLevel] | None:
    if f.kind is not Kind.CATEGORICAL:
        return None
    return PackedLevel("Level", [(f"level{code}", (text, code))
                                 for code, text in enumerate(f.categories)])


@dataclass
class Body:
    """A parsed request: one record or a batch, as typed columns, one record's values or
    raw records."""

    is_batch: bool
    count: int
    plain: dict[str, Sequence] | None = None     # the plain path, a batch: typed columns
    records: list[dict[str, Any]] | None = None  # the general path
    row: tuple | None = None                     # the plain path, one record: values in order


VALUES_PER_RECORD = 64  # values a record may hold in a batch parsed as any JSON (at least)


def _short_key(key: str) -> str:
    return key if len(key) <= 40 else key[:37] + "..."


def _bad_request(message: str, status: int = 400, title: str = "Bad Request",
                 index: int | None = None) -> RequestError:
    return RequestError([Problem(None, message, index)], status=status, title=title)


class BodyDecoder:
    """Parses request bodies for one schema; built once when the model is loaded."""

    def __init__(self, schema: Schema, max_records: int,
                 speedups_off: frozenset[str] = frozenset()):
        self.fields = schema.fields
        self.names = schema.names
        self.max_records = max_records
        self.packed = PACKED_LEVELS not in speedups_off
        # one record keeps its levels as text for `Encoder.encode_row`; a batch's are packed
        self._one = self._record(batch=False)
        self._typed = msgspec.json.Decoder(Union[self._one,
                                                 list[self._record(batch=self.packed)]])
        self.tensor_rows = TENSOR_ROWS not in speedups_off
        self._any_json = msgspec.json.Decoder()  # the general path: any JSON at all
        # the most values a body may hold before it is parsed as any JSON, where each value
        # becomes a Python object (~25 times its bytes for `{}`): the largest batch of records
        # of up to VALUES_PER_RECORD values (or twice the fields, if more) passes
        self.max_values = max_records * max(VALUES_PER_RECORD, 2 * len(self.fields))

    def _record(self, batch: bool) -> type:
        # attribute names are positional, so any column name works as a JSON key
        return msgspec.defstruct(
            "Record", [(f"f{at}", strict_type(f, packed_levels(f) if batch else None))
                       for at, f in enumerate(self.fields)],
            forbid_unknown_fields=True, gc=False,
            rename={f"f{at}": name for at, name in enumerate(self.names)})

    def columns(self, values: Iterable[Sequence]) -> dict[str, Sequence]:
        """Typed columns, as `Encoder.encode` takes them, from each field's decoded values:
        levels as codes and booleans as numbers, read whole from bytes; numbers as float
        arrays (null becomes NaN), converted once for the encoder and the drift counts."""
        columns: dict[str, Sequence] = {}
        for f, column in zip(self.fields, values):
            if f.kind is Kind.NUMERIC:
                columns[f.name] = np.array(column, dtype=np.float64)
            elif f.kind is Kind.CATEGORICAL and not self.packed:
                columns[f.name] = np.fromiter(map(f.category_codes.__getitem__, column),
                                              np.intp, len(column))
            elif f.kind is Kind.CATEGORICAL:
                if f.nullable and None in column:
                    column = [_PACKED_MISSING if level is None else level for level in column]
                columns[f.name] = np.frombuffer(b"".join(column), np.int64)
            else:
                columns[f.name] = self._booleans(f, column)
        return columns

    @staticmethod
    def _booleans(f: Field, column: Sequence) -> np.ndarray:
        try:  # true/false and 0/1, as most clients send them, are a byte each to `bytes`
            return np.frombuffer(bytes(column), np.uint8)
        except TypeError:  # a spelling ("Yes") or a null is not: each value is looked up
            lookup = f.packed_lookup
            packed = itemgetter(*column)(lookup) if len(column) > 1 else (lookup[column[0]],)
            return np.frombuffer(b"".join(packed), np.float64)

    def decode(self, raw: bytes, plain_refused: bool = False) -> Body:
        """Parse a body; `RequestError` when it is not one record or a batch of them.
        `plain_refused`: the plain path has already refused this body (it is not tried again)."""
        return (None if plain_refused else self.decode_plain(raw)) or self._decode_general(raw)

    def decode_plain(self, raw: bytes) -> Body | None:
        """The body if the plain path takes it (valid as it stands), else None."""
        try:
            typed = self._typed.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            return None
        if not isinstance(typed, list):
            return Body(False, 1, row=msgspec.structs.astuple(typed))
        if 0 < len(typed) <= self.max_records:
            # the values record after record; each field's are then one strided slice
            values = list(chain.from_iterable(map(msgspec.structs.astuple, typed)))
            width = len(self.fields)
            return Body(True, len(typed),
                        plain=self.columns(values[at::width] for at in range(width)))
        return None

    def row_of(self, record: dict[str, Any]) -> tuple | None:
        """One record's values in field order when they are valid as they stand (the plain
        path's rule, checked by msgspec in C), else None: the Open Inference Protocol's single
        record then scores as /predict's plain record does (`Predictor.score_row`)."""
        if not self.tensor_rows:
            return None
        try:
            return msgspec.structs.astuple(msgspec.convert(record, self._one))
        except msgspec.ValidationError:
            return None

    def _refuse_wrapped_batch(self, body: dict) -> None:
        """`{"records": [{...}, ...]}` is a batch put in an object (as other servers want it):
        say so, rather than list every field as missing."""
        if any(name in body for name in self.names):
            return
        for key, value in body.items():
            if isinstance(value, list) and value and isinstance(value[0], dict):
                raise RequestError([Problem(_short_key(key), (
                    f"{_short_key(key)!r} is not a field of the model: a batch is a bare JSON "
                    "list of records, [{...}, {...}], sent as the whole body"))],
                    status=400, title="Bad Request")

    def too_many_values(self, raw: bytes) -> str | None:
        """Why a body holds too many values to be parsed as any JSON, or None: every value
        after a container's first follows a comma, so commas bound the values, counted
        before a single object is made (numpy compares every byte at once: several times
        `bytes.count`'s speed)."""
        commas = int(np.count_nonzero(np.frombuffer(raw, np.uint8) == ord(",")))
        if commas < self.max_values:
            return None
        return (f"the body holds more than {self.max_values} values: at most "
                f"{self.max_records} records (MAX_BATCH_RECORDS) of up to "
                f"{self.max_values // self.max_records} values each")

    def _decode_general(self, raw: bytes) -> Body:
        if not raw.strip():
            raise _bad_request("the body is empty: send one record as a JSON object, or a "
                               "batch as a JSON list of objects")
        too_many = self.too_many_values(raw)
        if too_many:
            raise _bad_request(too_many, status=413, title="Content Too Large")
        try:
            body = self._any_json.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError) as err:
            raise _bad_request(f"the body is not valid JSON: {err}") from None
        except RecursionError:
            raise _bad_request("the body is not valid JSON: nested too deeply") from None
        if isinstance(body, dict):
            self._refuse_wrapped_batch(body)
            return Body(False, 1, records=[body])
        if not isinstance(body, list):
            raise _bad_request("expected a JSON object (one record) or a list of objects "
                               f"(a batch), got {_JSON_TYPES[type(body)]}")
        if not body:
            raise _bad_request("the batch is empty: send at least one record")
        if len(body) > self.max_records:
            raise _bad_request(f"the batch has {len(body)} records, more than the limit of "
                               f"{self.max_records} (MAX_BATCH_RECORDS)",
                               status=413, title="Content Too Large")
        not_objects = [Problem(None, f"expected a JSON object, got {_JSON_TYPES[type(item)]}", i)
                       for i, item in enumerate(body) if not isinstance(item, dict)]
        if not_objects:
            raise RequestError(not_objects, status=400, title="Bad Request")
        return Body(True, len(body), records=body)
