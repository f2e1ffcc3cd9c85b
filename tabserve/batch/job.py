"""`score.py`'s procedure: read a file in chunks, score them in worker processes (each loads
the bundle once), write answers and rejects in the input's order, report progress, and leave
complete files or none.

Memory stays bounded whatever the file's size: the parent holds at most two chunks per worker
in flight, and each worker one chunk and its answers.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tabserve.batch.columns import kept_name, missing_fields
from tabserve.batch.files import (BatchError, Chunk, CsvError, CsvSpan, InputFile, OutputFile,
                                  file_format, table_bytes)
from tabserve.model.schema import Kind, Schema
from tabserve.serving.codecs.columns import answer_types
from tabserve.serving.process import available_cpus, prepare_process
from tabserve.serving.shape import AnswerShape
from tabserve.settings import CHUNK_ROWS, environment, progress_seconds

if TYPE_CHECKING:  # the workers import it; the parent, which never loads the model, does not
    from tabserve.batch.scoring import ChunkScorer

ARROW_TYPES = {"string": pa.string(), "double": pa.float64(), "boolean": pa.bool_()}


@dataclass(frozen=True)
class Plan:
    """What every chunk needs, sent once to each worker."""

    model_path: Path
    keep: tuple[str, ...]              # input columns copied to the output
    kept_as: tuple[str, ...]           # their names there
    input_columns: tuple[str, ...]
    output_schema: pa.Schema
    rejects_schema: pa.Schema
    output_format: str
    row_column: str                    # "line" (CSV: line in the file) or "row" (Parquet)
    # kept columns of a CSV that are numeric fields: written as the numbers read (29.85, not
    # the text "29.85", which a CSV writer quotes)
    kept_numbers: tuple[str, ...] = ()


@dataclass
class Summary:
    rows: int = 0
    scored: int = 0
    rejected: int = 0
    seconds: float = 0.0

    @property
    def reject_rate(self) -> float:
        return self.rejected / self.rows if self.rows else 0.0


def plan(model_path: Path, schema: Schema, shape: AnswerShape, source: InputFile,
         output: Path, keep: list[str] | None) -> Plan:
    """The chunks' plan, from the model's schema and answer shape (a worker read them)."""
    problem = missing_fields(schema, source.columns, source.path)
    if problem:
        raise BatchError(problem)
    keep = list(source.columns) if keep is None else keep
    unknown = [name for name in keep if name not in source.columns]
    if unknown:
        raise BatchError(f"--keep names columns the input lacks: {', '.join(unknown)}")
    answers = answer_types(shape)
    numeric = {f.name for f in schema.fields if f.kind is Kind.NUMERIC}
    kept_as = [kept_name(name, list(answers)) for name in keep]
    types = source.arrow_types()
    kept_numbers = tuple(name for name in keep if source.format == "csv" and name in numeric)
    kept_types = {**types, **{name: pa.float64() for name in kept_numbers}}
    answer_fields = [pa.field(name, ARROW_TYPES[kind]) for name, kind in answers.items()]
    row_column = "line" if source.format == "csv" else "row"
    return Plan(
        model_path=model_path, keep=tuple(keep), kept_as=tuple(kept_as),
        input_columns=tuple(source.columns),
        output_schema=pa.schema([pa.field(new, kept_types[old])
                                 for old, new in zip(keep, kept_as)] + answer_fields),
        rejects_schema=pa.schema([pa.field(row_column, pa.int64()),
                                  pa.field("problems", pa.string())]
                                 + [pa.field(name, types[name]) for name in source.columns]),
        output_format=file_format(output, "output"), row_column=row_column,
        kept_numbers=kept_numbers)


# --- in each worker process ----------------------------------------------------------------

_scorer: ChunkScorer | None = None
_load_error: Exception | None = None  # why the model could not be loaded, told by `_model`


def _start_worker(model_path: Path) -> None:
    # a spawned process starts with glibc's defaults: its own freed memory kept for reuse
    prepare_process(environment())
    from tabserve.batch.scoring import ChunkScorer
    from tabserve.model.bundle import ModelLoadError, load_trusted
    from tabserve.model.fitted import ModelFileError

    global _scorer, _load_error
    try:
        _scorer = ChunkScorer(load_trusted(model_path))
    except ModelLoadError as err:  # one line for the parent to show
        _load_error = BatchError(str(err))
    except ModelFileError as err:
        _load_error = BatchError(f"model file {model_path} cannot be served: {err}")
    except Exception as err:  # kept for the parent: a failed initializer only breaks the pool
        _load_error = err


def _model() -> tuple[Schema, AnswerShape]:
    """The loaded model's schema and answer shape, for the parent's plan (so the parent never
    loads the model itself); its load error if it could not be loaded."""
    if _load_error is not None:
        raise _load_error
    return _scorer.schema, _scorer.predictor.shape


def _column(values, field: pa.Field) -> pa.Array:
    return pa.array(values, type=field.type, from_pandas=True)


def _input_columns(batch: pa.Table, names, rows: np.ndarray, schema: pa.Schema,
                   numbers: dict[str, np.ndarray] | None = None) -> list[pa.ChunkedArray]:
    """Input columns as read, for `rows` of the chunk, typed as `schema` says; those in
    `numbers` as the numbers read from them there."""
    every = len(rows) == batch.num_rows
    columns = []
    for name, field in zip(names, schema):
        if numbers and name in numbers:
            columns.append(_column(numbers[name], field))
            continue
        column = batch.column(name)
        column = column if every else column.take(pa.array(rows))
        columns.append(column.cast(field.type))
    return columns


def score_chunk(plan_: Plan, chunk: Chunk | CsvSpan,
                header: bool) -> tuple[bytes, pa.Table, int]:
    """One chunk's answers (in the output's format, with the header if asked), its rejects
    (their row numbers counted from the chunk's first row, 0), and how many rows it held."""
    _model()  # this worker's load error, if it had one
    batch = chunk.read()
    outcome = _scorer.score(batch.to_pandas())
    out = plan_.output_schema
    numbers = {name: outcome.numbers[name] for name in plan_.kept_numbers}
    columns = _input_columns(batch, plan_.keep, outcome.scored, out, numbers)
    columns += [_column(outcome.answers[name], out.field(name)) for name in _scorer.columns]
    answers = table_bytes(pa.Table.from_arrays(columns, schema=out), plan_.output_format, header)
    reject_schema = plan_.rejects_schema
    rejected = [pa.array(outcome.rejected, type=pa.int64()),
                pa.array(outcome.problems, type=pa.string())]
    rejected += _input_columns(batch, plan_.input_columns, outcome.rejected,
                               pa.schema(list(reject_schema)[2:]))
    return answers, pa.Table.from_arrays(rejected, schema=reject_schema), batch.num_rows


def numbered_rejects(plan_: Plan, rejects: pa.Table, first_row: int, header: bool) -> bytes:
    """A chunk's rejects as CSV, each named by its line in the input file (the header is line
    1) or its row (from 1), now that the rows before the chunk are counted."""
    offset = first_row + (2 if plan_.row_column == "line" else 1)
    rows = pc.add(rejects.column(0), pa.scalar(offset, pa.int64()))
    return table_bytes(rejects.set_column(0, plan_.row_column, rows), "csv", header)


# --- in the parent -------------------------------------------------------------------------

class Progress:
    """A line on stderr about every `every` seconds: rows, rows/s, share done, ETA."""

    def __init__(self, stream: TextIO | None, every: float | None = None):
        self.stream = stream
        self.every = progress_seconds(environment()) if every is None else every
        self.started = self.shown = time.perf_counter()

    def update(self, rows: int, done: float) -> None:
        now = time.perf_counter()
        if self.stream is None or now - self.shown < self.every:
            return
        self.shown = now
        rate = rows / (now - self.started)
        eta = (now - self.started) * (1 - done) / done if done > 0 else float("nan")
        print(f"score: {rows:,} rows, {rate:,.0f} rows/s, {done:.0%} of the file, "
              f"about {eta:.0f} s left", file=self.stream, flush=True)


def score_file(model_path: Path, input_path: Path, output_path: Path,
               rejects_path: Path | None = None, keep: list[str] | None = None,
               max_reject_rate: float | None = None, workers: int | None = None,
               chunk_rows: int = CHUNK_ROWS, progress: TextIO | None = sys.stderr) -> Summary:
    """Score every row of `input_path` into `output_path`, rows that fail validation into
    `rejects_path` (default: `<output stem>.rejects.csv` beside it). `BatchError` (and no
    output left) for an unusable file or option, or past `max_reject_rate`."""
    started = time.perf_counter()
    source = InputFile(input_path, chunk_rows)
    file_format(output_path, "output")
    rejects_path = rejects_path or output_path.with_name(f"{output_path.stem}.rejects.csv")
    if file_format(rejects_path, "rejects file") != "csv":
        raise BatchError(f"{rejects_path}: the rejects file is a CSV; name it .csv")
    workers = workers or available_cpus()
    # spawned, not forked: a fork of this process, whose libraries run thread pools, can
    # deadlock in the child (OpenMP's locks); the workers inherit the environment
    # `prepare_process` set (one thread per pool) and call it for what is not inherited
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_start_worker, initargs=(model_path,)) as pool:
        for _ in range(workers):  # started at once: they all load the model meanwhile
            pool.submit(int)
        # a worker that loaded the model tells its schema and answer shape
        schema, shape = pool.submit(_model).result()
        plan_ = plan(model_path, schema, shape, source, output_path, keep)
        output, rejects = OutputFile(output_path), OutputFile(rejects_path)
        try:
            summary = _score_chunks(pool, workers, plan_, source, output, rejects,
                                    Progress(progress))
            if summary.rows == 0:
                raise BatchError(f"{input_path}: the file has no rows to score")
            summary.seconds = time.perf_counter() - started
            rejects.commit()
            if max_reject_rate is not None and summary.reject_rate > max_reject_rate:
                raise BatchError(
                    f"{summary.rejected:,} of {summary.rows:,} rows rejected "
                    f"({summary.reject_rate:.2%}), more than --max-reject-rate "
                    f"{max_reject_rate:.2%}: no output written; the rejects are in "
                    f"{rejects_path}")
            output.commit()
        except BaseException:
            output.discard()
            rejects.discard()
            raise
    return summary


def _score_chunks(pool: ProcessPoolExecutor, workers: int, plan_: Plan, source: InputFile,
                  output: OutputFile, rejects: OutputFile, shown: Progress) -> Summary:
    """Every chunk through the workers, at most two per worker in flight, written in the
    input's order as each oldest one is done."""
    summary = Summary()
    pending: deque = deque()

    def write_oldest() -> None:
        future, done, header = pending.popleft()
        try:
            answers, rejected, rows = future.result()
        except CsvError as err:
            raise _not_csv(source, summary, err) from None
        output.append(answers)
        rejects.append(numbered_rejects(plan_, rejected, summary.rows, header))
        summary.rejected += rejected.num_rows
        summary.scored += rows - rejected.num_rows
        summary.rows += rows
        shown.update(summary.rows, done)

    chunks = source.chunks()
    try:
        for number, chunk in enumerate(chunks):
            pending.append((pool.submit(score_chunk, plan_, chunk, number == 0), chunk.done,
                            number == 0))
            if len(pending) >= 2 * workers:
                write_oldest()
    except CsvError as err:  # the parent's own parsing: the rows before it are written first
        while pending:
            write_oldest()
        raise _not_csv(source, summary, err) from None
    while pending:
        write_oldest()
    return summary


def _not_csv(source: InputFile, summary: Summary, err: CsvError) -> BatchError:
    return BatchError(f"{source.path}: not a valid CSV after line {summary.rows + 1}: {err}")
