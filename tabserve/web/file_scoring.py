"""POST /score: a small CSV file in, its scored rows and its rejects out, as score.py writes
them (the page's "score a file"). The body limit and MAX_BATCH_RECORDS bound it; score.py
scores files of any size.

The rows are read and validated by the batch wing, as score.py reads them: every cell as
text, blank lines kept (rejected) so that line numbers hold. That wing uses pandas and
pyarrow, imported on this door's first use only: no other request touches them.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from tabserve.model.validation import Problem, RequestError

CSV_TYPES = ("text/csv", "application/csv", "text/plain")


@dataclass
class ScoredFile:
    rows: int
    scored: int
    rejected: int
    scored_csv: str   # the scored rows: the input's columns, then the answer columns
    rejects_csv: str  # the rejected rows: their line, the problems, the input's columns


def _refused(message: str, status: int = 422, title: str | None = None) -> RequestError:
    return RequestError([Problem(None, message)], status=status, title=title)


def header_of(text: str) -> list[str]:
    """The file's column names, from its first line."""
    first = next(csv.reader(io.StringIO(text.partition("\n")[0])), [])
    if not first or not any(name.strip() for name in first):
        raise _refused("the file has no header row: its first line must name the columns",
                       400, "Bad Request")
    return first


def score_file(scorer, body: bytes, max_rows: int) -> ScoredFile:
    """`body` (CSV, UTF-8, comma-separated, a header row) scored by `scorer`
    (a `batch.scoring.ChunkScorer`); a `RequestError` naming what is wrong with the file."""
    import pyarrow as pa
    import pyarrow.csv

    from tabserve.batch.files import csv_options, table_bytes
    from tabserve.batch.job import kept_name, missing_fields

    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _refused("the file is not UTF-8 text", 400, "Bad Request") from None
    columns = header_of(text)
    problem = missing_fields(scorer.schema, columns, "the file")
    if problem:
        raise _refused(str(problem))
    if len(set(columns)) != len(columns):
        raise _refused("the file names a column twice: " + ", ".join(
            sorted({c for c in columns if columns.count(c) > 1})))
    try:
        table = pyarrow.csv.read_csv(io.BytesIO(text.encode()), **csv_options(columns, ",", 1))
    except (pa.ArrowInvalid, ValueError) as err:
        reason = " ".join(str(err).split())[:200]
        raise _refused(f"the file cannot be read as CSV: {reason}", 400, "Bad Request") from None
    if table.num_rows > max_rows:
        raise _refused(f"the file has {table.num_rows} rows; this door scores at most "
                       f"{max_rows} (MAX_BATCH_RECORDS): score larger files with score.py",
                       413, "Content Too Large")
    outcome = scorer.score(table.to_pandas())
    answers = scorer.columns
    scored = pa.Table.from_arrays(
        [table.column(name).take(pa.array(outcome.scored)) for name in columns]
        + [pa.array(outcome.answers[name]) for name in answers],
        names=[kept_name(name, answers) for name in columns] + answers)
    rejected = pa.Table.from_arrays(
        [pa.array(outcome.rejected + 2, type=pa.int64()),  # the header is line 1
         pa.array(outcome.problems, type=pa.string())]
        + [table.column(name).take(pa.array(outcome.rejected)) for name in columns],
        names=["line", "problems", *columns])
    return ScoredFile(table.num_rows, len(outcome.scored), len(outcome.rejected),
                      table_bytes(scored, "csv", True).decode(),
                      table_bytes(rejected, "csv", True).decode())
