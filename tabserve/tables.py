"""What training, batch scoring and monitoring share about a table's file: its layout (the
delimiter, sniffed, and the header), its missing-value spellings, and reading it into a frame
of trimmed strings; `DataError` for files we cannot use. Below every wing that reads files,
so none of them imports another for it (and the image, which leaves training out, has it)."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from tabserve.model.schema import MISSING_TOKENS

_SNIFF_BYTES = 64 * 1024
CHUNK_ROWS = 100_000


class DataError(ValueError):
    """A data file we cannot use; the message says what is wrong and where."""


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sniff_delimiter(path: Path, head: str) -> str:
    header = head.splitlines()[0] if head else ""
    if "," in header:
        return ","
    try:
        return csv.Sniffer().sniff(header, delimiters=";\t|").delimiter
    except csv.Error:
        raise DataError(
            f"{path}: the header row has no comma or other delimiter; is this a CSV file?"
        ) from None


def _read_head(path: Path) -> str:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    with path.open("rb") as f:
        raw = f.read(_SNIFF_BYTES)
    if not raw.strip():
        raise DataError(f"{path}: the file is empty")
    if b"\x00" in raw:
        raise DataError(f"{path}: looks like a binary file, not a CSV (it contains NUL bytes)")
    try:
        # a multi-byte character may be cut at the end of the sniffed block
        return raw.decode("utf-8-sig", errors="strict" if len(raw) < _SNIFF_BYTES else "ignore")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path}: not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}); "
            "re-save the file as UTF-8"
        ) from None


def _sample(chunks, max_rows: int, seed: int) -> tuple[pd.DataFrame, int]:
    """A uniform random sample of at most `max_rows` rows from chunks of a frame, holding at
    most `max_rows` + one chunk in memory: each row gets a random key, the smallest keys stay."""
    rng = np.random.default_rng(seed)
    kept: pd.DataFrame | None = None
    total = 0
    for chunk in chunks:
        total += len(chunk)
        chunk = chunk.assign(_key=rng.random(len(chunk)))
        kept = chunk if kept is None else pd.concat([kept, chunk], ignore_index=True)
        if len(kept) > max_rows:
            kept = kept.nsmallest(max_rows, "_key")
    if kept is None:
        return pd.DataFrame(), 0
    return kept.sort_index().drop(columns="_key").reset_index(drop=True), total


def csv_layout(path: Path) -> tuple[str, list[str]]:
    """The delimiter and the column names of a CSV with a header row; `DataError` for a file
    that is missing, empty, binary, not UTF-8, or whose header is unusable."""
    head = _read_head(path)
    delimiter = _sniff_delimiter(path, head)
    header = next(csv.reader([head.splitlines()[0]], delimiter=delimiter))
    names = [name.strip() for name in header]
    duplicates = sorted(name for name, n in Counter(names).items() if n > 1)
    if duplicates:
        raise DataError(f"{path}: duplicate column names: {', '.join(duplicates)}")
    if any(name == "" for name in names):
        raise DataError(f"{path}: column {names.index('') + 1} of the header has no name")
    return delimiter, names


def load_csv(path: Path | str, max_rows: int | None = None, seed: int = 0) -> pd.DataFrame:
    """Read a CSV with a header row: every cell a trimmed string, missing cells NA.

    With `max_rows`, a larger file is read in chunks and a uniform random sample of that many
    rows is kept (`frame.attrs["rows_in_file"]` says how many there were), so memory stays
    bounded whatever the file's size.
    """
    path = Path(path)
    delimiter, names = csv_layout(path)
    options = dict(sep=delimiter, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                   skipinitialspace=True)
    try:
        if max_rows is None:
            frame = pd.read_csv(path, **options)
            rows_in_file = len(frame)
        else:
            frame, rows_in_file = _sample(
                pd.read_csv(path, chunksize=CHUNK_ROWS, **options), max_rows, seed)
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason} at offset {err.start}); "
                        "re-save the file as UTF-8") from None
    except (pd.errors.ParserError, ValueError) as err:
        raise DataError(f"{path}: not a valid CSV: {' '.join(str(err).split())}") from None
    if frame.empty:
        raise DataError(f"{path}: the file has a header row but no data rows")
    frame.columns = names
    for name in frame.columns:
        column = frame[name].str.strip()
        frame[name] = column.mask(column.isin(MISSING_TOKENS))
    frame.attrs["rows_in_file"] = rows_in_file
    return frame
