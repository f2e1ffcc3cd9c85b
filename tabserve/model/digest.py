"""A digest of Python values that depends on the values only: what a model's version id hashes.

Pickle's bytes are not such a form: they record which equal objects are one object (its memo),
and that differs between builds of one Python version (Debian's 3.11.2 and 3.11.7 gave one
model two ids). Here every value is written by what it is: numbers by their exact bytes,
arrays by dtype, shape and contents, containers item by item, any other object by its class
and the state pickle would save for it (`__reduce_ex__`), read as values again.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from typing import Any

import numpy as np

_PLAIN = (type(None), bool, int, str, bytes, bytearray)


def value_digest(value: Any) -> str:
    """The SHA-256 hex digest of `value`, read as values (see the module's docstring)."""
    digest = hashlib.sha256()
    _feed(value, digest, set())
    return digest.hexdigest()


def _tag(digest, *parts: str) -> None:
    for part in parts:
        data = part.encode()
        digest.update(struct.pack("<Q", len(data)) + data)


def _feed(value: Any, digest, seen: set[int]) -> None:
    if isinstance(value, _PLAIN):
        _tag(digest, type(value).__name__, repr(bytes(value)) if isinstance(value, bytearray)
             else repr(value))
    elif isinstance(value, float):
        _tag(digest, "float", struct.pack("<d", value).hex())
    elif isinstance(value, enum.Enum):
        _tag(digest, "enum", _name(type(value)))
        _feed(value.value, digest, seen)
    elif isinstance(value, np.dtype):
        _tag(digest, "dtype", value.str, repr(value.descr) if value.fields else "")
    elif isinstance(value, np.generic):
        _feed(np.asarray(value), digest, seen)
    elif isinstance(value, np.ndarray):
        _feed_array(value, digest, seen)
    elif isinstance(value, type) or _is_function(value):
        _tag(digest, "name", _name(value))
    elif isinstance(value, dict):
        _tag(digest, "dict", str(len(value)))
        for key in sorted(value, key=repr):
            _feed(key, digest, seen)
            _feed(value[key], digest, seen)
    elif isinstance(value, (list, tuple)):
        _tag(digest, type(value).__name__, str(len(value)))
        for item in value:
            _feed(item, digest, seen)
    elif isinstance(value, (set, frozenset)):
        _tag(digest, "set", str(len(value)))
        for item in sorted(value, key=repr):
            _feed(item, digest, seen)
    else:
        _feed_object(value, digest, seen)


def _feed_array(array: np.ndarray, digest, seen: set[int]) -> None:
    _tag(digest, "array", repr(array.shape))
    _feed(array.dtype, digest, seen)
    if array.dtype.hasobject:
        for item in array.ravel(order="C"):
            _feed(item, digest, seen)
    else:
        digest.update(np.ascontiguousarray(array).tobytes())


def _feed_object(value: Any, digest, seen: set[int]) -> None:
    if id(value) in seen:  # a cycle: the object is already being written
        _tag(digest, "cycle")
        return
    seen.add(id(value))
    reduced = value.__reduce_ex__(4)
    if isinstance(reduced, str):  # a module-level singleton
        _tag(digest, "global", reduced)
    else:
        rebuild, args, *rest = reduced
        _tag(digest, "object", _name(type(value)), _name(rebuild))
        _feed(args, digest, seen)
        for part in rest:
            if part is not None and not isinstance(part, (dict, list, tuple)) \
                    and hasattr(part, "__next__"):
                part = list(part)  # list or dict items, as pickle would append them
            _feed(part, digest, seen)
    seen.discard(id(value))


def _is_function(value: Any) -> bool:
    return type(value).__name__ in ("function", "builtin_function_or_method", "method")


def _name(value: Any) -> str:
    return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}"
