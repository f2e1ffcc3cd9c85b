"""Input and output files of the batch scorer, CSV or Parquet by extension: chunks of rows in,
and each chunk's results as bytes to append, so that worker processes can format them and the
parent only writes. Outputs are written to a temporary file beside the target and renamed
into place when complete: a failed run leaves no half-written file."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet

from tabserve.tables import DataError, csv_layout

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
# pyarrow's CSV blocks: larger ones kept the reading process at ~580 MB RSS with 6 MB blocks
# against ~175 MB with 1 MB (its allocator keeps what big blocks used); chunks gather them
CSV_BLOCK_BYTES = 1 << 20
LONGEST_SPAN = 64  # spans a record may run over before the parent parses the rest itself


class BatchError(ValueError):
    """A file or an option the scorer cannot use; the message says what and where."""


def file_format(path: Path, role: str) -> str:
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise BatchError(f"{path}: the {role} must end in .csv or .parquet") from None


@dataclass
class Chunk:
    """Rows for a worker, as the parent read them (Parquet, or a CSV it had to parse)."""

    rows: pa.Table        # text for a CSV, typed columns for Parquet
    done: float           # the share of the file read so far, 0 to 1

    def read(self) -> pa.Table:
        return self.rows


@dataclass(frozen=True)
class CsvSpan:
    """Whole records of a CSV, bytes `start` to `stop`, that the worker reads and parses
    itself: the parent only finds where records end."""

    path: Path
    start: int
    stop: int
    columns: tuple[str, ...]
    delimiter: str
    done: float

    def read(self) -> pa.Table:
        """The span's rows as text; `CsvError` with pyarrow's reason if they are not CSV."""
        with self.path.open("rb") as raw:
            raw.seek(self.start)
            data = raw.read(self.stop - self.start)
        try:
            return pyarrow.csv.read_csv(pa.py_buffer(data),
                                        **csv_options(self.columns, self.delimiter, 0))
        except pa.ArrowInvalid as err:
            raise CsvError(_reason(err)) from None


class CsvError(ValueError):
    """Bytes of a CSV that pyarrow cannot read as records; the parent says where."""


def _reason(err: Exception) -> str:
    reason = " ".join(str(err).split())
    return reason if len(reason) <= 200 else reason[:197] + "..."


def csv_options(columns, delimiter: str, skip_rows: int) -> dict:
    """pyarrow's options for every reading of a CSV here: every cell as text (about 3x
    pandas' C parser), blank lines kept as rows (rejected, missing every field) so that line
    numbers hold, quoted cells that may hold line breaks."""
    return dict(
        read_options=pyarrow.csv.ReadOptions(column_names=list(columns), skip_rows=skip_rows,
                                             block_size=CSV_BLOCK_BYTES, use_threads=False),
        parse_options=pyarrow.csv.ParseOptions(delimiter=delimiter, ignore_empty_lines=False,
                                               newlines_in_values=True),
        convert_options=pyarrow.csv.ConvertOptions(
            column_types={name: pa.string() for name in columns}, strings_can_be_null=False))


class Quoting:
    """Where a CSV's records end, found without parsing it: a line break ends a record when
    the quotes before it are even in number. That holds while every quote that opens a
    quoted cell starts the cell (after a delimiter, a line break or the quote closing the
    cell's previous part: `""` inside a cell is one quote); `scan` says None for a quote
    anywhere else (a literal `"` inside an unquoted cell), which only a parser reads right."""

    def __init__(self, delimiter: str):
        self.allowed_before = np.array([ord(delimiter), ord("\n"), ord("\r"), ord('"')],
                                       np.uint8)
        self.inside = False       # the bytes scanned so far end inside a quoted cell
        self.before = ord("\n")  # their last byte

    def scan(self, block: bytes) -> int | None:
        """Where the block's last record ends (the offset past its line break; 0 if no
        record ends in it), or None if its quotes cannot be followed without a parser."""
        if b'"' not in block:  # the usual case: nothing to count
            end = 0 if self.inside else block.rfind(b"\n") + 1
        else:
            data = np.frombuffer(block, np.uint8)
            quotes = np.flatnonzero(data == ord('"'))
            opening = quotes[(np.arange(len(quotes)) % 2 == 1) == self.inside]
            before = data[np.maximum(opening - 1, 0)]
            if len(opening) and opening[0] == 0:
                before[0] = self.before
            if not np.isin(before, self.allowed_before).all():
                return None
            breaks = np.flatnonzero(data == ord("\n"))
            outside = (np.searchsorted(quotes, breaks) % 2 == 1) == self.inside
            end = int(breaks[outside][-1]) + 1 if outside.any() else 0
            self.inside ^= len(quotes) % 2 == 1
        if block:
            self.before = block[-1]
        return end


class InputFile:
    """A file to score: its column names, then its rows in chunks of about `chunk_rows`."""

    def __init__(self, path: Path, chunk_rows: int):
        self.path, self.chunk_rows = path, chunk_rows
        self.format = file_format(path, "input")
        if self.format == "csv":
            try:
                self.delimiter, self.columns = csv_layout(path)
            except DataError as err:
                raise BatchError(str(err)) from None
        else:
            if not path.is_file():
                raise BatchError(f"{path}: file not found")
            try:
                self._parquet = pyarrow.parquet.ParquetFile(path)
            except (pa.ArrowException, OSError) as err:
                raise BatchError(f"{path}: not a readable Parquet file ({err})") from None
            self.columns = self._parquet.schema_arrow.names

    def arrow_types(self) -> dict[str, pa.DataType]:
        """Each column's type: text for a CSV, as stored for Parquet."""
        if self.format == "csv":
            return {name: pa.string() for name in self.columns}
        arrow = self._parquet.schema_arrow
        return {name: arrow.field(name).type for name in self.columns}

    def chunks(self) -> Iterator[Chunk | CsvSpan]:
        """The rows, in order, as chunks to `read`; `BatchError` naming the place where a
        Parquet file stops being readable, `CsvError` where the parent could not parse a
        CSV."""
        if self.format == "parquet":
            yield from self._parquet_chunks()
        else:
            yield from self._csv_spans()

    def _parquet_chunks(self) -> Iterator[Chunk]:
        first, total = 0, max(self._parquet.metadata.num_rows, 1)
        try:
            for batch in self._parquet.iter_batches(batch_size=self.chunk_rows):
                yield Chunk(pa.Table.from_batches([batch]), (first + batch.num_rows) / total)
                first += batch.num_rows
        except (pa.ArrowException, OSError) as err:
            raise BatchError(f"{self.path}: unreadable after row {first} ({err})") from None

    def _csv_spans(self) -> Iterator[Chunk | CsvSpan]:
        """Spans of about `chunk_rows` records for the workers to read and parse; from where
        the quoting cannot be followed by counting (`Quoting`), or past a record longer than
        `LONGEST_SPAN` spans, the parent parses the rest itself."""
        size = max(self.path.stat().st_size, 1)
        with self.path.open("rb") as raw:
            start = _data_start(raw.read(CSV_BLOCK_BYTES))
            if start is None:  # lines end in a bare carriage return, or the header's quotes
                yield from self._parsed_chunks(0, size)  # run on: pyarrow's reading alone
                return
            raw.seek(start)
            sample = raw.read(CSV_BLOCK_BYTES)
            span_bytes = max(1, round(self.chunk_rows * len(sample)
                                      / max(sample.count(b"\n"), 1)))
            quoting, offset = Quoting(self.delimiter), start
            raw.seek(start)
            while block := raw.read(span_bytes):
                end = quoting.scan(block)
                if end is None or not end and offset - start > LONGEST_SPAN * span_bytes:
                    yield from self._parsed_chunks(start, size)
                    return
                if end:
                    yield CsvSpan(self.path, start, offset + end, tuple(self.columns),
                                  self.delimiter, (offset + end) / size)
                    start = offset + end
                offset += len(block)
            if start < offset:  # the last record, without a line break
                yield CsvSpan(self.path, start, offset, tuple(self.columns), self.delimiter, 1.0)

    def _parsed_chunks(self, start: int, size: int) -> Iterator[Chunk]:
        """The records from byte `start` (0: the header's) on, parsed here by pyarrow's
        streaming reader, its blocks gathered into chunks of at least `chunk_rows` rows."""
        gathered = []
        with self.path.open("rb") as raw:
            raw.seek(start)
            try:  # the reader parses its first block as it opens
                reader = pyarrow.csv.open_csv(
                    raw, **csv_options(self.columns, self.delimiter, 0 if start else 1))
                for batch in reader:
                    gathered.append(batch)
                    if sum(b.num_rows for b in gathered) >= self.chunk_rows:
                        yield Chunk(pa.Table.from_batches(gathered), min(raw.tell() / size, 1))
                        gathered = []
                if gathered:
                    yield Chunk(pa.Table.from_batches(gathered), 1.0)
            except pa.ArrowInvalid as err:
                raise CsvError(_reason(err)) from None


def _data_start(head: bytes) -> int | None:
    """Where the records start: past the header's line break (as `csv_layout` reads the
    header: its first line); None when that break is a bare carriage return or the header
    holds an odd number of quotes."""
    end = head.find(b"\n")
    if end < 0 or b"\r" in head[:end].rstrip(b"\r") or head.count(b'"', 0, end) % 2:
        return None
    return end + 1


def table_bytes(table: pa.Table, file_format_: str, header: bool) -> bytes:
    """A chunk's rows, ready to append to an output: CSV text (with the header row for the
    first chunk), or an Arrow IPC stream that `OutputFile` writes as a Parquet row group."""
    sink = io.BytesIO()
    if file_format_ == "csv":
        pyarrow.csv.write_csv(table, sink, pyarrow.csv.WriteOptions(include_header=header))
    else:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    return sink.getvalue()


class OutputFile:
    """An output written to a temporary file beside `path`, renamed into place by `commit`,
    removed by `discard`."""

    def __init__(self, path: Path):
        self.path = path
        self.format = file_format(path, "output")
        if not path.parent.is_dir():
            raise BatchError(f"{path}: the folder {path.parent} does not exist")
        self.temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
        try:
            self._file = self.temporary.open("wb")
        except OSError as err:
            raise BatchError(f"{path}: cannot be written ({err.strerror})") from None
        self._parquet: pyarrow.parquet.ParquetWriter | None = None

    def append(self, data: bytes) -> None:
        if self.format == "csv":
            self._file.write(data)
            return
        table = pa.ipc.open_stream(data).read_all()
        if self._parquet is None:
            self._parquet = pyarrow.parquet.ParquetWriter(self._file, table.schema)
        self._parquet.write_table(table)

    def commit(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        self._file.close()
        os.replace(self.temporary, self.path)

    def discard(self) -> None:
        self._file.close()
        self.temporary.unlink(missing_ok=True)
