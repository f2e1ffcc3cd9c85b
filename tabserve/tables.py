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
# a file this large is sampled as pyarrow streams it (smaller ones are read whole by pandas)
SAMPLE_FROM_BYTES = 64 << 20
SAMPLE_BLOCK_BYTES = 4 << 20  # pyarrow's CSV blocks when sampling


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


def _batches(path: Path, open_reader):
    """The record batches of a pyarrow CSV reader; `DataError` in one line where the file
    stops being a valid CSV (or UTF-8)."""
    import pyarrow as pa

    try:
        yield from open_reader()
    except pa.ArrowInvalid as err:
        reason = " ".join(str(err).split())
        reason = reason if len(reason) <= 200 else reason[:197] + "..."
        if "UTF8" in reason:
            raise DataError(f"{path}: not UTF-8 text ({reason}); re-save the file as UTF-8") \
                from None
        raise DataError(f"{path}: not a valid CSV: {reason}") from None


def _sample_frame(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """A uniform random sample of `max_rows` rows of a frame, in its order: the rows given
    the smallest of one random key each (the keys `_sample_csv` draws, in the same order)."""
    keys = np.random.default_rng(seed).random(len(frame))
    chosen = np.sort(np.argpartition(keys, max_rows - 1)[:max_rows])
    return frame.iloc[chosen].reset_index(drop=True)


def _sample_csv(path: Path, delimiter: str, names: list[str], max_rows: int,
                seed: int) -> tuple[pd.DataFrame, int]:
    """A uniform random sample of at most `max_rows` rows of a CSV, in the file's order, and
    the file's row count. Read with pyarrow's streaming reader (every cell as text, as
    `score.py` reads), each row given a random key; only rows whose key may still be among the
    `max_rows` smallest are kept, and the kept ones are cut back to the smallest whenever they
    pass twice that, so memory holds about two samples whatever the file's size."""
    import pyarrow as pa
    import pyarrow.csv

    rng = np.random.default_rng(seed)
    reader = _batches(path, lambda: pyarrow.csv.open_csv(
        path,
        read_options=pyarrow.csv.ReadOptions(column_names=names, skip_rows=1,
                                             block_size=SAMPLE_BLOCK_BYTES),
        parse_options=pyarrow.csv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
        convert_options=pyarrow.csv.ConvertOptions(
            column_types={name: pa.string() for name in names}, strings_can_be_null=False,
            quoted_strings_can_be_null=False)))
    kept: list[pa.Table] = []
    keys: list[np.ndarray] = []
    positions: list[np.ndarray] = []
    total, held, threshold = 0, 0, 1.0

    def cut_back() -> float:
        """Keep the `max_rows` smallest keys; the largest kept key is the new threshold."""
        nonlocal kept, keys, positions, held
        all_keys = np.concatenate(keys)
        if len(all_keys) <= max_rows:
            return 1.0
        limit = np.partition(all_keys, max_rows - 1)[max_rows - 1]
        chosen = all_keys <= limit
        kept = [pa.concat_tables(kept).filter(pa.array(chosen))]
        keys, positions = [all_keys[chosen]], [np.concatenate(positions)[chosen]]
        held = len(keys[0])
        return float(limit)

    for batch in reader:
        n = batch.num_rows
        batch_keys = rng.random(n)
        wanted = batch_keys <= threshold
        if wanted.any():
            kept.append(pa.Table.from_batches([batch]).filter(pa.array(wanted)))
            keys.append(batch_keys[wanted])
            positions.append(np.arange(total, total + n)[wanted])
            held += int(wanted.sum())
        total += n
        if held > 2 * max_rows:
            threshold = cut_back()
    if not kept:
        return pd.DataFrame(columns=names), total
    cut_back()
    table = pa.concat_tables(kept).take(pa.array(np.argsort(np.concatenate(positions))))
    frame = pd.DataFrame({name: table.column(name).to_numpy(zero_copy_only=False).astype(object)
                          for name in names}).astype(str)
    return frame, total


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
        if max_rows is None or path.stat().st_size < SAMPLE_FROM_BYTES:
            frame = pd.read_csv(path, **options)
            rows_in_file = len(frame)
            if max_rows is not None and rows_in_file > max_rows:
                frame = _sample_frame(frame, max_rows, seed)
        else:
            frame, rows_in_file = _sample_csv(path, delimiter, names, max_rows, seed)
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
