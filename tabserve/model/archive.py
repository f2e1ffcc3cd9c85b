"""The bundle's payload: a ZIP archive of data only, read as hostile input.

Members are stored, not compressed (no inflation bombs: a member's size is its size in the
file). `bundle.json` holds everything but the large numbers; arrays are `.npy` files (read
here without pickle, from an allow-list of plain dtypes, their shape checked against their
bytes before anything is allocated); other members (`model.fitted.Blob`) are bytes that their
own reader parses. A missing or extra member, a wrong CRC, a size beyond the file: one line.
"""

from __future__ import annotations

import io
import math
import zipfile

import numpy as np

DOCUMENT = "bundle.json"
MAX_MEMBERS = 10_000
# plain numbers only: no objects, no structured or void types, little-endian
ARRAY_DTYPES = frozenset({"<f8", "<f4", "<i8", "<i4", "|u1", "|b1"})
MAX_NPY_HEADER = 1024


class ArchiveError(ValueError):
    """The payload is not a well-formed archive of the bundle's members; says why."""


def write(document: bytes, members: dict[str, bytes]) -> bytes:
    """The archive's bytes: `bundle.json` first, then the members in the given order, with
    fixed timestamps so the same bundle gives the same bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name, data in {DOCUMENT: document, **members}.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2000, 1, 1, 0, 0, 0)), data)
    return out.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    """An array as a `.npy` file (format 1.0, C order, no pickle)."""
    out = io.BytesIO()
    np.lib.format.write_array(out, np.ascontiguousarray(array), version=(1, 0),
                              allow_pickle=False)
    return out.getvalue()


class Archive:
    """The members of a payload, checked when opened and read once each."""

    def __init__(self, payload: bytes):
        try:
            archive = zipfile.ZipFile(io.BytesIO(payload))
            infos = archive.infolist()
        except (zipfile.BadZipFile, ValueError, OSError) as err:
            raise ArchiveError(f"its payload is not a readable archive ({err})") from None
        if len(infos) > MAX_MEMBERS:
            raise ArchiveError(f"its payload has {len(infos)} members (at most {MAX_MEMBERS})")
        names = [info.filename for info in infos]
        if len(set(names)) != len(names):
            raise ArchiveError("its payload names a member twice")
        for info in infos:
            if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size \
                    or info.file_size > len(payload):
                raise ArchiveError(f"member {info.filename!r} is compressed or larger than the "
                                   f"file")
        if DOCUMENT not in names:
            raise ArchiveError(f"its payload has no {DOCUMENT}")
        self._archive = archive
        self._unread = set(names)

    def read(self, name: str) -> bytes:
        """A member's bytes; each member is read once (a name used twice is refused)."""
        if name not in self._unread:
            raise ArchiveError(f"member {name!r} is missing or named twice")
        self._unread.discard(name)
        try:
            return self._archive.read(name)
        except (zipfile.BadZipFile, ValueError, OSError) as err:
            raise ArchiveError(f"member {name!r} cannot be read ({err})") from None

    def array(self, name: str) -> np.ndarray:
        """A `.npy` member as a read-only array."""
        return npy_array(self.read(name), name)

    def unread(self) -> list[str]:
        """Members nothing has read: an archive of more than its document names is refused."""
        return sorted(self._unread)


def npy_array(data: bytes, name: str) -> np.ndarray:
    """A `.npy` file's array, without pickle: its dtype from `ARRAY_DTYPES`, and exactly as
    many bytes as its shape needs (checked before reading, so a claimed shape cannot make it
    allocate more than the file holds)."""
    stream = io.BytesIO(data)
    try:
        if np.lib.format.read_magic(stream) != (1, 0):
            raise ValueError("not a format 1.0 .npy file")
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(
            stream, max_header_size=MAX_NPY_HEADER)
    except Exception as err:  # noqa: BLE001 - numpy parses the (short) header as a literal
        raise ArchiveError(f"member {name!r} is not a plain .npy array "
                           f"({str(err).splitlines()[0] if str(err) else type(err).__name__})"
                           ) from None
    if dtype.str not in ARRAY_DTYPES or fortran:
        raise ArchiveError(f"member {name!r} holds {dtype.str} values in "
                           f"{'Fortran' if fortran else 'C'} order; arrays must be C-ordered "
                           f"{', '.join(sorted(ARRAY_DTYPES))}")
    count = math.prod(shape)
    offset = stream.tell()
    if count * dtype.itemsize != len(data) - offset:
        raise ArchiveError(f"member {name!r} claims shape {shape} of {dtype.str} "
                           f"({count * dtype.itemsize} bytes) and holds {len(data) - offset}")
    return np.frombuffer(data, dtype, count, offset).reshape(shape)
