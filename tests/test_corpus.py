"""Tables we did not make (and a few made for what public data rarely shows together), each
through every door a user takes: train.py with a short budget, the real gunicorn's /predict and
/explain, score.py over the whole file, and monitor.py; the service and score.py must agree."""

import json
import subprocess
from pathlib import Path

import pytest
import requests

import corpus
from helpers import PYTHON, ROOT, need_tool, records_from_csv, start_gunicorn, stop
from tabserve.model.bundle import ModelBundle
from tabserve.tables import load_csv

BUDGET = "5"        # seconds per table: a short budget, as a user trying things would set
SERVED_ROWS = 200   # rows of each table sent to /predict and compared with score.py's
TABLES = [*corpus.MODELDATA, *corpus.SKLEARN, *corpus.MADE]


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    corpus.write_sklearn(folder)
    corpus.write_made(folder)
    if corpus.modeldata_available():
        corpus.write_modeldata(folder)
    return folder


def _table_path(tables: Path, table: corpus.Table) -> Path:
    path = tables / f"{table.name}.csv"
    if not path.exists():
        need_tool("modeldata", present=False)
    return path


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)


@pytest.mark.process
def test_every_modeldata_table_is_in_the_corpus_or_said_why_not():
    need_tool("modeldata", present=corpus.modeldata_available())
    listed = {t.name for t in corpus.MODELDATA} | set(corpus.MODELDATA_LEFT_OUT)
    assert sorted(set(corpus.modeldata_names()) - listed) == []
    assert sorted(listed - set(corpus.modeldata_names())) == []


@pytest.mark.slow
@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_a_public_table_trains_serves_scores_and_monitors(tmp_path, tables, table):
    data = _table_path(tables, table)
    model = tmp_path / f"{table.name}.bin"
    trained = _run("train.py", "--data", str(data), "--target", table.target,
                   "--output", str(model), "--time-budget", BUDGET, "--quiet")
    if table.refused:
        assert trained.returncode == 1
        assert trained.stderr.count("\n") == 1 and table.refused in trained.stderr
        assert not model.exists()
        return
    assert trained.returncode == 0, trained.stderr
    report = json.loads((tmp_path / f"{table.name}.reports" / "metrics.json").read_text())
    assert report["report_failures"] == []
    bundle = ModelBundle.load(model)

    frame = load_csv(data)
    frame = frame[frame[table.target].notna()].reset_index(drop=True)
    rows = frame.sample(min(SERVED_ROWS, len(frame)), random_state=0).index.sort_values()
    records = records_from_csv(frame.loc[rows], bundle.schema)

    process, url = start_gunicorn(model, WEB_CONCURRENCY="1")
    try:
        answered = requests.post(f"{url}/predict", json=records, timeout=60)
        assert answered.status_code == 200, answered.text
        explained = requests.post(f"{url}/explain", json=records[:5], timeout=60)
        if bundle.metrics["chosen"] == "random_forest":  # no contributions: said clearly
            assert explained.status_code == 501 and "random forest" in explained.json()["detail"]
        else:
            assert explained.status_code == 200, explained.text
            assert len(explained.json()) == 5
    finally:
        assert stop(process) == 0

    scores = tmp_path / "scores.csv"
    scored = _run("score.py", "--model", str(model), "--input", str(data),
                  "--output", str(scores), "--keep", "none", "--quiet")
    assert scored.returncode == 0, scored.stderr
    import pandas as pd

    scored_frame = pd.read_csv(scores, keep_default_na=False)
    labelled = load_csv(data)[table.target].notna().to_numpy()
    scored_frame = scored_frame[labelled].reset_index(drop=True)  # the rows train.py used
    for row, answer in zip(rows, answered.json()):
        assert str(scored_frame.loc[row, "label"]) == answer["label"]
        for label, p in answer["probabilities"].items():
            assert abs(scored_frame.loc[row, f"probability_{label}"] - p) <= 1e-9

    monitored = _run("monitor.py", "--model", str(model), "--data", str(data),
                     "--report", str(tmp_path / "drift"))
    assert monitored.returncode == 0, monitored.stderr
    drift = json.loads((tmp_path / "drift" / "drift.json").read_text())
    assert drift["records"] == len(load_csv(data))
    assert (tmp_path / "drift" / "drift.png").stat().st_size > 0
