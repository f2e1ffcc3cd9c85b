"""Batch scoring: `score.py` on real CSV and Parquet files, and `tabserve.spark` on a real local
Spark, against the real gunicorn's answers to the same rows as JSON records."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet
import pytest
import requests

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import BROUGHT_KINDS, PYTHON, ROOT, brought_bundle
from tabserve.batch.files import InputFile, csv_options
from tabserve.model.bundle import ModelBundle
from tabserve.model.schema import MISSING_TOKENS, Kind

TELCO = ROOT / "data" / "telco_churn.csv"


def run_score(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, str(ROOT / "score.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def rows(telco_bundle) -> pd.DataFrame:
    """Telco rows as a CSV holds them, with an id, and with what clients really send: missing
    cells, unseen levels, booleans spelled every accepted way, stray spaces, numbers out of the
    training range, and rows the API refuses (text in a number, a required cell empty)."""
    frame = pd.read_csv(TELCO, dtype=str, keep_default_na=False).head(240)
    frame.insert(0, "customer_id", [f"C{i:04d}" for i in range(len(frame))])
    schema = telco_bundle.schema
    booleans = [f.name for f in schema.fields if f.kind is Kind.BOOLEAN]
    categoricals = [f.name for f in schema.fields if f.kind is Kind.CATEGORICAL]
    nullable = [f.name for f in schema.fields if f.nullable]
    spellings = ["yes", "NO", "True", "false", "1", "0", "Y", "n", " t ", "F"]
    for i, name in enumerate(booleans):
        frame.loc[frame.index % 7 == i % 7, name] = spellings[i % len(spellings)]
    frame.loc[3, categoricals[0]] = "Quantum subscription"  # an unseen level: a warning
    frame.loc[5, categoricals[1]] = f"{frame.loc[5, categoricals[1]].upper()}  "
    frame.loc[9, "tenure"] = "900"  # outside the training range: a warning
    frame.loc[11, "tenure"] = "twelve"  # refused: text in a number
    frame.loc[13, "monthlycharges"] = ""  # refused unless nullable
    for i, name in enumerate(nullable):
        frame.loc[20 + i, name] = "NA"
    return frame


def record_of(row: pd.Series, schema) -> dict:
    """The row as a client's JSON record: numbers as numbers, missing as null, text as sent."""
    record = {}
    for f in schema.fields:
        text = row[f.name]
        if text.strip() in MISSING_TOKENS:
            record[f.name] = None
        elif f.kind is Kind.NUMERIC:
            try:
                record[f.name] = float(text)
            except ValueError:
                record[f.name] = text
        else:
            record[f.name] = text
    return record


def api_answers(server: str, frame: pd.DataFrame, schema) -> list[tuple[int, dict]]:
    return [(answer.status_code, answer.json()) for answer in (
        requests.post(f"{server}/predict", json=record_of(row, schema), timeout=30)
        for _, row in frame.iterrows())]


def assert_matches_the_api(scored: pd.DataFrame, rejects: pd.DataFrame, expected, bundle,
                           id_column: str = "customer_id", error_column: str | None = None):
    """Each row answered by the API is in `scored` with the same answer (to 1e-6) and
    warnings; each row the API refused (422) is in `rejects` with the same problems."""
    target = bundle.schema.target
    by_id = scored.set_index(id_column)
    refused = rejects.set_index(id_column)
    for i, (status, answer) in enumerate(expected):
        key = f"C{i:04d}"
        if status == 422:
            assert key in refused.index and key not in by_id.index, key
            problems = refused.loc[key, error_column or "problems"]
            assert problems == "; ".join(f"{e['field']}: {e['message']}"
                                         for e in answer["errors"])
            continue
        assert status == 200, answer
        row = by_id.loc[key]
        assert row["label"] == answer["label"]
        for label, p in answer["probabilities"].items():
            assert float(row[f"probability_{label}"]) == pytest.approx(p, abs=1e-6)
        assert float(row[f"{target}_probability"]) == \
            pytest.approx(answer[f"{target}_probability"], abs=1e-6)
        assert str(row[target]).lower() == str(answer[target]).lower()
        assert row["model_version"] == answer["model_version"]
        shown = row["warnings"]
        shown = "" if shown is None or (isinstance(shown, float) and math.isnan(shown)) else shown
        assert shown == "; ".join(answer.get("warnings", [])), key


def test_score_py_answers_each_row_as_the_api_does(rows, tmp_path, telco_server, telco_bundle):
    source, output = tmp_path / "customers.csv", tmp_path / "scores.csv"
    rows.to_csv(source, index=False)
    done = run_score("--input", str(source), "--output", str(output), "--workers", "2",
                     "--chunk-rows", "50", "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    scored = pd.read_csv(output, dtype=str, keep_default_na=False)
    rejects = pd.read_csv(tmp_path / "scores.rejects.csv", dtype=str, keep_default_na=False)
    expected = api_answers(telco_server, rows, telco_bundle.schema)
    assert sum(status == 422 for status, _ in expected) >= 2  # the test has refusals to check
    assert any("unseen category" in "".join(a.get("warnings", [])) for _, a in expected)
    assert_matches_the_api(scored, rejects, expected, telco_bundle)
    # the input's order, kept through chunks of 50 and two workers; every input column kept
    assert list(scored["customer_id"]) == [f"C{i:04d}" for i, (s, _) in enumerate(expected)
                                           if s == 200]
    assert list(scored.columns[:len(rows.columns)]) == \
        [c if c != "churn" else "churn_input" for c in rows.columns]
    # rejects name their line in the input file (the header is line 1)
    lines = dict(zip(rejects["customer_id"], rejects["line"].astype(int)))
    assert lines["C0011"] == 13 and lines["C0013"] == 15
    # a kept numeric field is written as the number read (unquoted, a missing one empty);
    # other columns as the text they held
    cells = {}
    for line in output.read_text().splitlines()[1:]:
        found = re.findall(r'(?:^|,)("(?:[^"]|"")*"|[^,"]*)', line)
        cells[found[0].strip('"')] = dict(zip(scored.columns, found))
    assert cells["C0009"]["tenure"] == "900" and cells["C0002"]["tenure"] == "2"
    assert cells["C0000"]["monthlycharges"] == "29.85"
    assert cells["C0000"]["gender"] == '"female"'
    numeric = {f.name for f in telco_bundle.schema.fields if f.kind is Kind.NUMERIC}
    nullable = [f.name for f in telco_bundle.schema.fields if f.nullable]
    missing = [(f"C{20 + i:04d}", name) for i, name in enumerate(nullable) if name in numeric]
    assert missing and all(cells[row][name] == "" for row, name in missing)
    assert f"scored {len(scored):,} of {len(rows):,} rows" in done.stdout


@pytest.mark.process
def test_parquet_in_and_out_gives_the_same_answers(rows, tmp_path, telco_bundle):
    csv_out = tmp_path / "a.csv"
    rows.to_csv(tmp_path / "in.csv", index=False)
    assert run_score("--input", str(tmp_path / "in.csv"), "--output", str(csv_out),
                     "--quiet").returncode == 0
    typed = rows.copy()
    typed["tenure"] = pd.to_numeric(typed["tenure"], errors="coerce")  # a typed column
    pa.parquet.write_table(pa.Table.from_pandas(typed, preserve_index=False), tmp_path / "in.pq")
    done = run_score("--input", str(tmp_path / "in.pq"), "--output", str(tmp_path / "b.parquet"),
                     "--keep", "customer_id", "--quiet")
    assert done.returncode == 0, done.stderr
    from_csv = pd.read_csv(csv_out).set_index("customer_id")
    from_parquet = pa.parquet.read_table(tmp_path / "b.parquet").to_pandas()
    assert list(from_parquet.columns[:2]) == ["customer_id", "label"]
    from_parquet = from_parquet.set_index("customer_id")
    # tenure "twelve" is null in the typed column: that row is refused for another reason now
    common = from_csv.index.intersection(from_parquet.index)
    assert len(common) >= len(from_csv) - 1
    target = telco_bundle.schema.target
    np.testing.assert_allclose(from_parquet.loc[common, f"{target}_probability"],
                               from_csv.loc[common, f"{target}_probability"], atol=1e-12)
    assert (from_parquet.loc[common, "label"] == from_csv.loc[common, "label"]).all()
    assert from_parquet[target].dtype == bool


@pytest.mark.process
def test_past_the_reject_rate_the_run_fails_and_writes_no_output(rows, tmp_path):
    rows.to_csv(tmp_path / "in.csv", index=False)
    output = tmp_path / "out.csv"
    done = run_score("--input", str(tmp_path / "in.csv"), "--output", str(output),
                     "--max-reject-rate", "0.001", "--quiet")
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    assert "rows rejected" in done.stderr and "--max-reject-rate" in done.stderr
    assert not output.exists() and (tmp_path / "out.rejects.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.rejects.csv"]
    assert run_score("--input", str(tmp_path / "in.csv"), "--output", str(output),
                     "--max-reject-rate", "0.5", "--quiet").returncode == 0


def _bad_csv_mid_file(path: Path) -> None:
    text = TELCO.read_text().splitlines()
    path.write_text("\n".join(text[:3000] + [text[3000] + ",extra,cells"] + text[3001:]) + "\n")


@pytest.mark.parametrize("make, says", [
    (lambda p: None, "file not found"),
    (lambda p: p.write_bytes(b"\x00\x01binary\x00"), "binary"),
    (lambda p: p.write_text("a,b\n1,2\n"), "the model needs columns the file lacks"),
    (lambda p: p.write_text(TELCO.read_text().replace("tenure", "Tenure", 1)),
     "'tenure' (the file has 'Tenure')"),
    (lambda p: p.write_text(TELCO.read_text().splitlines()[0] + "\n"), "no rows"),
    (_bad_csv_mid_file, "not a valid CSV after line"),
])
@pytest.mark.process
def test_a_file_that_cannot_be_scored_ends_in_one_line_and_leaves_nothing(tmp_path, make, says):
    source = tmp_path / "in.csv"
    make(source)
    done = run_score("--input", str(source), "--output", str(tmp_path / "out.csv"),
                     "--chunk-rows", "1000", "--quiet")
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert says in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == (["in.csv"] if source.exists() else [])


@pytest.mark.process
def test_options_that_cannot_work_are_refused(rows, tmp_path):
    rows.to_csv(tmp_path / "in.csv", index=False)
    for args, says in [(["--keep", "nope"], "--keep names columns the input lacks: nope"),
                       (["--output", str(tmp_path / "out.xlsx")], "must end in .csv or .parquet"),
                       (["--rejects", str(tmp_path / "r.parquet")], "rejects file is a CSV")]:
        options = {"--output": str(tmp_path / "out.csv"), **dict(zip(args[::2], args[1::2]))}
        done = run_score("--input", str(tmp_path / "in.csv"),
                         *[x for pair in options.items() for x in pair], "--quiet")
        assert done.returncode == 1 and says in done.stderr, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


@pytest.mark.process
def test_progress_names_rows_rate_and_time_left(tmp_path):
    big = pd.concat([pd.read_csv(TELCO, dtype=str, keep_default_na=False)] * 30)
    big.to_csv(tmp_path / "in.csv", index=False)
    done = subprocess.run([PYTHON, str(ROOT / "score.py"), "--input", str(tmp_path / "in.csv"),
                           "--output", str(tmp_path / "out.csv"), "--chunk-rows", "5000"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TABSERVE_PROGRESS_SECONDS": "0"})
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines and all(line.startswith("score: ") and "rows/s" in line and "s left" in line
                         for line in lines)
    assert len(pd.read_csv(tmp_path / "out.csv", usecols=["label"])) == len(big)


# --- CSV spans: what the workers read ------------------------------------------------------

SPAN_CASES = {
    "quoted line breaks": b'a,b\n1,"x\ny"\n2,z\n',
    "semicolons": b"a;b\n1;x\n2;y\n",
    "BOM and CRLF": b"\xef\xbb\xbfa,b\r\n1,2\r\n3,4\r\n",
    "doubled quotes": b'a,b\n"1","he said ""hi"""\n2,"x,y"\n',
    "quoted header": b'"a","b"\n"1","x\n\ny"\n"2",""\n',
    "blank lines": b"a,b\n1,2\n\n3,4\n",
    "no final line break": b"a,b\n1,2\n3,4",
    "breaks in every record": b"a,b\n" + b"".join(b'%d,"l1\nl2\r\nl3 ""q"" \n"\n' % i
                                                   for i in range(30)),
    "a literal quote in a cell": b'a,b\n1,x\n2,5\'11"\n3,"x\ny"\n4,z\n',
    "bare carriage returns": b"a,b\r1,2\r3,4\r",
}


def read_in_chunks(path: Path, chunk_rows: int) -> tuple[pa.Table, set[str]]:
    """The file as score.py's workers get it (each chunk read as a worker reads it), and
    which kinds of chunk it took."""
    chunks = list(InputFile(path, chunk_rows).chunks())
    return pa.concat_tables([c.read() for c in chunks]), {type(c).__name__ for c in chunks}


def read_whole(path: Path) -> pa.Table:
    source = InputFile(path, 1)
    return pyarrow.csv.read_csv(path, **csv_options(source.columns, source.delimiter, 1))


@pytest.mark.parametrize("chunk_rows", [1, 2, 1000])
@pytest.mark.parametrize("content", SPAN_CASES.values(), ids=SPAN_CASES.keys())
def test_a_csv_read_in_spans_is_the_file_read_whole(tmp_path, content, chunk_rows):
    """Workers read byte spans that end where records end, quoted line breaks included;
    where quotes cannot be followed by counting, the parent parses the rest itself."""
    path = tmp_path / "in.csv"
    path.write_bytes(content)
    table, kinds = read_in_chunks(path, chunk_rows)
    assert table.equals(read_whole(path))
    if b"'11" in content or b"\n" not in content:
        assert "Chunk" in kinds  # the parent's parsing, from the literal quote's span on
    else:
        assert kinds == {"CsvSpan"}


CSV_CELLS = st.one_of(
    st.sampled_from(["1", "2.5", "abc", "", "x y", 'q"uote']),
    st.lists(st.sampled_from(["a", ",", "\n", '""', "\r\n", " "]), max_size=5).map(
        lambda parts: '"' + "".join(parts) + '"'))


@settings(max_examples=int(os.environ.get("TABSERVE_FUZZ_EXAMPLES", 300)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), chunk_rows=st.integers(1, 5))
def test_any_csv_pyarrow_reads_is_read_alike_in_spans(tmp_path_factory, data, chunk_rows):
    rows = data.draw(st.lists(st.lists(CSV_CELLS, min_size=3, max_size=3), min_size=1,
                              max_size=30))
    ending = data.draw(st.sampled_from(["\n", "\r\n"]))
    text = ending.join(["a,b,c"] + [",".join(row) for row in rows]) + data.draw(
        st.sampled_from(["", ending]))
    path = tmp_path_factory.mktemp("spans") / "in.csv"
    path.write_bytes(text.encode())
    try:
        whole = read_whole(path)
    except pa.ArrowInvalid:  # not a CSV: a refusal is another test's
        return
    assert read_in_chunks(path, chunk_rows)[0].equals(whole)


# --- Spark ---------------------------------------------------------------------------------

def test_spark_answers_each_row_as_the_api_and_score_py_do(spark, rows, tmp_path, telco_server,
                                                           telco_bundle):
    from tabserve.spark import predict

    source = tmp_path / "customers.csv"
    rows.to_csv(source, index=False)
    df = spark.read.csv(str(source), header=True)  # every column as text, as score.py reads
    scored = predict(df, ROOT / "model.bin").repartition(3).toPandas()
    assert len(scored) == len(rows)  # a bad row never fails the job, nor disappears
    good = scored[scored["error"].isna()]
    bad = scored[scored["error"].notna()]
    assert bad[["label", "probability_yes"]].isna().all().all()
    expected = api_answers(telco_server, rows, telco_bundle.schema)
    assert_matches_the_api(good, bad, expected, telco_bundle, error_column="error")
    assert "churn_input" in scored.columns  # the file's own target, beside the answer


def test_spark_reads_typed_columns_as_the_api_reads_numbers(spark, rows, telco_bundle):
    from tabserve.serving.codecs.json_answers import JsonAnswers
    from tabserve.serving.core import Predictor
    from tabserve.spark import predict

    chosen = rows.iloc[40:80]
    typed = chosen.copy()
    for f in telco_bundle.schema.fields:
        if f.kind is Kind.NUMERIC:
            typed[f.name] = pd.to_numeric(typed[f.name], errors="coerce")
    answers = predict(spark.createDataFrame(typed), str(ROOT / "model.bin")).toPandas()
    expected = JsonAnswers(Predictor(telco_bundle)).for_records(
        [record_of(row, telco_bundle.schema) for _, row in chosen.iterrows()])
    assert answers["error"].isna().all()
    assert list(answers["customer_id"]) == list(chosen["customer_id"])
    np.testing.assert_allclose(answers["churn_probability"],
                               [a["churn_probability"] for a in expected], atol=1e-6)


def test_spark_refuses_a_dataframe_without_the_models_columns(spark):
    from tabserve.spark import predict

    df = spark.createDataFrame([(1, "x")], ["a", "b"])
    with pytest.raises(ValueError, match="lacks columns the model needs: .*tenure"):
        predict(df, ROOT / "model.bin")


def test_an_executor_process_loads_the_bundle_once(monkeypatch):
    """What each executor's Python worker runs per batch: the scorer for the shipped path,
    loaded on the first batch and reused by the next (Spark reuses its Python workers)."""
    import tabserve.batch.spark as spark_module

    loads = []
    real_load = spark_module.load_trusted
    monkeypatch.setattr(spark_module, "_loaded", {})
    monkeypatch.setattr(spark_module, "load_trusted",
                        lambda *args: loads.append(args) or real_load(*args))
    first = spark_module._scorer(str(ROOT / "model.bin"))
    assert all(spark_module._scorer(str(ROOT / "model.bin")) is first for _ in range(5))
    assert len(loads) == 1


def test_a_local_spark_whose_workers_lack_pandas_stops_with_one_line(spark, tmp_path):
    """As a user starts it: a SparkSession from the venv's Python, with Spark's workers on
    `python3` from PATH, which has no pandas (here a stand-in that fails every import)."""
    from tabserve.spark import SparkSetupError, predict

    python = tmp_path / "python3"
    python.write_text("#!/bin/sh\nexit 1\n")
    python.chmod(0o755)
    context = spark.sparkContext
    kept, context.pythonExec = context.pythonExec, str(python)
    try:
        with pytest.raises(SparkSetupError, match=r"set PYSPARK_PYTHON=\S+python") as raised:
            predict(spark.createDataFrame([(1, "x")], ["a", "b"]), ROOT / "model.bin")
        assert "\n" not in str(raised.value)
    finally:
        context.pythonExec = kept


# --- every door serves each kind users bring (issue 43) -------------------------------------

@pytest.fixture(scope="module", params=BROUGHT_KINDS, ids=list(BROUGHT_KINDS))
def brought(request, tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    return brought_bundle(request.param, tmp_path_factory.mktemp(request.param))


def test_each_brought_kind_answers_alike_through_spark_and_monitor_py(spark, brought):
    """LightGBM and CatBoost (as data) and an ONNX graph (by onnxruntime) through doors
    test_import and test_onnx do not open: Spark and monitor.py, against the in-process
    service on the same held-out rows (the Lambda handler: test_lambda)."""
    from tabserve.serving.codecs.json_answers import JsonAnswers
    from tabserve.serving.core import Predictor
    from tabserve.spark import predict

    path, held_out = brought
    bundle = ModelBundle.load(path)
    expected = JsonAnswers(Predictor(bundle)).for_records(
        [record_of(row, bundle.schema) for _, row in held_out.iterrows()])
    scored = predict(spark.read.csv(str(path.parent / "held_out.csv"), header=True),
                     path).toPandas()
    assert scored["error"].isna().all()
    np.testing.assert_allclose(scored[[f"probability_{c}" for c in bundle.classes]]
                               .to_numpy(float),
                               [[e["probabilities"][c] for c in bundle.classes]
                                for e in expected], rtol=0, atol=1e-6)
    report = path.parent / "drift"
    done = subprocess.run([PYTHON, "monitor.py", "--model", str(path), "--data",
                           str(path.parent / "held_out.csv"), "--min-records", "100",
                           "--report", str(report)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    drift = json.loads((report / "drift.json").read_text())
    assert drift["records"] == len(held_out), drift
