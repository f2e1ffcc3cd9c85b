"""A bounded reader of UBJSON, the binary JSON that XGBoost saves boosters in: bundles written
before boosters were arrays (`fitted.XGBoostFile`) hold one, and XGBoost's own parser trusts the
lengths it reads (a declared key of 2^30 bytes crashed it, a count of 2^31 elements grew it past
5 GB). Here every length and count is checked against the bytes that remain before anything is
allocated, nesting is limited, and typed arrays become numpy arrays without a Python object per
element. Covers what XGBoost writes: objects, arrays (counted, typed or not, or ended by `]`),
strings, integers, floats, booleans and null, big-endian as the format says.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_DEPTH = 32
# marker -> numpy dtype of the fixed-size numbers (big-endian, as the format stores them)
NUMBERS = {b"i": ">i1", b"U": ">u1", b"I": ">i2", b"l": ">i4", b"L": ">i8", b"d": ">f4",
           b"D": ">f8"}
CONSTANTS = {b"T": True, b"F": False, b"Z": None}


class UbjsonError(ValueError):
    """The bytes are not UBJSON this reader accepts; says where and why, in one line."""


def decode(data: bytes) -> Any:
    """The value that `data` holds, entirely (trailing bytes are refused)."""
    reader = _Reader(memoryview(data))
    value = reader.value(reader.marker(), 0)
    if reader.at != len(data):
        raise UbjsonError(f"{len(data) - reader.at} bytes follow the value")
    return value


class _Reader:
    def __init__(self, data: memoryview):
        self.data = data
        self.at = 0

    def take(self, size: int) -> memoryview:
        if size < 0 or size > len(self.data) - self.at:
            raise UbjsonError(f"at byte {self.at}: {size} bytes declared, "
                              f"{len(self.data) - self.at} remain")
        chunk = self.data[self.at:self.at + size]
        self.at += size
        return chunk

    def marker(self) -> bytes:
        return bytes(self.take(1))

    def number(self, marker: bytes) -> int | float:
        dtype = np.dtype(NUMBERS[marker])
        value = np.frombuffer(self.take(dtype.itemsize), dtype)[0]
        return float(value) if dtype.kind == "f" else int(value)

    def length(self) -> int:
        marker = self.marker()
        if marker not in NUMBERS or marker in (b"d", b"D"):
            raise UbjsonError(f"at byte {self.at - 1}: a length must be an integer, "
                              f"got marker {marker!r}")
        size = self.number(marker)
        if size < 0:
            raise UbjsonError(f"at byte {self.at}: a negative length ({size})")
        return size

    def string(self) -> str:
        size = self.length()
        try:
            return str(self.take(size), "utf-8")
        except UnicodeDecodeError:
            raise UbjsonError(f"at byte {self.at - size}: a string that is not UTF-8") from None

    def value(self, marker: bytes, depth: int) -> Any:
        if marker in NUMBERS:
            return self.number(marker)
        if marker in CONSTANTS:
            return CONSTANTS[marker]
        if marker == b"S":
            return self.string()
        if marker == b"C":
            return str(self.take(1), "latin-1")
        if depth >= MAX_DEPTH:
            raise UbjsonError(f"nested more than {MAX_DEPTH} deep")
        if marker == b"[":
            return self.array(depth + 1)
        if marker == b"{":
            return self.object(depth + 1)
        raise UbjsonError(f"at byte {self.at - 1}: unknown marker {marker!r}")

    def container_header(self) -> tuple[bytes | None, int | None]:
        """The optional `$type` and `#count` after `[` or `{`."""
        kind = count = None
        if bytes(self.data[self.at:self.at + 1]) == b"$":
            self.at += 1
            kind = self.marker()
            if bytes(self.data[self.at:self.at + 1]) != b"#":
                raise UbjsonError(f"at byte {self.at}: a typed container without a count")
        if bytes(self.data[self.at:self.at + 1]) == b"#":
            self.at += 1
            count = self.length()
            # every element takes at least one byte (a typed number its size): checked first
            least = np.dtype(NUMBERS[kind]).itemsize if kind in NUMBERS else \
                (0 if kind in CONSTANTS else 1)
            if count * least > len(self.data) - self.at:
                raise UbjsonError(f"at byte {self.at}: {count} elements declared, "
                                  f"{len(self.data) - self.at} bytes remain")
        return kind, count

    def array(self, depth: int) -> Any:
        kind, count = self.container_header()
        if kind in NUMBERS and count is not None:
            dtype = np.dtype(NUMBERS[kind])
            values = np.frombuffer(self.take(count * dtype.itemsize), dtype)
            return values.astype(dtype.newbyteorder("="))
        if kind in CONSTANTS and count is not None:
            if count > len(self.data):  # no bytes per element: bound it by the file instead
                raise UbjsonError(f"{count} constants declared in {len(self.data)} bytes")
            return [CONSTANTS[kind]] * count
        items = []
        while count is None or len(items) < count:
            marker = kind or self.marker()
            if count is None and marker == b"]":
                break
            items.append(self.value(marker, depth))
        return items

    def object(self, depth: int) -> dict:
        kind, count = self.container_header()
        items: dict[str, Any] = {}
        while count is None or len(items) < count:
            if count is None and bytes(self.data[self.at:self.at + 1]) == b"}":
                self.at += 1
                break
            key = self.string()
            if key in items:
                raise UbjsonError(f"at byte {self.at}: key {key[:40]!r} given twice")
            items[key] = self.value(kind or self.marker(), depth)
        return items

