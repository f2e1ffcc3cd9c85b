"""A small CSV held in memory, scored: the service's file door (POST /score, the page's
"score a file"). Its body limit and MAX_BATCH_RECORDS bound it; score.py scores files of any
size.

The rows are read as score.py reads them (every cell as text, blank lines kept and rejected,
so that line numbers hold) and validated by `scoring.ChunkScorer`. pandas is imported on the
door's first use only: no other request of the service touches it. (pyarrow, score.py's
reader, is not in the image; pandas is.) What is wrong with a file is a `RequestError` with
its HTTP status, as a request's problems are.
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
    try:  # the first record, which a quoted name with a line break may carry over lines
        first = next(csv.reader(io.StringIO(text, newline="")), [])
    except csv.Error as err:
        raise _refused(f"the file's header row cannot be read as CSV: {err}", 400,
                       "Bad Request") from None
    if not first or not any(name.strip() for name in first):
        raise _refused("the file has no header row: its first line must name the columns",
                       400, "Bad Request")
    return first


def score_file(scorer, body: bytes, max_rows: int) -> ScoredFile:
    """`body` (CSV, UTF-8, comma-separated, a header row) scored by `scorer`
    (a `batch.scoring.ChunkScorer`); a `RequestError` naming what is wrong with the file."""
    import pandas as pd

    from tabserve.batch.columns import kept_name, missing_fields

    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _refused("the file is not UTF-8 text", 400, "Bad Request") from None
    columns = header_of(text)
    if len(set(columns)) != len(columns):
        raise _refused("the file names a column twice: " + ", ".join(
            sorted({c for c in columns if columns.count(c) > 1})))
    problem = missing_fields(scorer.schema, columns, "the file")
    if problem:
        raise _refused(problem)
    try:  # every cell as text, as score.py reads it; a blank line is a row (rejected)
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False,
                            skip_blank_lines=False, na_filter=False)
    except (pd.errors.ParserError, ValueError, csv.Error) as err:
        reason = " ".join(str(err).split())[:200]
        raise _refused(f"the file cannot be read as CSV: {reason}", 400, "Bad Request") from None
    if len(frame) > max_rows:
        raise _refused(f"the file has {len(frame)} rows; this door scores at most "
                       f"{max_rows} (MAX_BATCH_RECORDS): score larger files with score.py",
                       413, "Content Too Large")
    outcome = scorer.score(frame)
    answers = scorer.columns
    scored = frame.iloc[outcome.scored].reset_index(drop=True)
    scored.columns = [kept_name(name, answers) for name in columns]
    scored = pd.concat([scored, pd.DataFrame(outcome.answers, columns=answers)], axis=1)
    rejected = frame.iloc[outcome.rejected].reset_index(drop=True)
    rejected.insert(0, "problems", outcome.problems)
    rejected.insert(0, "line", outcome.rejected + 2)  # the header is line 1
    return ScoredFile(len(frame), len(outcome.scored), len(outcome.rejected),
                      scored.to_csv(index=False), rejected.to_csv(index=False))
