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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, Union

import msgspec
import numpy as np

from tabserve.model.schema import Kind, Schema
from tabserve.model.validation import Problem, RequestError, strict_type


_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number",
               bool: "boolean", type(None): "null"}


@dataclass
class Body:
    """A parsed request: one record or a batch, as typed columns, one record's values or
    raw records."""

    is_batch: bool
    count: int
    plain: dict[str, Sequence] | None = None     # the plain path, a batch: typed columns
    records: list[dict[str, Any]] | None = None  # the general path
    row: tuple | None = None                     # the plain path, one record: values in order


def _bad_request(message: str, status: int = 400, title: str = "Bad Request",
                 index: int | None = None) -> RequestError:
    return RequestError([Problem(None, message, index)], status=status, title=title)


class BodyDecoder:
    """Parses request bodies for one schema; built once when the model is loaded."""

    def __init__(self, schema: Schema, max_records: int):
        self.fields = schema.fields
        self.names = schema.names
        self.max_records = max_records
        record = msgspec.defstruct(  # attribute names are positional: any column name works
            "Record", [(f"f{at}", strict_type(f)) for at, f in enumerate(self.fields)],
            forbid_unknown_fields=True, gc=False,
            rename={f"f{at}": name for at, name in enumerate(self.names)})
        self._typed = msgspec.json.Decoder(Union[record, list[record]])
        self._plain = msgspec.json.Decoder()

    def columns(self, values: Iterable[Sequence]) -> dict[str, Sequence]:
        """Typed columns, as `Encoder.encode` takes them, from each field's decoded values:
        levels as codes, booleans as numbers; numbers pass as they are (null becomes NaN
        there)."""
        columns: dict[str, Sequence] = {}
        for f, column in zip(self.fields, values):
            if f.kind is Kind.NUMERIC:
                columns[f.name] = column
            elif f.kind is Kind.CATEGORICAL:
                columns[f.name] = np.fromiter(map(f.category_codes.__getitem__, column),
                                              np.intp, len(column))
            else:
                columns[f.name] = np.fromiter(map(f.boolean_table.__getitem__, column),
                                              np.float64, len(column))
        return columns

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

    def _decode_general(self, raw: bytes) -> Body:
        try:
            body = self._plain.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError) as err:
            raise _bad_request(f"the body is not valid JSON: {err}") from None
        except RecursionError:
            raise _bad_request("the body is not valid JSON: nested too deeply") from None
        if isinstance(body, dict):
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
