"""Request bodies → records, by two paths:

- plain (fast): a msgspec decoder compiled from the schema accepts, in C, exactly the records
  that hold every field and no other, with values the validator accepts as they stand: a
  number, a level seen in training, an accepted boolean spelling, null where allowed. Each
  field's values are read off the decoded structs in one transposition; no Python-level
  validation is needed (`Schema.columns_from_plain`).
- general: anything else (a missing or unknown field, a wrong type, an unseen level, padded
  text, not a record at all) is parsed as plain JSON, its shape is checked, and the schema's
  validator names every problem and warning.
The parity tests hold both paths to the same answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

import msgspec

from tabserve.schema import Field, Kind, Problem, RequestError, Schema

_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number",
               bool: "boolean", type(None): "null"}


def _plain_type(f: Field) -> Any:
    """The values a field may hold on the plain path, as a type msgspec checks in C."""
    if f.kind is Kind.NUMERIC:
        kind = float  # JSON has no NaN or infinity, and msgspec refuses numbers beyond a double
    elif f.kind is Kind.CATEGORICAL:
        kind = Literal[f.categories]
    else:
        spellings = tuple(k for k in f.boolean_table if isinstance(k, str))
        kind = Union[bool, Literal[0, 1], Literal[spellings]]
    return Optional[kind] if f.nullable else kind


@dataclass
class Body:
    """A parsed request: one record or a batch, as per-field values or as raw records."""

    is_batch: bool
    count: int
    plain: dict[str, tuple] | None = None       # the plain path: each field's values
    records: list[dict[str, Any]] | None = None  # the general path
    row: tuple | None = None                     # the plain path, one record: values in order


def _bad_request(message: str, status: int = 400, title: str = "Bad Request",
                 index: int | None = None) -> RequestError:
    return RequestError([Problem(None, message, index)], status=status, title=title)


class BodyDecoder:
    """Parses request bodies for one schema; built once when the model is loaded."""

    def __init__(self, schema: Schema, max_records: int):
        self.names = schema.names
        self.max_records = max_records
        # attribute names are positional, so any column name works as a JSON key
        fields = [(f"f{position}", _plain_type(f)) for position, f in enumerate(schema.fields)]
        record = msgspec.defstruct(
            "Record", fields, forbid_unknown_fields=True, gc=False,
            rename={f"f{position}": name for position, name in enumerate(self.names)})
        self._typed = msgspec.json.Decoder(Union[record, list[record]])
        self._plain = msgspec.json.Decoder()

    def decode(self, raw: bytes) -> Body:
        """Parse a body; `RequestError` when it is not one record or a batch of them."""
        return self.decode_plain(raw) or self._decode_general(raw)

    def decode_plain(self, raw: bytes) -> Body | None:
        """The body if the plain path takes it (valid as it stands), else None."""
        try:
            typed = self._typed.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            return None
        if not isinstance(typed, list):
            return Body(False, 1, row=msgspec.structs.astuple(typed))
        if 0 < len(typed) <= self.max_records:
            columns = zip(*map(msgspec.structs.astuple, typed))
            return Body(True, len(typed), plain=dict(zip(self.names, columns)))
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
