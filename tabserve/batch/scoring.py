"""Rows of text in, answers and rejects out: one chunk at a time, by the rules of the API.

Each cell is first turned into the value a JSON request would carry: a missing cell (the
spellings training reads as missing) is null, a numeric field's number is a number, and any
other text stays text. `model.validation` then checks the columns exactly as it checks a
request's, so a row is scored when `POST /predict` would answer it, with the same warnings,
and rejected, with every problem named, when the API would answer 422.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from tabserve.model.bundle import ModelBundle
from tabserve.model.schema import MISSING_TOKENS, Field, Kind
from tabserve.model.validation import Validated, validate_columns
from tabserve.serving.codecs.columns import answer_arrays, answer_columns
from tabserve.serving.core import Predictor


def _as_text(value):
    """A typed cell (Parquet, Spark) as a CSV would hold it: a categorical's level written as
    a number (a code, a year) then matches the text training read."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(value)
    if isinstance(value, (float, np.floating)):
        if value != value:  # NaN: a missing cell
            return None
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return value  # anything else goes to the validator as it is, to be named


def request_values(f: Field, cells: pd.Series) -> list:
    """A column of cells as a request's values: None for a missing cell, floats for a
    numeric field's numbers; other text stays text for the validator to accept or name."""
    if pd.api.types.is_string_dtype(cells.dtype) and not cells.dtype == object:
        text = cells  # text as a CSV holds it: trimmed in one vectorised pass
        stripped = cells.str.strip()
    else:  # typed cells (Parquet, Spark) or mixed objects, one at a time
        text = cells.astype("object").where(cells.notna(), None)
        if f.kind is not Kind.NUMERIC:
            text = text.map(_as_text)
        stripped = text.map(lambda v: v.strip() if isinstance(v, str) else v)
    missing = stripped.isna() | stripped.isin(MISSING_TOKENS)
    if f.kind is Kind.NUMERIC:
        numbers = pd.to_numeric(stripped.mask(missing), errors="coerce")
        values = np.array(numbers.to_numpy(dtype=object))  # a writable copy
        unread = (numbers.isna() & ~missing).to_numpy()
        values[unread] = stripped.to_numpy(dtype=object)[unread]
    else:  # as written: the validator trims levels and spellings, and quotes them as sent
        values = np.array(text.to_numpy(dtype=object, na_value=None))
    values[missing.to_numpy()] = None
    return values.tolist()


def _rows_by_code(codes: np.ndarray, wanted: set[int]) -> dict[int, list[int]]:
    """The rows holding each of the `wanted` codes (none, for a code no row has), in row
    order: one sort, not a scan per code, since a column of bad cells may have as many codes
    as rows."""
    order = np.argsort(codes, kind="stable")
    ends = np.searchsorted(codes[order], np.arange(max(wanted) + 2))
    return {code: order[ends[code]:ends[code + 1]].tolist() for code in wanted}


@dataclass
class ScoredChunk:
    """A chunk's outcome: `answers` for the rows that were scored (by their position in the
    chunk), and `problems` naming what is wrong with each rejected row."""

    scored: np.ndarray            # positions of the scored rows
    answers: dict[str, np.ndarray]
    rejected: np.ndarray          # positions of the rejected rows
    problems: list[str]           # one text per rejected row: every problem, "; "-joined
    numbers: dict[str, np.ndarray]  # each numeric field's numbers read, for the scored rows


class ChunkScorer:
    """A bundle made ready to score chunks of rows: `score(frame)` for a frame holding (at
    least) the schema's fields as columns of text (`predictor`: the bundle's, if made)."""

    def __init__(self, bundle: ModelBundle, predictor: Predictor | None = None):
        self.predictor = Predictor(bundle) if predictor is None else predictor
        self.schema = bundle.schema
        self.columns = answer_columns(self.predictor.shape)

    def score(self, frame: pd.DataFrame) -> ScoredChunk:
        validated = self.validate(frame)
        by_row: dict[int, list[str]] = {}
        for problem in validated.problems:
            by_row.setdefault(problem.index, []).append(f"{problem.field}: {problem.message}")
        rejected = np.array(sorted(by_row), dtype=np.intp)
        scored = np.setdiff1d(np.arange(len(frame)), rejected)
        columns = {name: column[scored] for name, column in validated.columns.items()}
        proba = self.predictor.probabilities(columns) if len(scored) else \
            np.empty((0, len(self.predictor.shape.classes)))
        position = {row: i for i, row in enumerate(scored.tolist())}  # row → among the scored
        warnings = {position[row]: messages for row, messages in validated.warnings.items()
                    if row in position}
        answers = answer_arrays(self.predictor.scored(proba, warnings))
        numbers = {f.name: columns[f.name] for f in self.schema.fields
                   if f.kind is Kind.NUMERIC}
        return ScoredChunk(scored, answers, rejected,
                           ["; ".join(by_row[i]) for i in rejected.tolist()], numbers)

    def validate(self, frame: pd.DataFrame) -> Validated:
        """The rows validated as a request's records are, field by field in the schema's
        order. Each field's distinct cells are validated once (a column holds far fewer
        distinct cells than rows: levels, spellings, repeated numbers) and the outcome, its
        problems and warnings included, is spread to the rows that hold each cell."""
        out = Validated(columns={})
        for f in self.schema.fields:
            codes, distinct = pd.factorize(frame[f.name])  # a missing cell: -1
            # text as read stays text (trimmed in one vectorised pass), typed cells objects
            values = request_values(f, pd.Series(distinct, dtype=None if isinstance(
                distinct.dtype, pd.StringDtype) else object))
            missing = codes < 0
            if missing.any():  # one more value, and its problem, only where a cell is missing
                values.append(None)
                codes = np.where(missing, len(values) - 1, codes)
            one = validate_columns(replace(self.schema, fields=(f,)), {f.name: values})
            out.columns[f.name] = one.columns[f.name][codes]
            marked = {p.index for p in one.problems} | set(one.warnings)
            rows = _rows_by_code(codes, marked) if marked else {}
            out.unseen += [(row, name, value) for code, name, value in one.unseen
                           for row in rows[code]]
            for problem in one.problems:
                out.problems += [replace(problem, index=row) for row in rows[problem.index]]
            for code, messages in one.warnings.items():
                for row in rows[code]:
                    out.warnings.setdefault(row, []).extend(messages)
        return out
