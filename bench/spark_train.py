"""Training on a table too large for the sample alone: `train.py --spark local[2]` (the search
on a sample, XGBoost fitted on every row) against `train.py` (the same search on a 200,000-row
sample, the model fitted on it) on the same file.

    make bench-spark    # or: .venv/bin/python bench/spark_train.py [--rows 10000000]

The file, bench/.data/rows<N>_binary.csv, is generated once as bench/budget.py's tables are
(scikit-learn's `make_classification`: 7 numbers, 2 categorical columns, binary). Each command
runs once in a fresh process, with the default 60 s budget; the figures are its wall time, the
peak RSS and PSS of its process tree (Spark's JVM and Python workers included, sampled every
50 ms), and the test ROC AUC its own report gives (the two runs hold out different rows; on
Spark the sample's fit is scored on the same test rows as the full fit). Appended to
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench")]

from budget import append_results, generated  # noqa: E402  (bench/budget.py)
from run import timed  # noqa: E402  (bench/run.py)


def trained(data: Path, *options: str) -> dict:
    """One train.py run: wall seconds, peak memory, and its metrics."""
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "m.bin"
        seconds, (rss, pss) = timed([sys.executable, str(ROOT / "train.py"), "--data", str(data),
                                     "--target", "label", "--output", str(output), *options])
        metrics = json.loads((Path(folder) / "m.reports" / "metrics.json").read_text())["metrics"]
    return {"seconds": seconds, "rss": rss, "pss": pss, "metrics": metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    args = parser.parse_args()
    data = generated(f"rows{args.rows}_binary", args.rows, 2)
    lines = ["| run | rows the model was fitted on | wall s | peak RSS MB | peak PSS MB "
             "| test ROC AUC | chosen |", "|---|---:|---:|---:|---:|---:|---|"]
    for name, options in (("train.py (sample)", ()), ("train.py --spark local[2]",
                                                        ("--spark", "local[2]"))):
        run = trained(data, *options)
        m = run["metrics"]
        fitted = m.get("spark", {}).get("rows_fitted", m["rows"]["used"])
        auc = f"{m['test']['roc_auc']:.4f}"
        if "spark" in m:
            auc += f" (the sample's fit, same rows: {m['spark']['test_sample_fit']['roc_auc']:.4f})"
        lines.append(f"| {name} | {fitted:,} | {run['seconds']:.1f} | {run['rss']:,.0f} | "
                     f"{run['pss']:,.0f} | {auc} | {m['chosen']} |")
        print(lines[-1], flush=True)
    append_results(f"training on {args.rows:,} rows, sample against Spark's full fit",
                   "`bench/spark_train.py`: one run each, 60 s budget for the search.", lines)

if __name__ == "__main__":
    main()
