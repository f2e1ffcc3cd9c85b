"""Training end to end through `python train.py`, on CSVs the tests write."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import PYTHON, ROOT, flower_frame, loan_frame
from tabserve.model.bundle import ModelBundle
from tabserve.model.encoding import Encoder
from tabserve.model.frames import columns_from_frame
from tabserve.serving.core import Predictor
from tabserve.tables import load_csv

pytestmark = pytest.mark.slow  # see pytest.ini


PEAK_OF_CHILD = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
                 "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
                 "sys.exit(done.returncode)")


def run_train(*args: str, trials: str = "3") -> subprocess.CompletedProcess:
    """train.py with the first trials of the search (each family's defaults) unless told."""
    extra = ["--trials", trials] if trials and "--trials" not in args else []
    return subprocess.run([PYTHON, str(ROOT / "train.py"), *args, *extra], capture_output=True,
                          text=True, timeout=600, cwd=ROOT)


def test_binary_non_churn_csv_trains_and_reports(tmp_path, loan_csv):
    out = tmp_path / "loans.bin"
    done = run_train("--data", str(loan_csv), "--target", "approved", "--output", str(out),
                     "--folds", "3")
    assert done.returncode == 0, done.stderr
    for expected in ("dropped column 'application_id': identifier",
                     "dropped column 'country': constant",
                     "logistic_regression", "xgboost", "random_forest", "ROC AUC", "Chosen:",
                     "Calibration:", "Test split:", "accuracy", "log loss",
                     "Decision threshold: 0.5", f"Wrote {out}"):
        assert expected in done.stdout
    bundle = ModelBundle.load(out)
    # the minority class is the positive one, listed last ("yes": 197 of 400 rows)
    assert bundle.classes == ["no", "yes"] and bundle.positive_class == "yes"
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
    assert without_timings(bundles[0].metrics) == without_timings(bundles[1].metrics)


def without_timings(value):
    """Metrics less the seconds each trial took, which no seed decides."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


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
    """The time budget decides how many trials run; with that count the run is exact."""
    committed = ModelBundle.load(ROOT / "model.bin")
    out = tmp_path / "model.bin"
    done = run_train("--output", str(out), trials=str(committed.metrics["cv"]["trials"]))
    assert done.returncode == 0, done.stderr
    again = ModelBundle.load(out)
    trials = committed.metrics["cv"]["all_trials"]
    assert [t["params"] for t in again.metrics["cv"]["all_trials"]] == [t["params"] for t in trials]
    # what cannot vary: the configurations tried and the one chosen. The figures may move in
    # their last digits between CPUs (OpenBLAS and XGBoost pick their kernels by the CPU, and a
    # forest adds its trees' votes in threads, in any order): 1e-6 catches any real change
    assert again.metrics["chosen_params"] == committed.metrics["chosen_params"]
    assert [t["cv_roc_auc"] for t in again.metrics["cv"]["all_trials"]] == pytest.approx(
        [t["cv_roc_auc"] for t in trials], abs=1e-6)
    assert again.metrics["test"] == pytest.approx(committed.metrics["test"], abs=1e-6)
    # the file carries the card's figures (written after the report that makes them)
    assert again.card["confusion"] == committed.card["confusion"]
    assert [f["field"] for f in again.card["importance"]["fields"]] == \
        [f["field"] for f in committed.card["importance"]["fields"]]
    frame = load_csv(ROOT / "data" / "telco_churn.csv")
    ours, theirs = (Predictor(b).probabilities(columns_from_frame(b.schema, frame))
                    for b in (again, committed))
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
    # the version id hashes values, not the bytes of a file (which differ between Python
    # builds): the same numbers give the same id (the committed file may have been converted
    # from an older format, keeping its id: its content's id is what a retrain gives)
    if np.array_equal(ours, theirs):
        assert again.version == committed.content_version()


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


def test_reports_are_written(tmp_path, loan_csv):
    out, reports = tmp_path / "m.bin", tmp_path / "reports"
    done = run_train("--data", str(loan_csv), "--target", "approved", "--output", str(out),
                     "--folds", "3", "--reports", str(reports), "--threshold-rule", "f1")
    assert done.returncode == 0, done.stderr
    card = (reports / "model_card.md").read_text()
    for section in ("## Data", "Dropped columns", "## Model selection", "Chosen:",
                    "Calibration:", "95% bootstrap interval", "f1: maximises F1",
                    "## Intended use", "## Out-of-scope use", "## Sensitive inputs",
                    "No field name suggests a protected attribute", "## Limitations",
                    f"--output {out} --seed 1 --trials 3"):
        assert section in card
    metrics = json.loads((reports / "metrics.json").read_text())
    cv = metrics["metrics"]["cv"]  # which families ran, their trials, and why the winner won
    assert sum(ran["trials"] for ran in cv["families"].values()) == cv["trials"] == 3
    assert set(cv["families"]) == {"logistic_regression", "xgboost", "random_forest"}
    why = metrics["metrics"]["why_chosen"]
    assert why.startswith(f"{metrics['metrics']['chosen']} had the highest cross-validated "
                          "ROC AUC") and f"Why: {why}." in card
    low, high = metrics["test_intervals_95"]["roc_auc"]
    assert low <= metrics["metrics"]["test"]["roc_auc"] <= high
    # the loans' score rises with income and falls with debt (helpers.loan_frame)
    assert metrics["feature_direction"]["income"].startswith("higher values push towards 'yes'")
    assert metrics["feature_direction"]["debt"].startswith("higher values push away from 'yes'")
    assert metrics["feature_direction"]["region"].startswith("most towards 'yes': 'south'")
    assert "| income |" in card and "higher values push towards 'yes'" in card
    for plot in ("roc.png", "precision_recall.png", "calibration.png", "confusion_matrix.png",
                 "feature_importance.png"):
        assert (reports / plot).read_bytes()[:4] == b"\x89PNG" and f"]({plot})" in card


def test_reports_go_beside_the_model_they_describe(tmp_path):
    frame = loan_frame()
    frame["gender"] = ["female", "male"] * (len(frame) // 2)
    data = tmp_path / "loans.csv"
    frame.to_csv(data, index=False)
    committed = {p: p.stat().st_mtime_ns for p in (ROOT / "reports").iterdir()}
    done = run_train("--data", str(data), "--target", "approved", "--output",
                     str(tmp_path / "my.bin"), "--folds", "3")
    assert done.returncode == 0, done.stderr
    card = (tmp_path / "my.reports" / "model_card.md").read_text()
    assert {p: p.stat().st_mtime_ns for p in (ROOT / "reports").iterdir()} == committed
    assert "attribute: `gender`" in card
    assert "| group | test rows | observed 'yes' | predicted 'yes' |" in card
    assert "| female |" in card and "| male |" in card
    (tmp_path / "sub").mkdir()
    done = run_train("--data", str(data), "--target", "approved", "--output",
                     str(tmp_path / "sub" / "model.bin"), "--folds", "3", "--quiet")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "sub" / "reports" / "model_card.md").is_file()


def test_time_budget_bounds_the_search(tmp_path, loan_csv):
    """Past each family's first trial, a trial starts only while the budget lasts (checked on
    the run's own trial times, whatever this machine's speed)."""
    out = tmp_path / "m.bin"
    done = run_train("--data", str(loan_csv), "--target", "approved", "--output", str(out),
                     "--time-budget", "8", trials="")
    assert done.returncode == 0, done.stderr
    cv = ModelBundle.load(out).metrics["cv"]
    assert cv["time_budget_seconds"] == 8 and cv["trials"] == len(cv["all_trials"]) >= 3
    _assert_trials_started_within(cv["all_trials"], 8)
    assert "of 8 s" in done.stdout


def _assert_trials_started_within(trials: list[dict], budget: float) -> None:
    """By the run's own accounting (its trials' times, not this machine's wall clock): past
    each family's first trial, a trial started only while the budget lasted."""
    started, seen = 0.0, set()
    for trial in trials:
        if trial["family"] in seen:
            assert started <= budget, f"a {trial['family']} trial started at {started:.1f} s"
        seen.add(trial["family"])
        started += trial["seconds"]


def test_the_budget_covers_the_whole_run_on_a_large_table(tmp_path):
    """A 5-class table whose first XGBoost trial alone would take about 40 s here: with a
    10 s budget, trials are cut to their share, and no trial starts past the budget."""
    from sklearn.datasets import make_classification
    x, y = make_classification(n_samples=20_000, n_features=8, n_informative=5, n_classes=5,
                               random_state=0)
    frame = pd.DataFrame(x.round(3), columns=[f"x{i}" for i in range(8)])
    frame["grade"] = [f"g{k}" for k in y]
    data = tmp_path / "large.csv"
    frame.to_csv(data, index=False)
    done = run_train("--data", str(data), "--target", "grade", "--output",
                     str(tmp_path / "m.bin"), "--time-budget", "10", trials="")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "m.reports" / "metrics.json").read_text())
    cv = metrics["metrics"]["cv"]
    assert cv["time_budget_seconds"] == 10
    assert any(t.get("cut_by_budget") for t in cv["all_trials"])
    _assert_trials_started_within(cv["all_trials"], 10)
    assert metrics["test_intervals_95"]["resamples"] >= 200


@pytest.mark.parametrize("option, message", [
    (["--threshold-rule", "median"], "--threshold-rule must be one of"),
    (["--threshold-rule", "fixed:2"], "--threshold-rule must be one of"),
    (["--trials", "0"], "--trials must be at least 1"),
    (["--candidates", "svm"], "--candidates: choose from"),
    (["--ordinal", "region"], "write FIELD=LOW<MIDDLE<HIGH"),
])
def test_bad_options(option, message):
    done = run_train(*option, trials="")
    assert done.returncode == 2 and message in done.stderr


def test_a_declared_order_is_used_or_refused_with_one_line(tmp_path, loan_csv):
    out = tmp_path / "m.bin"
    done = run_train("--data", str(loan_csv), "--target", "approved", "--output", str(out),
                     "--ordinal", "region=north<east<south<west")
    assert done.returncode == 0, done.stderr
    assert "'region' is ordered: north < east < south < west" in done.stdout
    assert "region (rank)" in Encoder(ModelBundle.load(out).schema).feature_names
    done = run_train("--data", str(loan_csv), "--target", "approved", "--output",
                     str(tmp_path / "n.bin"), "--ordinal", "region=north<south")
    assert done.returncode == 1 and not (tmp_path / "n.bin").exists()
    assert done.stderr.count("\n") == 1 and "also holds 'east', 'west'" in done.stderr


def test_quiet_prints_nothing(tmp_path, loan_csv):
    done = run_train("--data", str(loan_csv), "--target", "approved", "--output",
                     str(tmp_path / "m.bin"), "--quiet")
    assert done.returncode == 0 and done.stdout == ""


def _hostile(tmp_path, name: str) -> Path:
    frame = loan_frame()
    path = tmp_path / f"{name}.csv"
    if name == "semicolons":
        frame.to_csv(path, index=False, sep=";")
    elif name == "all_na_column":
        frame.assign(notes="NA").to_csv(path, index=False)
    elif name == "formula_cells":
        frame.assign(region=["=cmd()", "+SUM(A1)", "north", "@x"] * (len(frame) // 4)
                     ).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("name, expected", [
    ("semicolons", "Chosen:"),
    ("all_na_column", "dropped column 'notes': every value is missing"),
    ("formula_cells", "Chosen:"),
])
def test_hostile_csvs_that_still_train(tmp_path, name, expected):
    out = tmp_path / "m.bin"
    done = run_train("--data", str(_hostile(tmp_path, name)), "--target", "approved",
                     "--output", str(out), "--folds", "3")
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout
    bundle = ModelBundle.load(out)
    if name == "formula_cells":  # text, never evaluated: a category like any other
        assert "=cmd()" in bundle.schema.field("region").categories


@pytest.mark.parametrize("frame, message", [
    (loan_frame().head(1), "single class"),
    (loan_frame().assign(approved=[f"c{i}" for i in range(400)]), "too few rows"),
    (loan_frame().assign(approved=[f"c{i % 500}" for i in range(400)]), "too few rows"),
])
def test_hostile_csvs_that_cannot_train(tmp_path, frame, message):
    out = tmp_path / "m.bin"
    done = run_train("--data", str(_csv(tmp_path, frame)), "--target", "approved",
                     "--output", str(out))
    assert done.returncode == 1 and message in done.stderr and not out.exists()


def test_a_200_mb_csv_trains_in_bounded_memory(tmp_path):
    big = tmp_path / "big.csv"
    lines = (ROOT / "data" / "telco_churn.csv").read_bytes().split(b"\n", 1)
    with big.open("wb") as f:
        f.write(lines[0] + b"\n")
        while f.tell() < 200 * 1024 * 1024:
            f.write(lines[1])
    # train.py's own peak, measured by a small parent: a child forked from this process
    # would start from this process's size (Linux keeps a process's peak across exec)
    done = subprocess.run(
        [PYTHON, "-c", PEAK_OF_CHILD, PYTHON, str(ROOT / "train.py"), "--data", str(big),
         "--output", str(tmp_path / "m.bin"), "--max-rows", "50000", "--candidates",
         "logistic_regression", "--reports", str(tmp_path / "reports"), "--trials", "1"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    peak_mb = int(done.stderr.strip().splitlines()[-1]) / 1024
    assert "sampled 50,000 of" in done.stdout
    print(f"\n200 MB CSV: peak RSS of train.py {peak_mb:.0f} MB")
    assert peak_mb < 1500


def test_copies_of_a_row_stay_on_one_side_of_the_test_split():
    """Copies split apart would score the model on rows it learned (Telco three times over:
    test ROC AUC 0.97 against 0.84 once)."""
    from tabserve.training.trainer import train

    frame = loan_frame(rows=200).drop(columns="application_id").astype(str)
    tripled = pd.concat([frame] * 3).sample(frac=1, random_state=0).reset_index(drop=True)
    result = train(tripled, "approved", max_trials=2, folds=3)
    counts = result.test_frame.value_counts(dropna=False)
    assert set(counts) == {3}, "a row in the test split without all its copies"
    distinct = len(frame.drop_duplicates())
    assert result.bundle.metrics["rows"]["copies"] == len(tripled) - distinct


def test_a_forest_is_explained_by_the_fields_it_uses_on_rows_it_never_saw():
    """A random forest has no contributions: its importance is the drop in ROC AUC when a
    field is shuffled, read from the training split's model on the test rows. Read from the
    shipped model, which learnt those rows, every field scored 0."""
    from tabserve.training.reports import field_effects
    from tabserve.training.trainer import train

    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (400, 100)).round(4)
    frame = pd.DataFrame(x, columns=[f"x{i:02d}" for i in range(100)]).astype(str)
    frame["grade"] = np.where(x[:, 0] + x[:, 1] + rng.normal(0, 0.5, 400) > 0, "up", "down")
    result = train(frame, "grade", max_trials=1, folds=3, candidates=("random_forest",))
    effects = field_effects(result.bundle, result.test_frame, result.split_model)
    assert effects.how.startswith("permutation importance")
    ranked = sorted(effects.importance, key=effects.importance.get, reverse=True)
    assert set(ranked[:2]) == {"x00", "x01"}
    assert min(effects.importance["x00"], effects.importance["x01"]) > 0.03


def _trial(family: str, folds: list[float]):
    from tabserve.training.search import Trial
    return Trial(family, {}, folds, 1.0, np.zeros((1, 2)))


def test_why_the_winner_won_says_its_margin_and_a_near_tie():
    from tabserve.training.trainer import Choice, why_chosen

    clear = {"xgboost": _trial("xgboost", [0.90, 0.91, 0.92]),
             "logistic_regression": _trial("logistic_regression", [0.80, 0.81, 0.82])}
    assert why_chosen(Choice([], clear, clear["xgboost"], tuple(clear))) == (
        "xgboost had the highest cross-validated ROC AUC, 0.9100; the next best, "
        "logistic_regression, had 0.8100 (0.1000 lower)")
    near = {**clear, "blend": _trial("blend", [0.89, 0.92, 0.93])}
    assert why_chosen(Choice([], near, near["blend"], tuple(near))).endswith(
        "(0.0033 lower; its folds spread ± 0.0170: a near tie, decided by the mean)")
    # a family searched only for the blend is not a rival of the chosen model
    alone = {"blend": near["blend"], "xgboost": clear["xgboost"]}
    assert why_chosen(Choice([], alone, alone["blend"], ("blend",))) == (
        "blend was the only family that could be chosen (cross-validated ROC AUC 0.9133)")
    holdout = {"xgboost": _trial("xgboost", [0.9]), "random_forest": _trial("random_forest",
                                                                            [0.85])}
    assert why_chosen(Choice([], holdout, holdout["xgboost"], tuple(holdout))) == (
        "xgboost had the highest ROC AUC on the holdout, 0.9000; the next best, random_forest, "
        "had 0.8500 (0.0500 lower)")


def test_a_large_boosted_model_is_explained_on_fewer_test_rows():
    """Tree SHAP's cost grows with the trees' nodes: the report reads importance on fewer rows
    as they grow (a CatBoost blend of 624,000 nodes took 30 s of a 60 s run on 867 rows),
    the default model's on as many as before."""
    import msgspec

    from tabserve.model.fitted import BlendModel, BoostedTrees
    from tabserve.training.reports import (EXPLAINED_ROWS, FEWEST_EXPLAINED_ROWS,
                                           explained_rows)

    committed = ModelBundle.load(ROOT / "model.bin").model
    assert isinstance(committed, BlendModel) and explained_rows(committed) == EXPLAINED_ROWS
    trees = next(m for m in committed.members if isinstance(m, BoostedTrees))

    def grown(nodes: int) -> BoostedTrees:
        return msgspec.structs.replace(trees, node_counts=np.full(nodes // 100, 100))
    assert explained_rows(grown(100_000)) == 500
    assert explained_rows(msgspec.structs.replace(committed, members=[
        committed.members[0], grown(100_000)])) == 500
    assert explained_rows(grown(5_000 * 127)) == FEWEST_EXPLAINED_ROWS
