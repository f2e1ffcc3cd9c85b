"""Training end to end through `python train.py`, on CSVs the tests write."""

import subprocess

import pandas as pd
import pytest

from conftest import PYTHON, ROOT, flower_frame, loan_frame
from tabserve.bundle import ModelBundle


def run_train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, str(ROOT / "train.py"), *args], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


def test_binary_non_churn_csv_trains_and_reports(tmp_path, loan_csv):
    out = tmp_path / "loans.bin"
    done = run_train("--data", str(loan_csv), "--target", "approved", "--output", str(out),
                     "--folds", "3")
    assert done.returncode == 0, done.stderr
    for expected in ("dropped column 'application_id': identifier",
                     "dropped column 'country': constant",
                     "logistic_regression", "xgboost", "ROC AUC", "Chosen:", "Test split:",
                     "accuracy", "log loss", "Decision threshold: 0.5", f"Wrote {out}"):
        assert expected in done.stdout
    bundle = ModelBundle.load(out)
    assert bundle.classes == ["no", "yes"] or bundle.classes == ["yes", "no"]
    assert bundle.schema.target == "approved"
    assert bundle.schema.names == ["income", "debt", "region", "home_owner"]
    assert bundle.schema.field("income").nullable and not bundle.schema.field("debt").nullable
    assert bundle.metrics["test"]["roc_auc"] > 0.75
    meta = bundle.metadata
    assert len(meta["model_version"]) == 12 and len(meta["data"]["sha256"]) == 64
    assert {"scikit-learn", "xgboost-cpu", "numpy", "pandas", "python"} <= set(meta["libraries"])
    assert meta["seed"] == 1 and meta["created_at"]


def test_multiclass_csv_trains(tmp_path, flower_csv):
    out = tmp_path / "flowers.bin"
    done = run_train("--data", str(flower_csv), "--target", "species", "--output", str(out),
                     "--folds", "3")
    assert done.returncode == 0, done.stderr
    bundle = ModelBundle.load(out)
    assert bundle.classes == ["setosa", "versicolor", "virginica"]
    assert bundle.task == "multiclass" and bundle.threshold is None
    assert bundle.metrics["cv"]["metric"] == "roc_auc_ovr"
    assert bundle.metrics["test"]["roc_auc"] > 0.9


def test_same_seed_gives_same_model_and_metrics(tmp_path, loan_csv):
    bundles = []
    for name in ("a.bin", "b.bin"):
        done = run_train("--data", str(loan_csv), "--target", "approved", "--output",
                         str(tmp_path / name), "--folds", "3", "--seed", "7")
        assert done.returncode == 0, done.stderr
        bundles.append(ModelBundle.load(tmp_path / name))
    assert bundles[0].version == bundles[1].version
    assert bundles[0].metrics == bundles[1].metrics


def test_positive_class_option(tmp_path, loan_csv):
    out = tmp_path / "m.bin"
    done = run_train("--data", str(loan_csv), "--target", "approved", "--output", str(out),
                     "--folds", "3", "--positive-class", "no")
    assert done.returncode == 0, done.stderr
    assert ModelBundle.load(out).classes == ["yes", "no"]
    done = run_train("--data", str(loan_csv), "--target", "approved", "--output", str(out),
                     "--folds", "3", "--positive-class", "maybe")
    assert done.returncode == 1 and "'maybe' is not a class" in done.stderr


def test_committed_model_is_what_train_py_produces(tmp_path):
    out = tmp_path / "model.bin"
    done = run_train("--output", str(out))
    assert done.returncode == 0, done.stderr
    assert ModelBundle.load(out).version == ModelBundle.load(ROOT / "model.bin").version


def _file(tmp_path, content: bytes):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    return path


def _csv(tmp_path, frame: pd.DataFrame):
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    return path


BAD_FILES = {
    "missing file": (lambda p: p / "absent.csv", "file not found"),
    "empty file": (lambda p: _file(p, b""), "the file is empty"),
    "binary file": (lambda p: _file(p, b"\x00\x01\x02binary"), "binary file"),
    "not a csv": (lambda p: _file(p, b'{"approved": true}\n'), "no comma or other delimiter"),
    "target absent": (lambda p: _csv(p, loan_frame().drop(columns="approved")),
                      "target column 'approved' not found; the columns are: application_id, "
                      "income, debt, region, home_owner, country"),
    "single class": (lambda p: _csv(p, loan_frame().assign(approved="yes")),
                     "single class ('yes')"),
    "too few rows": (lambda p: _csv(p, loan_frame(rows=12)), "too few rows for 5-fold"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_files_exit_non_zero_and_leave_the_model_alone(tmp_path, case):
    make, message = BAD_FILES[case]
    data = make(tmp_path)
    out = tmp_path / "model.bin"
    out.write_bytes(b"the previous model")
    done = run_train("--data", str(data), "--target", "approved", "--output", str(out))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert out.read_bytes() == b"the previous model"
    assert not list(tmp_path.glob("*.partial"))


def test_multiclass_rejects_positive_class(tmp_path):
    path = _csv(tmp_path, flower_frame())
    done = run_train("--data", str(path), "--target", "species", "--output",
                     str(tmp_path / "m.bin"), "--positive-class", "setosa")
    assert done.returncode == 1 and "binary target only" in done.stderr
