"""Does train.py keep its time budget? Wall times against the budget on a small and large tables.

    .venv/bin/python bench/budget.py            # about 9 minutes; appends to bench/RESULTS.md
    .venv/bin/python bench/budget.py "200 rows"  # only the cases whose table names say so

Each case runs `train.py --time-budget B` in a fresh process and reports the wall time of the
whole process (the trainer counts its imports too), the trials run and
cut short by the budget, and the test-split ROC AUC. The tables: the Telco data's first 200 rows
and all of it (7,043 rows, binary), and two generated with scikit-learn's `make_classification`, written to
bench/.data/: 43,000 rows and 5 classes (the size and class count of ggplot2's diamonds `cut`,
which took 383 s at a 60 s budget before the budget covered the whole run), and 200,000 rows
binary (the trainer's default `--max-rows`); and two of 5,000,000 rows (generated, and the Telco
rows repeated), which the trainer samples to 200,000.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import make_classification

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / ".data"


def generated(name: str, rows: int, classes: int) -> Path:
    path = DATA / f"{name}.csv"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        x, y = make_classification(n_samples=rows, n_features=7, n_informative=5,
                                   n_redundant=1, n_classes=classes, n_clusters_per_class=2,
                                   class_sep=0.8, random_state=0)
        frame = pd.DataFrame(x.round(3), columns=[f"n{i}" for i in range(7)])
        rng = np.random.default_rng(0)
        frame["color"] = rng.choice(list("DEFGHIJ"), rows)
        frame["clarity"] = rng.choice(["I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF"],
                                      rows)
        frame["label"] = [f"c{k}" for k in y]
        frame.to_csv(path, index=False)
    return path


def first_rows(rows: int) -> Path:
    """The Telco table's first `rows` rows: a small table, where the report's fixed costs
    (plots) weigh most against the budget."""
    path = DATA / f"telco_first_{rows}.csv"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        lines = (ROOT / "data" / "telco_churn.csv").read_text().splitlines(keepends=True)
        path.write_text("".join(lines[:rows + 1]))
    return path


def large_table(name: str) -> Path:
    """A 5,000,000-row file, written once when a case that reads it is run: generated, or the
    Telco rows repeated with an id each (bench/score.py's file, many exact copies)."""
    if name == "telco":
        from score import telco_file  # bench/score.py

        return telco_file(5_000_000)
    return generated(name, 5_000_000, 2)


def run(data: Path, target: str, budget: float) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "m.bin"
        started = time.perf_counter()
        done = subprocess.run([sys.executable, str(ROOT / "train.py"), "--data", str(data),
                               "--target", target, "--output", str(output),
                               "--time-budget", str(budget), "--quiet"], cwd=ROOT,
                              capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(done.stderr)
        metrics = json.loads((Path(folder) / "m.reports" / "metrics.json").read_text())
    cv = metrics["metrics"]["cv"]
    return {"wall": wall, "trials": cv["trials"],
            "cut": sum(bool(t.get("cut_by_budget")) for t in cv["all_trials"]),
            "chosen": metrics["metrics"]["chosen"], "auc": metrics["metrics"]["test"]["roc_auc"]}


def main() -> None:
    cases = [("Telco churn, first 200 rows (binary)", first_rows(200), "churn", 20),
             ("Telco churn, first 200 rows (binary)", first_rows(200), "churn", 60),
             ("Telco churn (7,043 rows, binary)", ROOT / "data" / "telco_churn.csv", "churn", 20),
             ("Telco churn (7,043 rows, binary)", ROOT / "data" / "telco_churn.csv", "churn", 60),
             ("generated (43,000 rows, 5 classes)", generated("rows43k_5classes", 43_000, 5),
              "label", 60),
             ("generated (200,000 rows, binary)", generated("rows200k_binary", 200_000, 2),
              "label", 60),
             ("generated (5,000,000 rows, binary)", "rows5000000_binary", "label", 60),
             ("Telco rows repeated (5,000,000 rows, binary)", "telco", "churn", 60)]
    lines = ["| table | budget s | wall s | wall / budget | trials | cut by the budget | chosen "
             "| test ROC AUC |", "|---|---:|---:|---:|---:|---:|---|---:|"]
    chosen = [case for case in cases if all(word in case[0] for word in sys.argv[1:])]
    for name, data, target, budget in chosen:
        data = large_table(data) if isinstance(data, str) else data
        r = run(data, target, budget)
        lines.append(f"| {name} | {budget} | {r['wall']:.1f} | {r['wall'] / budget:.2f} | "
                     f"{r['trials']} | {r['cut']} | {r['chosen']} | {r['auc']:.4f} |")
        print(lines[-1], flush=True)
    append_results("train.py's time budget, whole-process wall time",
                   "`bench/budget.py`: one run per case.", lines)


def append_results(title: str, how: str, table: list[str]) -> None:
    """A dated section of bench/RESULTS.md: the title, the machine, how it was measured, the
    table's lines."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = (f"\n## {stamp}: {title}\n\n{platform.processor() or platform.machine()}, 2 CPUs; "
            f"Python {platform.python_version()}. {how}\n\n" + "\n".join(table) + "\n")
    with (ROOT / "bench" / "RESULTS.md").open("a") as results:
        results.write(text)
    print(text)


if __name__ == "__main__":
    main()
