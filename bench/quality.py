"""Model quality on data the trainer never saw, through the served model.

    .venv/bin/python bench/quality.py [--data data/telco_churn.csv --target churn] [-- train.py options]

Splits the CSV 80/20 (stratified, random_state=1), runs `train.py` on the 80% only, and scores
the served model (the same Predictor the service uses) on the 20%: ROC AUC, log loss, accuracy.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sklearn.metrics import accuracy_score, log_loss, roc_auc_score  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from tabserve.model.bundle import ModelBundle  # noqa: E402
from tabserve.model.frames import columns_from_frame  # noqa: E402
from tabserve.serving.core import Predictor  # noqa: E402
from tabserve.tables import load_csv  # noqa: E402


@dataclass
class HeldOutScore:
    chosen: str
    seconds: float
    auc: float
    log_loss: float
    accuracy: float


def split(frame: pd.DataFrame, target: str, seed: int = 1
          ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The protocol's split: labelled rows, 80/20, stratified, random_state=1 (or `seed`)."""
    frame = frame[frame[target].notna()]
    return train_test_split(frame, test_size=0.2, stratify=frame[target], random_state=seed)


def roc_auc(y, proba) -> float:
    """Binary ROC AUC of the last class, or the one-vs-rest macro average for more classes."""
    if proba.shape[1] == 2:
        return roc_auc_score(y, proba[:, 1])
    return roc_auc_score(y, proba, multi_class="ovr")


def score_trainer(train: pd.DataFrame, test: pd.DataFrame, target: str,
                  options: list[str] = (), quiet: bool = False) -> HeldOutScore:
    """Run train.py on `train` alone; score its model, as the service serves it, on `test`."""
    work = Path(tempfile.mkdtemp(prefix="quality-"))
    train.to_csv(work / "train.csv", index=False)
    started = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "train.py"), "--data", str(work / "train.csv"),
                    "--target", target, "--output", str(work / "model.bin"),
                    "--reports", str(work / "reports"), *(["--quiet"] if quiet else []),
                    *options], check=True)
    seconds = time.perf_counter() - started
    bundle = ModelBundle.load(work / "model.bin")
    proba = Predictor(bundle).probabilities(columns_from_frame(bundle.schema, test))
    y = test[target].map({c: i for i, c in enumerate(bundle.classes)}).to_numpy()
    if len(bundle.classes) == 2:
        predicted = (proba[:, 1] >= bundle.threshold).astype(int)
    else:
        predicted = proba.argmax(axis=1)
    return HeldOutScore(bundle.metrics["chosen"], seconds, roc_auc(y, proba), log_loss(y, proba),
                        accuracy_score(y, predicted))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "telco_churn.csv")
    parser.add_argument("--target", default="churn")
    parser.add_argument("train_options", nargs="*", help="passed to train.py (after --)")
    args = parser.parse_args()
    train, test = split(load_csv(args.data), args.target)
    score = score_trainer(train, test, args.target, args.train_options)
    print(f"{args.data.name}: {len(train)} training rows, {len(test)} held out; chosen "
          f"{score.chosen}; training took {score.seconds:.0f} s")
    print(f"held-out ROC AUC {score.auc:.4f}, log loss {score.log_loss:.4f}, "
          f"accuracy {score.accuracy:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
