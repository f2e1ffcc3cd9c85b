"""Request bodies → the values of each field, ready for the schema's validator.

Two paths that end in the same `Schema.validate_columns`, so they cannot disagree on what is
valid:
- fast: a msgspec decoder compiled from the schema parses a body whose records hold exactly
  the schema's fields, with plausible JSON types, straight into typed structs (in C), and each
  field's values are read off them in one transposition;
- general: anything else (a missing or unknown field, a wrong type, not a record at all) is
  parsed as plain JSON, the shape is checked, and the validator names every problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

import msgspec

from tabserve.schema import Kind, Problem, RequestError, Schema

_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number",
               bool: "boolean", type(None): "null"}
# what each kind of field may hold on the fast path; the validator checks the values
_FAST_TYPES = {Kind.NUMERIC: float, Kind.CATEGORICAL: str, Kind.BOOLEAN: Union[bool, int, str]}


@dataclass
class Body:
    """A parsed request: one record or a batch, as per-field values or as raw records."""

    is_batch: bool
    count: int
    values: dict[str, list] | None = None       # the fast path: one list per field
    records: list[dict[str, Any]] | None = None  # the general path
    row: tuple | None = None                     # the fast path, one record: values in order


def _bad_request(message: str, status: int = 400, title: str = "Bad Request",
                 index: int | None = None) -> RequestError:
    return RequestError([Problem(None, message, index)], status=status, title=title)


class BodyDecoder:
    """Parses request bodies for one schema; built once when the model is loaded."""

    def __init__(self, schema: Schema, max_records: int):
        self.names = schema.names
        self.max_records = max_records
        fields = []
        for position, f in enumerate(schema.fields):
            kind = _FAST_TYPES[f.kind]
            # attribute names are positional, so any column name works as a JSON key
            fields.append((f"f{position}", Union[kind, None] if f.nullable else kind))
        record = msgspec.defstruct(
            "Record", fields, forbid_unknown_fields=True, array_like=False,
            rename={f"f{position}": name for position, name in enumerate(self.names)})
        self._typed = msgspec.json.Decoder(Union[record, list[record]])
        self._plain = msgspec.json.Decoder()

    def decode(self, raw: bytes) -> Body:
        """Parse a body; `RequestError` when it is not one record or a batch of them."""
        try:
            typed = self._typed.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError):
            typed = None
        if isinstance(typed, list) and 0 < len(typed) <= self.max_records:
            columns = zip(*map(msgspec.structs.astuple, typed))
            return Body(True, len(typed), values=dict(zip(self.names, map(list, columns))))
        if typed is not None and not isinstance(typed, list):
            row = msgspec.structs.astuple(typed)
            return Body(False, 1, values={name: [value] for name, value in zip(self.names, row)},
                        row=row)
        return self._decode_general(raw)

    def _decode_general(self, raw: bytes) -> Body:
        try:
            body = self._plain.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError) as err:
            raise _bad_request(f"the body is not valid JSON: {err}") from None
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
