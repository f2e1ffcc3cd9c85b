"""Score a Spark DataFrame with a bundle, on the executors, as the service answers each row:

    from tabserve.spark import predict
    scored = predict(customers, "model.bin")

The result is the DataFrame with the answer's columns added, named as in `score.py`'s output,
and `error`: null for a scored row; for a row the API would refuse, every problem, with null
answers (a bad row never fails the job). The bundle is shipped to the executors once
(`SparkContext.addFile`, under a name made of its content's digest, so that two models both
called model.bin are two files) and loaded once per executor Python process, not per batch. Rows
travel as Arrow batches to pandas (`mapInPandas`); see docs/batch.md for what pandas 3 means
there.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from tabserve.batch.columns import kept_name
from tabserve.batch.scoring import ChunkScorer
from tabserve.model.bundle import load_trusted
from tabserve.serving.codecs.columns import answer_types
from tabserve.serving.core import AnswerShape

ERROR_COLUMN = "error"
_loaded: dict[str, ChunkScorer] = {}  # per executor process: bundle path → scorer


def _scorer(path: str) -> ChunkScorer:
    scorer = _loaded.get(path)
    if scorer is None:
        scorer = _loaded[path] = ChunkScorer(load_trusted(path))
    return scorer


class SparkSetupError(RuntimeError):
    """A Spark whose Python workers could not run the scoring; the message says what to set."""


def check_local_workers(spark_context) -> None:
    """A local Spark starts its Python workers with `PYSPARK_PYTHON` (`python3` from PATH when
    unset), not with the Python that runs the driver: without pandas and pyarrow there, the
    job would fail deep in a Java stack trace. A cluster's workers cannot be checked from
    here (docs/batch.md says how to ship a virtualenv)."""
    if not spark_context.master.startswith("local"):
        return
    python = spark_context.pythonExec
    try:
        done = subprocess.run([python, "-c", "import pandas, pyarrow"], capture_output=True,
                              timeout=120)
        works = done.returncode == 0
    except OSError:
        works = False
    if not works:
        raise SparkSetupError(
            f"Spark's Python workers run {python!r}, which cannot import pandas and pyarrow: "
            f"set PYSPARK_PYTHON={sys.executable} before the SparkSession is created")


def predict(df, model_path: str | Path):
    """`df` with the answer's columns and `error` added; the input's columns keep their
    names, unless an answer column has it (the target), then `<name>_input`."""
    from pyspark import SparkFiles
    from pyspark.sql.types import StructField, StructType, _parse_datatype_string

    check_local_workers(df.sparkSession.sparkContext)
    path = str(Path(model_path).resolve())
    # loaded here too (no scorer compiled): a bad file fails at once, on the driver, and
    # the answer's shape names the columns
    bundle = load_trusted(path)
    answers = answer_types(AnswerShape.of(bundle))
    missing = [name for name in bundle.schema.names if name not in df.columns]
    if missing:
        raise ValueError(f"the DataFrame lacks columns the model needs: {', '.join(missing)}")
    renamed = {name: kept_name(name, [*answers, ERROR_COLUMN]) for name in df.columns}
    inputs = df.select([df[name].alias(new) for name, new in renamed.items()])
    fields = [*inputs.schema.fields] + [
        StructField(name, _parse_datatype_string(kind), True) for name, kind in answers.items()]
    schema = StructType(fields + [StructField(ERROR_COLUMN, _parse_datatype_string("string"),
                                              True)])
    shipped = shipped_file(Path(path))
    df.sparkSession.sparkContext.addFile(str(shipped))
    shipped = shipped.name
    originals = {new: name for name, new in renamed.items()}

    def score_batches(frames):
        scorer = _scorer(SparkFiles.get(shipped))
        for frame in frames:
            yield _scored_frame(scorer, frame.rename(columns=originals), renamed)

    return inputs.mapInPandas(score_batches, schema)


def shipped_file(path: Path) -> Path:
    """A copy of the bundle named by its content's digest: Spark knows its files by their name
    alone, and refuses a second of the same name; the executors keep their scorers by it too.
    The copy stays for the session's life (a cluster's driver serves it from there)."""
    data = path.read_bytes()
    folder = Path(tempfile.gettempdir()) / "tabserve-spark"
    folder.mkdir(exist_ok=True)
    copy = folder / f"{path.stem}-{hashlib.sha256(data).hexdigest()[:16]}{path.suffix}"
    if not copy.is_file():
        partial = copy.with_name(f"{copy.name}.{uuid.uuid4().hex}.partial")
        partial.write_bytes(data)
        partial.replace(copy)
    return copy


def _scored_frame(scorer: ChunkScorer, frame: pd.DataFrame,
                  renamed: dict[str, str]) -> pd.DataFrame:
    """A batch with its answers (null where rejected) and the error column."""
    chunk = scorer.score(frame)
    out = frame.rename(columns=renamed)
    count = len(frame)
    for name in scorer.columns:
        values = chunk.answers[name]
        column = np.full(count, None, dtype=object)
        column[chunk.scored] = values
        if values.dtype.kind == "f":
            column = pd.array(column, dtype="Float64")
        elif values.dtype.kind == "b":
            column = pd.array(column, dtype="boolean")
        out[name] = column
    errors = np.full(count, None, dtype=object)
    errors[chunk.rejected] = chunk.problems
    out[ERROR_COLUMN] = errors
    return out
