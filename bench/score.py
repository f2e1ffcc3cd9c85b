"""The batch scorer on big files: rows/s and peak memory, against the script a user would
write instead.

    make bench-score        # or: .venv/bin/python bench/score.py [--rows 1000000 10000000]

Writes bench/.data/telco_<rows>.csv (Telco rows repeated, each with an id) once, then for each
size runs `score.py` (CSV in, CSV out, every input column kept, the CPUs available) `--runs`
times and reports the median wall time, rows/s and the peak memory of its process tree (the
parent and its workers together, sampled every 50 ms; RSS and PSS). For the first size it also
runs the naive alternative in the same session: pandas `read_csv` of the whole file, the
bundle's scikit-learn pipeline's `predict_proba`, `to_csv`; and times one chunk's steps in one
process (parsing, validating and scoring, formatting the output) to say what dominates.
Appended to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402

from tabserve.batch.files import InputFile, table_bytes  # noqa: E402
from tabserve.batch.scoring import ChunkScorer  # noqa: E402
from tabserve.model.bundle import ModelBundle  # noqa: E402
from run import timed  # noqa: E402  (bench/run.py)
from tabserve.serving.process import available_cpus  # noqa: E402

DATA = ROOT / "bench" / ".data"
NAIVE = """
import sys, pandas as pd
from tabserve.model.bundle import ModelBundle
from tabserve.model.frames import columns_from_frame
from tabserve.serving.core import Predictor
bundle = ModelBundle.load(sys.argv[1])
frame = pd.read_csv(sys.argv[2])
proba = Predictor(bundle).probabilities(columns_from_frame(bundle.schema, frame))
for i, label in enumerate(bundle.classes):
    frame[f"probability_{label}"] = proba[:, i]
frame.to_csv(sys.argv[3], index=False)
"""


def telco_file(rows: int) -> Path:
    path = DATA / f"telco_{rows}.csv"
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    base = pd.read_csv(ROOT / "data" / "telco_churn.csv", dtype=str, keep_default_na=False)
    temporary = path.with_suffix(".partial")
    with temporary.open("w") as out:
        written = 0
        while written < rows:
            block = base.head(rows - written).copy()
            block.insert(0, "customer_id", [f"C{written + i:09d}" for i in range(len(block))])
            block.to_csv(out, index=False, header=written == 0)
            written += len(block)
    temporary.rename(path)
    return path


def breakdown(path: Path, bundle: ModelBundle, rows: int = 100_000) -> dict[str, float]:
    """Seconds for one chunk's steps in one process, each after a first round that warms it
    (the first scoring call also builds XGBoost's caches)."""
    scorer = ChunkScorer(bundle)
    steps: dict[str, float] = {}
    for _ in range(2):
        started = time.perf_counter()
        batch = next(InputFile(path, rows).chunks()).read()
        parsed = time.perf_counter()
        validated = scorer.validate(batch.to_pandas())
        checked = time.perf_counter()
        scorer.predictor.probabilities(validated.columns)
        scored = time.perf_counter()
        chunk = scorer.score(batch.to_pandas())
        table = pa.Table.from_arrays(
            [batch.column(name) for name in batch.schema.names]
            + [pa.array(chunk.answers[name]) for name in scorer.columns],
            names=batch.schema.names + [f"{name}_" for name in scorer.columns])
        formatting = time.perf_counter()
        table_bytes(table, "csv", True)
        steps = {"parse CSV (pyarrow, in the workers)": parsed - started,
                 "validate": checked - parsed, "score (the model)": scored - checked,
                 "format CSV (pyarrow)": time.perf_counter() - formatting}
    return steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model", type=Path, default=ROOT / "model.bin")
    parser.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = parser.parse_args()
    bundle = ModelBundle.load(args.model)
    out = DATA / "scores.csv"
    lines = []
    naive = None
    for size in args.rows:
        source = telco_file(size)
        runs = args.runs
        print(f"score.py on {size:,} rows ({source.stat().st_size / 1e6:.0f} MB), {runs} runs",
              flush=True)
        measured = [timed([sys.executable, "score.py", "--model", str(args.model), "--input",
                           str(source), "--output", str(out), "--quiet"]) for _ in range(runs)]
        seconds = statistics.median(s for s, _ in measured)
        rss = max(p[0] for _, p in measured)
        pss = max(p[1] for _, p in measured)
        lines.append(f"| score.py, {available_cpus()} workers | {size:,} | {seconds:.1f} s | "
                     f"{size / seconds:,.0f} | {rss:,.0f} MB | {pss:,.0f} MB | {runs} |")
        if naive is None:
            print("the naive script on the same file", flush=True)
            script = DATA / "naive.py"
            script.write_text(NAIVE)
            env_path = f"PYTHONPATH={ROOT}"
            seconds, (rss, pss) = timed(["env", env_path, sys.executable, str(script),
                                         str(args.model), str(source), str(out)])
            naive = (size, seconds)
            lines.append(f"| naive: pandas read_csv + pipeline.predict_proba + to_csv | "
                         f"{size:,} | {seconds:.1f} s | {size / seconds:,.0f} | "
                         f"{rss:,.0f} MB | {pss:,.0f} MB | 1 |")
    out.unlink(missing_ok=True)
    steps = breakdown(telco_file(args.rows[0]), bundle)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    report = "\n".join([
        f"## {stamp}: score.py, model {bundle.version}", "",
        f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, "
        f"Linux {platform.release()}, Python {platform.python_version()}; CSV in, CSV out, every "
        "input column kept; Telco rows repeated with an id column. Peak memory of the whole "
        "process tree (parent and workers), sampled every 50 ms: RSS counts shared libraries "
        "once per process, PSS shares them out.", "",
        "| how | rows | wall time (median) | rows/s | peak RSS | peak PSS | runs |",
        "|---|---:|---:|---:|---:|---:|---:|", *lines, "",
        "One chunk of about 100,000 rows in one process: " + ", ".join(
            f"{name} {seconds * 1000:,.0f} ms" for name, seconds in steps.items()) + ".", ""])
    print(report)
    with args.results.open("a") as results:
        results.write("\n" + report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
