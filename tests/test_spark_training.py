"""Training on Spark (`tabserve.spark.train`, `train.py --spark`) on a real local Spark: the
search on a sample, XGBoost fitted on every row by SparkXGBClassifier, the bundle served by the
real gunicorn and scored by score.py alike."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pandas as pd
import pytest
import requests

from helpers import (PYTHON, ROOT, flower_frame, free_port, loan_frame, records_from_csv,
                     start_gunicorn, stop)
from tabserve.model.bundle import load_trusted

ROWS = 20_000
SAMPLE = 2_000  # max_rows: the search sees a tenth of the rows


@pytest.fixture(scope="module")
def loans(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spark-loans")
    loan_frame(ROWS, seed=3).to_csv(folder / "loans.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def trained(spark, loans):
    """The bundle `tabserve.spark.train` writes for 20,000 loans read by Spark as text."""
    from tabserve.spark import train

    lines: list[str] = []
    bundle = train(spark.read.csv(str(loans / "loans.csv"), header=True), "approved",
                   loans / "model.bin", candidates=["xgboost"], max_trials=3,
                   max_rows=SAMPLE, folds=3, log=lines.append)
    return bundle, loans / "model.bin", lines


def root_rows(booster) -> float:
    """The rows XGBoost's first tree learned from, read off the tree: its root's cover is the
    sum of the rows' hessians, each p(1 - p) at the base score while no tree has spoken yet."""
    base = float(json.loads(booster.save_config())["learner"]["learner_model_param"]
                 ["base_score"].strip("[]"))
    root = json.loads(booster.get_dump(with_stats=True, dump_format="json")[0])
    return root["cover"] / (base * (1 - base))


def test_the_full_fit_learns_from_every_row_but_the_held_out_and_validation_ones(trained):
    bundle, _, lines = trained
    spark = bundle.metrics["spark"]
    assert spark["rows_labelled"] == ROWS
    assert spark["rows_fitted"] + spark["rows_validation"] + spark["rows_calibration"] \
        + spark["rows_test"] == ROWS
    assert spark["rows_sample"] <= SAMPLE * 1.1 and spark["rows_fitted"] > 5 * SAMPLE
    booster = bundle.pipeline[-1].get_booster()
    subsample = bundle.metrics["chosen_params"].get("subsample", 1.0)
    # each tree draws `subsample` of the rows it fits: the count, give or take the draw
    assert root_rows(booster) / subsample == pytest.approx(spark["rows_fitted"], rel=0.05)
    assert any(line.startswith(f"Final fit on {spark['rows_fitted']:,} rows: XGBoost of "
                               f"{booster.num_boosted_rounds()} trees, as many as the validation")
               for line in lines)


def test_the_model_card_says_which_rows_the_model_saw_and_compares_the_two_fits(trained):
    bundle, path, _ = trained
    card = (path.parent / "reports" / "model_card.md").read_text()
    spark = bundle.metrics["spark"]
    assert f"the shipped model was fitted on {spark['rows_fitted']:,}" in card
    assert f"of the {spark['rows_sample']:,}-row sample" in card
    assert f"the sample's fit ({spark['rows_sample']:,} rows)" in card
    assert f"{spark['test_sample_fit']['roc_auc']:.4f}" in card
    assert bundle.metrics["test"] == spark["test_full_fit"]
    assert spark["test_full_fit"]["roc_auc"] > 0.8  # income and debt decide approval
    assert "held-out log loss" in card and "Reproduce exactly: `tabserve.spark.train(" in card


def test_the_bundle_serves_and_score_py_answers_as_the_server_does(trained, loans, tmp_path):
    bundle, path, _ = trained
    loaded = load_trusted(path)
    assert loaded.version == bundle.version
    rows = loan_frame(60, seed=4)
    rows.to_csv(tmp_path / "in.csv", index=False)
    done = subprocess.run([PYTHON, str(ROOT / "score.py"), "--model", str(path), "--input",
                           str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    scored = pd.read_csv(tmp_path / "out.csv")
    process, url = start_gunicorn(path)
    try:
        records = records_from_csv(rows.astype(str).replace({"NA": None, "": None}),
                                   bundle.schema)
        answers = [requests.post(f"{url}/predict", json=record, timeout=30).json()
                   for record in records]
    finally:
        assert stop(process) == 0
    served = np.array([answer["approved_probability"] for answer in answers])
    assert len(scored) == len(rows)
    np.testing.assert_allclose(scored["approved_probability"], served, atol=1e-6)
    # and as the fitted pipeline itself, calibrated as shipped
    expected = bundle.predict_proba(rows.astype(str).replace({"NA": None, "": None})
                                    [bundle.schema.names])[:, 1]
    np.testing.assert_allclose(served, expected, atol=1e-5)


def test_a_multiclass_table_trains_on_spark_and_answers_as_its_pipeline(spark, tmp_path):
    from tabserve.spark import train
    from tabserve.serving.core import Predictor

    flowers = flower_frame(6_000, seed=5)
    flowers.to_csv(tmp_path / "flowers.csv", index=False)
    bundle = train(spark.read.csv(str(tmp_path / "flowers.csv"), header=True), "species",
                   tmp_path / "flowers.bin", candidates=["xgboost"], max_trials=1,
                   max_rows=1_500, folds=3, log=lambda line: None)
    assert bundle.classes == ["setosa", "versicolor", "virginica"]
    assert bundle.metrics["spark"]["rows_fitted"] > 3_000
    loaded = load_trusted(tmp_path / "flowers.bin")
    rows = flowers.head(40).astype(str)
    served = Predictor(loaded).score_records(records_from_csv(rows, loaded.schema)).probabilities
    np.testing.assert_allclose(served, bundle.predict_proba(rows[bundle.schema.names]),
                               atol=1e-5)


def train_py(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, str(ROOT / "train.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.process
def test_an_unreachable_master_is_one_line(tmp_path):
    done = train_py("--spark", f"spark://127.0.0.1:{free_port()}", "--output",
                    str(tmp_path / "m.bin"))
    assert done.returncode == 1
    assert done.stderr.startswith("error: Spark master spark://127.0.0.1:") \
        and "does not answer" in done.stderr and done.stderr.count("\n") == 1
    assert not (tmp_path / "m.bin").exists()


@pytest.mark.process
def test_a_bad_column_or_path_is_one_line_and_writes_nothing(loans, tmp_path):
    for args, said in (
            (["--data", str(loans / "loans.csv"), "--target", "approval"],
             "error: target column 'approval' not found; the columns are: application_id, "),
            (["--data", str(tmp_path / "absent.csv")], "error: Spark: [PATH_NOT_FOUND]")):
        done = train_py("--spark", "local[2]", "--output", str(tmp_path / "m.bin"), *args)
        assert done.returncode == 1, done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("error")]
        assert len(errors) == 1 and errors[0].startswith(said), done.stderr
        assert "Traceback" not in done.stderr
        assert not (tmp_path / "m.bin").exists()


def test_a_master_is_dialled_before_spark_is_asked_to_reach_it():
    """In the unit tier: a listening socket answers; a closed port, an unknown host and a
    missing port are one line naming the master; local and YARN masters are not dialled."""
    import socket

    from tabserve.training.on_spark import SparkMasterError, check_master

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        check_master(f"spark://127.0.0.1:{port}")
        check_master(f"spark://127.0.0.1:{free_port()},127.0.0.1:{port}")  # a standby answers
        check_master(f"k8s://https://127.0.0.1:{port}")
    for master in (f"spark://127.0.0.1:{port}", "spark://nowhere.invalid:7077",
                   "spark://127.0.0.1"):
        with pytest.raises(SparkMasterError, match=rf"^Spark master {master} does not answer"):
            check_master(master)
    for master in ("local[2]", "local[*]", "yarn"):
        check_master(master)
