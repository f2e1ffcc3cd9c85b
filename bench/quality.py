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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sklearn.metrics import accuracy_score, log_loss, roc_auc_score  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from tabserve.bundle import ModelBundle  # noqa: E402
from tabserve.data import load_csv  # noqa: E402
from tabserve.predicting import Predictor  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "telco_churn.csv")
    parser.add_argument("--target", default="churn")
    parser.add_argument("train_options", nargs="*", help="passed to train.py (after --)")
    args = parser.parse_args()
    frame = load_csv(args.data)
    frame = frame[frame[args.target].notna()]
    train, test = train_test_split(frame, test_size=0.2, stratify=frame[args.target],
                                   random_state=1)
    work = Path(tempfile.mkdtemp(prefix="quality-"))
    train.to_csv(work / "train.csv", index=False)
    started = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "train.py"), "--data", str(work / "train.csv"),
                    "--target", args.target, "--output", str(work / "model.bin"),
                    "--reports", str(work / "reports"), *args.train_options], check=True)
    seconds = time.perf_counter() - started
    bundle = ModelBundle.load(work / "model.bin")
    predictor = Predictor(bundle)
    proba = predictor.probabilities(bundle.schema.columns_from_frame(test))
    y = test[args.target].map({c: i for i, c in enumerate(bundle.classes)}).to_numpy()
    if len(bundle.classes) == 2:
        auc = roc_auc_score(y, proba[:, 1])
        predicted = (proba[:, 1] >= bundle.threshold).astype(int)
    else:
        auc = roc_auc_score(y, proba, multi_class="ovr")
        predicted = proba.argmax(axis=1)
    print(f"{args.data.name}: {len(train)} training rows, {len(test)} held out; chosen "
          f"{bundle.metrics['chosen']}; training took {seconds:.0f} s")
    print(f"held-out ROC AUC {auc:.4f}, log loss {log_loss(y, proba):.4f}, "
          f"accuracy {accuracy_score(y, predicted):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
