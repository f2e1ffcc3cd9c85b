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

import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet

from tabserve.tables import DataError, csv_layout

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
# pyarrow's CSV blocks: larger ones kept the reading process at ~580 MB RSS with 6 MB blocks
# against ~175 MB with 1 MB (its allocator keeps what big blocks used); chunks gather them
CSV_BLOCK_BYTES = 1 << 20


class BatchError(ValueError):
    """A file or an option the scorer cannot use; the message says what and where."""


def file_format(path: Path, role: str) -> str:
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise BatchError(f"{path}: the {role} must end in .csv or .parquet") from None


@dataclass
class Chunk:
    rows: pa.Table        # the rows as read: text for a CSV, typed columns for Parquet
    first_row: int        # its first row's number in the file, 0-based, header excluded
    done: float           # the share of the file read so far, 0 to 1


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

    def chunks(self) -> Iterator[Chunk]:
        """The rows, in order; `BatchError` naming the place where the file stops being
        readable."""
        if self.format == "parquet":
            yield from self._parquet_chunks()
        else:
            yield from self._csv_chunks()

    def _parquet_chunks(self) -> Iterator[Chunk]:
        first, total = 0, max(self._parquet.metadata.num_rows, 1)
        try:
            for batch in self._parquet.iter_batches(batch_size=self.chunk_rows):
                yield Chunk(pa.Table.from_batches([batch]), first,
                            (first + batch.num_rows) / total)
                first += batch.num_rows
        except (pa.ArrowException, OSError) as err:
            raise BatchError(f"{self.path}: unreadable after row {first} ({err})") from None

    def _csv_chunks(self) -> Iterator[Chunk]:
        """pyarrow's CSV reader, every cell as text (about 3x pandas' C parser here), its
        blocks gathered into chunks of at least `chunk_rows` rows. Blank lines stay rows
        (rejected, missing every field), so that line numbers hold; quoted cells may hold line
        breaks."""
        size = max(self.path.stat().st_size, 1)
        first, gathered = 0, []
        with self.path.open("rb") as raw:
            try:  # the reader parses its first block as it opens
                reader = pyarrow.csv.open_csv(
                    raw,
                    read_options=pyarrow.csv.ReadOptions(
                        column_names=self.columns, skip_rows=1, block_size=CSV_BLOCK_BYTES),
                    parse_options=pyarrow.csv.ParseOptions(
                        delimiter=self.delimiter, ignore_empty_lines=False,
                        newlines_in_values=True),
                    convert_options=pyarrow.csv.ConvertOptions(
                        column_types={name: pa.string() for name in self.columns},
                        strings_can_be_null=False))
                for batch in reader:
                    gathered.append(batch)
                    if sum(b.num_rows for b in gathered) >= self.chunk_rows:
                        chunk = Chunk(pa.Table.from_batches(gathered), first,
                                      min(raw.tell() / size, 1.0))
                        yield chunk
                        first, gathered = first + chunk.rows.num_rows, []
                if gathered:
                    yield Chunk(pa.Table.from_batches(gathered), first, 1.0)
            except pa.ArrowInvalid as err:
                reason = " ".join(str(err).split())
                reason = reason if len(reason) <= 200 else reason[:197] + "..."
                raise BatchError(f"{self.path}: not a valid CSV after line {first + 1}: "
                                 f"{reason}") from None


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
