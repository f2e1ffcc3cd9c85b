"""Drift: the profile in the bundle, the counts of served records (every path, every worker),
`GET /drift`, its reset, the Prometheus series and rules against a real Prometheus, and
`monitor.py` on real CSVs."""

from __future__ import annotations

import os
import json
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import requests
from helpers import (PYTHON, ROOT, free_port, need_tool, records_from_csv, start_gunicorn, stop,
                     wait_for)
from prometheus_client.parser import text_string_to_metric_families

from tabserve.model.bundle import ModelBundle
from tabserve.model.profile import psi
from tabserve.model.trust import Trust
from tabserve.serving.drift import MIN_RECORDS, UNSEEN_KEPT, CountLayout, keep_frequent
from tabserve.tables import load_csv
from tabserve.training.trainer import split_rows
from tabserve.web.app import create_app
from tabserve.web.config import ConfigError, Settings

TELCO = ROOT / "data" / "telco_churn.csv"
MONITORING = ROOT / "deploy" / "monitoring"
LEGACY = ROOT / "tests" / "fixtures" / "legacy"


@pytest.fixture(scope="module")
def telco_frame() -> pd.DataFrame:
    return load_csv(TELCO)


@pytest.fixture(scope="module")
def telco_test_rows(telco_frame) -> pd.DataFrame:
    """The rows of training's test split (same seed, same split as the committed model)."""
    committed = ModelBundle.load(ROOT / "model.bin")
    y = telco_frame["churn"].map({c: i for i, c in enumerate(committed.classes)}).to_numpy()
    split = split_rows(telco_frame[[*committed.schema.names, "churn"]], y, seed=1, folds=5)
    assert len(split.test) == committed.metrics["rows"]["test"]
    return telco_frame.iloc[np.sort(split.test)].reset_index(drop=True)


def days_not_months(frame: pd.DataFrame) -> pd.DataFrame:
    """The test rows as a client sending `tenure` in days would send them."""
    shifted = frame.copy()
    shifted["tenure"] = (pd.to_numeric(shifted["tenure"]) * 30).astype(int).astype(str)
    return shifted


def drift_of(client) -> dict:
    answer = client.get("/drift")
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def by_field(report: dict) -> dict[str, dict]:
    return {f["field"]: f for f in report["fields"]}


# --- the profile --------------------------------------------------------------------------

def test_every_new_bundle_has_a_profile_of_its_training_rows(loan_bundle, flower_bundle,
                                                             telco_bundle):
    for bundle in (loan_bundle, flower_bundle, telco_bundle):
        profile = bundle.profile
        assert [f.name for f in profile.fields] == bundle.schema.names
        for fp in [*profile.fields, profile.score]:
            assert sum(fp.shares) == pytest.approx(1.0)
            assert len(fp.shares) == len(fp.bins) and fp.bins[-1] == "(missing)"
    # a number's deciles hold about a tenth of the rows each; levels their own share
    tenure = telco_bundle.profile.fields[telco_bundle.schema.names.index("tenure")]
    assert len(tenure.edges) == 9 and max(tenure.shares) < 0.12
    contract = telco_bundle.profile.fields[telco_bundle.schema.names.index("contract")]
    assert contract.bins == ("month-to-month", "two_year", "one_year", "(other)", "(missing)")
    assert telco_bundle.profile.score.shares[:10] == pytest.approx([0.1] * 10, abs=0.01)
    # a multiclass model's scores are its predicted classes
    assert flower_bundle.profile.score.bins[:3] == tuple(flower_bundle.classes)


def test_get_model_shows_the_profile(client, telco_bundle):
    shown = client.get("/model").get_json()["profile"]
    assert shown["rows"] == telco_bundle.profile.rows
    assert [f["field"] for f in shown["fields"]] == telco_bundle.schema.names
    assert shown["fields"][0]["bins"][0].keys() == {"bin", "share"}


@pytest.mark.parametrize("name", ["telco", "loans", "flowers"])
def test_old_bundles_load_and_say_drift_is_unavailable(name):
    bundle = ModelBundle.load(LEGACY / f"{name}.bin", Trust(allow_pickle=True))
    assert bundle.profile is None
    client = create_app(bundle, Settings()).test_client()
    assert client.post("/predict", json=bundle.example).status_code == 200
    for answer in (client.get("/drift"), client.post("/drift/reset")):
        assert answer.status_code == 501
        assert "retrain it with `.venv/bin/python train.py`" in answer.get_json()["detail"]
    assert "tabserve_drift" not in client.get("/metrics").get_data(as_text=True)


def test_monitoring_off_counts_nothing(telco_bundle, telco_record):
    client = create_app(telco_bundle, Settings(monitoring=False)).test_client()
    assert client.post("/predict", json=telco_record).status_code == 200
    answer = client.get("/drift")
    assert answer.status_code == 501 and "MONITORING=off" in answer.get_json()["detail"]
    assert "tabserve_drift" not in client.get("/metrics").get_data(as_text=True)


@pytest.mark.parametrize("raw, on", [("off", False), ("OFF", False), ("0", False), ("on", True),
                                     ("", True), ("true", True)])
def test_the_monitoring_setting(raw, on):
    assert Settings.from_env({"MONITORING": raw}).monitoring is on


def test_a_bad_monitoring_setting_is_named():
    with pytest.raises(ConfigError, match="MONITORING must be on or off, got 'sometimes'"):
        Settings.from_env({"MONITORING": "sometimes"})
    with pytest.raises(ConfigError, match="DRIFT_MIN_RECORDS must be a positive integer"):
        Settings.from_env({"DRIFT_MIN_RECORDS": "0"})


def test_psi():
    assert psi([0.5, 0.5, 0.0], [0.5, 0.5, 0.0]) == 0.0
    assert psi([0.5, 0.5], [0.9, 0.1]) == pytest.approx(0.8788898, abs=1e-6)
    # an empty bin counts as a share of 0.0001, not as an infinite term
    assert psi([0.5, 0.5, 0.0], [0.5, 0.4, 0.1]) == pytest.approx(
        0.1 * np.log(0.4 / 0.5) * -1 + (0.1 - 0.0001) * np.log(0.1 / 0.0001), abs=1e-9)


# --- counting and /drift ------------------------------------------------------------------

def test_before_enough_records_drift_says_so(client, telco_record):
    for _ in range(3):
        client.post("/predict", json=telco_record)
    report = drift_of(client)
    assert report["records"] == 3 and report["enough"] is False
    assert report["minimum_records"] == MIN_RECORDS == 500
    assert "drift is judged from 500 on" in report["detail"] and "by chance" in report["detail"]
    assert all(f["psi"] is None and f["status"] == "too few records" for f in report["fields"])
    assert report["score"]["psi"] is None


def test_every_path_counts_the_same(telco_bundle, telco_test_rows):
    """One record at a time (the plain row path), as batches (the plain columns path), with an
    extra field (the general path, with a warning) and through the inference protocol: the
    same records give the same counts, bin for bin."""
    records = records_from_csv(telco_test_rows.head(120), telco_bundle.schema)

    def counted(send) -> np.ndarray:
        app = create_app(telco_bundle, Settings(max_batch_records=1000))
        send(app.test_client())
        current = app.extensions["tabserve"]
        return current.drift.store.totals()

    def one_by_one(c):
        for r in records:
            assert c.post("/predict", json=r).status_code == 200

    def batches(c):
        for i in range(0, len(records), 50):
            assert c.post("/predict", json=records[i:i + 50]).status_code == 200

    def general(c):
        answer = c.post("/predict", json=[{**r, "customer_id": "x"} for r in records])
        assert answer.status_code == 200 and "warnings" in answer.get_json()[0]

    def protocol(c):
        inputs = [{"name": name, "shape": [len(records)], "datatype": "BYTES",
                   "data": [r[name] for r in records]} for name in telco_bundle.schema.names]
        for item in inputs:
            if all(isinstance(v, (int, float)) or v is None for v in item["data"]):
                item["datatype"] = "FP64"
        assert c.post("/v2/models/churn/infer", json={"inputs": inputs}).status_code == 200

    expected = counted(one_by_one)
    assert expected[CountLayout(telco_bundle.profile).records_at] == len(records)
    for send in (batches, general, protocol):
        assert np.array_equal(counted(send), expected), send.__name__


def test_the_readiness_probe_and_explanations_are_not_counted(client, telco_record):
    client.get("/ready")
    client.post("/explain", json=telco_record)
    assert drift_of(client)["records"] == 0


def test_records_drawn_from_the_training_data_are_stable(telco_bundle, telco_frame):
    client = create_app(telco_bundle, Settings()).test_client()
    sample = telco_frame.sample(2000, random_state=7)
    records = records_from_csv(sample, telco_bundle.schema)
    for record in records[:200]:
        client.post("/predict", json=record)
    client.post("/predict", json=records[200:])
    report = drift_of(client)
    assert report["records"] == 2000 and report["enough"]
    assert [f["status"] for f in report["fields"]] == ["stable"] * len(report["fields"])
    assert max(f["psi"] for f in report["fields"]) < 0.1
    assert report["score"]["status"] == "stable"


def test_tenure_in_days_is_major_and_first_and_the_rest_stable(telco_bundle, telco_test_rows):
    client = create_app(telco_bundle, Settings(max_batch_records=5000)).test_client()
    shifted = records_from_csv(days_not_months(telco_test_rows), telco_bundle.schema)
    assert client.post("/predict", json=shifted).status_code == 200
    report = drift_of(client)
    first, *rest = report["fields"]
    assert first["field"] == "tenure" and first["status"] == "major" and first["psi"] > 1
    assert {f["field"]: f["status"] for f in rest} == {f["field"]: "stable" for f in rest}
    assert [f["psi"] for f in report["fields"]] == sorted((f["psi"] for f in report["fields"]),
                                                         reverse=True)
    # a model fed days where it learnt months scores differently too
    assert report["score"]["status"] == "major"


def test_a_new_contract_level_shows_as_unseen_and_named(telco_bundle, telco_test_rows):
    client = create_app(telco_bundle, Settings(max_batch_records=5000)).test_client()
    records = records_from_csv(telco_test_rows, telco_bundle.schema)
    for record in records[:141]:
        record["contract"] = "Four year"
    for record in records[141:150]:
        record["contract"] = " Decade "  # named as the warning names it: stripped
    answers = client.post("/predict", json=records).get_json()
    assert "unseen category 'Four year'" in answers[0]["warnings"][0]
    contract = by_field(drift_of(client))["contract"]
    assert contract["unseen_share"] == pytest.approx(150 / len(records))
    assert contract["unseen_levels"] == [
        {"level": "Four year", "records": 141, "share": pytest.approx(141 / len(records))},
        {"level": "Decade", "records": 9, "share": pytest.approx(9 / len(records))}]
    other = next(b for b in contract["bins"] if b["bin"] == "(other)")
    assert other["share"] == pytest.approx(150 / len(records)) and other["reference_share"] == 0
    assert contract["status"] == "major"
    assert by_field(drift_of(client))["tenure"]["unseen_levels"] == []
    client.post("/drift/reset")
    assert by_field(drift_of(client))["contract"]["unseen_levels"] == []


def test_the_drift_plot_shows_the_fields_of_largest_psi_only(tmp_path, monkeypatch):
    import tabserve.monitoring.plots as plots
    from tabserve.monitoring.offline import write_report

    drawn = []
    monkeypatch.setattr(plots, "plot_distributions", lambda d, path, title: drawn.append(d))
    bins = [{"bin": "a", "share": 0.5, "reference_share": 0.5}]
    fields = [{"field": f"x{i}", "psi": 1 / (i + 1), "status": "stable", "missing_rate": 0.0,
               "reference_missing_rate": 0.0, "unseen_share": 0.0, "unseen_levels": [],
               "bins": bins} for i in range(40)]
    report = {"model_version": "v", "data": "new.csv", "rejected_rows": 0, "records": 600,
              "enough": True, "fields": fields, "score": {"psi": 0.0, "status": "stable",
                                                          "bins": bins}}
    write_report(report, tmp_path)
    assert [d["field"] for d in drawn[0]] == [f"x{i}" for i in range(30)] + ["score"]
    assert "`x39`" in (tmp_path / "drift.md").read_text()  # the table keeps every field


def test_a_frequent_unseen_level_is_kept_however_many_rare_ones_came_first():
    tally: dict[str, int] = {}
    for rare in range(3 * UNSEEN_KEPT):
        keep_frequent(tally, f"rare {rare}", 1)
    for _ in range(5):
        keep_frequent(tally, "Four year", 10)
    assert len(tally) == UNSEEN_KEPT
    assert max(tally, key=tally.__getitem__) == "Four year" and tally["Four year"] >= 50


def test_the_drift_plot_is_legible(telco_bundle):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from tabserve.monitoring.plots import distributions_figure

    distributions = [{"field": fp.name, "psi": 0.0, "bins": [
        {"bin": name, "reference_share": share, "share": share}
        for name, share in zip(fp.bins, fp.shares)]} for fp in telco_bundle.profile.fields]
    figure = distributions_figure(distributions, "Now (a long file name.csv) against training")
    FigureCanvasAgg(figure).draw()
    renderer = figure.canvas.get_renderer()
    shown = [ax for ax in figure.axes if ax.get_visible()]
    boxes = [ax.get_tightbbox(renderer) for ax in shown]  # each chart with its labels
    title = figure.get_suptitle() and figure._suptitle.get_window_extent(renderer)
    assert not any(title.overlaps(box) for box in boxes)
    for i, box in enumerate(boxes):
        assert not any(box.overlaps(other) for other in boxes[i + 1:]), shown[i].get_title()
    for ax, dist in zip(shown, distributions):
        labels = [label.get_text().replace("_\n", "_").replace("\n", " ")
                  for label in ax.get_xticklabels()]
        assert labels == [b["bin"] for b in dist["bins"] if b["reference_share"]]


def test_a_field_sent_missing_shows_in_its_missing_rate(loan_bundle, loan_csv):
    client = create_app(loan_bundle, Settings(drift_min_records=100)).test_client()
    records = records_from_csv(load_csv(loan_csv), loan_bundle.schema)
    for record in records:
        record["income"] = None
    assert client.post("/predict", json=records).status_code == 200
    income = by_field(drift_of(client))["income"]
    assert income["missing_rate"] == 1.0 and income["reference_missing_rate"] < 0.1
    assert income["status"] == "major"


def test_reset_starts_the_report_afresh_and_metrics_keep_counting(telco_bundle, telco_record):
    client = create_app(telco_bundle, Settings()).test_client()
    for _ in range(4):
        client.post("/predict", json=telco_record)
    assert client.post("/drift/reset").get_json() == {"status": "reset", "records_before": 4}
    client.post("/predict", json=telco_record)
    assert drift_of(client)["records"] == 1
    assert counted_records(client.get("/metrics").get_data(as_text=True)) == 5


def counted_records(exposition: str) -> float:
    for family in text_string_to_metric_families(exposition):
        if family.name == "tabserve_drift_counted_records":
            return family.samples[0].value
    raise AssertionError("no tabserve_drift_counted_records in /metrics")


def test_metrics_expose_every_bin_and_the_reference(client, telco_bundle, telco_record):
    client.post("/predict", json=telco_record)
    families = {f.name: f for f in text_string_to_metric_families(
        client.get("/metrics").get_data(as_text=True))}
    profile = telco_bundle.profile
    records = families["tabserve_drift_records"].samples
    assert len(records) == sum(len(f.bins) for f in profile.fields)
    assert sum(s.value for s in records) == len(profile.fields)  # one record, one bin each
    reference = {(s.labels["field"], s.labels["bin"]): s.value
                 for s in families["tabserve_drift_reference_share"].samples}
    assert reference[("contract", "month-to-month")] == profile.fields[
        telco_bundle.schema.names.index("contract")].shares[0]
    assert {s.labels["field"] for s in families["tabserve_drift_unseen_records"].samples} == {
        f.name for f in telco_bundle.schema.fields if f.kind.value == "categorical"}
    assert len(families["tabserve_drift_score_records"].samples) == len(profile.score.bins)


# --- the real gunicorn: every worker's records --------------------------------------------

@pytest.mark.process
def test_counts_are_exact_across_two_workers_and_sighup_resets(telco_bundle, telco_test_rows,
                                                               tmp_path):
    metrics_dir = tmp_path / "metrics"
    process, url = start_gunicorn(ROOT / "model.bin", WEB_CONCURRENCY="2",
                                  PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    try:
        records = records_from_csv(telco_test_rows.head(400), telco_bundle.schema)
        for record in records[::20]:
            record["contract"] = "Four year"
        with requests.Session() as session, ThreadPoolExecutor(8) as pool:
            answered = list(pool.map(
                lambda r: requests.post(f"{url}/predict", json=r, timeout=10).status_code,
                records))
            assert answered == [200] * 400
            assert session.post(f"{url}/predict", json=records[:100],
                                timeout=10).status_code == 200
        counted_by = list(metrics_dir.glob("drift_*.counts"))
        assert len(counted_by) == 2, "both workers should have answered some records"
        # whichever worker answers, every worker's records are in the report
        for _ in range(6):
            report = requests.get(f"{url}/drift", timeout=10).json()
            assert report["records"] == 500 and report["enough"]
            assert counted_records(requests.get(f"{url}/metrics", timeout=10).text) == 500
            assert by_field(report)["contract"]["unseen_levels"] == [
                {"level": "Four year", "records": 25, "share": 25 / 500}]  # 20 + 5 in the batch
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: requests.get(f"{url}/drift", timeout=10).json()["records"] == 0, 60,
                 "SIGHUP to reset the drift report")
        requests.post(f"{url}/predict", json=records[0], timeout=10)
        report = requests.get(f"{url}/drift", timeout=10).json()
        assert report["records"] == 1  # records[0] holds the new level: counted since the reset
        assert by_field(report)["contract"]["unseen_levels"] == [
            {"level": "Four year", "records": 1, "share": 1.0}]
        assert counted_records(requests.get(f"{url}/metrics", timeout=10).text) == 501
    finally:
        assert stop(process) == 0
    assert "Traceback" not in process.error_path.read_text()


# --- a real Prometheus --------------------------------------------------------------------

def prometheus_binary() -> str:
    return need_tool("prometheus")


@pytest.mark.process
def test_the_rules_pass_promtool():
    promtool = need_tool("promtool")
    for args in (["check", "rules", "drift-rules.yml"], ["check", "config", "prometheus.yml"],
                 ["test", "rules", "drift-rules.test.yml"]):
        done = subprocess.run([promtool, *args], cwd=MONITORING, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_dashboard_is_grafana_json_over_the_rules():
    dashboard = json.loads((MONITORING / "grafana-drift.json").read_text())
    rules = (MONITORING / "drift-rules.yml").read_text()
    assert dashboard["uid"] == "tabserve-drift" and dashboard["panels"]
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            recorded = [word for word in target["expr"].replace("(", " ").replace("{", " ").split()
                        if word.startswith("tabserve:")]
            assert recorded and all(f"record: {name}" in rules for name in recorded), target


@pytest.mark.slow
def test_prometheus_computes_the_drift_from_the_real_server(telco_bundle, telco_test_rows,
                                                            tmp_path):
    """gunicorn (2 workers) scraped every second by a real Prometheus with our rules: after
    tenure is sent in days, the PSI series read back from Prometheus' API rank tenure first
    and major, the other fields stable, the major-drift alert pending, and every panel of the
    dashboard has data."""
    process, url = start_gunicorn(ROOT / "model.bin", WEB_CONCURRENCY="2")
    port = free_port()
    shutil.copy(MONITORING / "drift-rules.yml", tmp_path / "drift-rules.yml")
    (tmp_path / "prometheus.yml").write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "drift-rules.yml")],
        "scrape_configs": [{"job_name": "tabserve",
                            "static_configs": [{"targets": [url.removeprefix("http://")]}]}]}))
    server = subprocess.Popen(
        [prometheus_binary(), f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"))
    api = f"http://127.0.0.1:{port}/api/v1"

    def query(expr: str) -> list[dict]:
        if server.poll() is not None:
            raise AssertionError((tmp_path / "prometheus.log").read_text()[-2000:])
        try:
            answer = requests.get(f"{api}/query", params={"query": expr}, timeout=5)
        except (requests.ConnectionError, requests.Timeout):  # not answering yet
            return []
        return answer.json()["data"]["result"] if answer.ok else []

    try:
        # the counters' zeros scraped first, so the hour's increase counts all that follows
        wait_for(lambda: query('tabserve_drift_counted_records_total{job="tabserve"}'), 60,
                 "Prometheus to scrape the drift counters")
        shifted = records_from_csv(days_not_months(telco_test_rows), telco_bundle.schema)
        for i in range(0, len(shifted), 100):
            assert requests.post(f"{url}/predict", json=shifted[i:i + 100],
                                 timeout=10).status_code == 200

        def psi_series() -> dict[str, float] | None:
            found = {r["metric"]["field"]: float(r["value"][1])
                     for r in query('tabserve:drift_psi:1h{job="tabserve"}')}
            counted = query("tabserve:drift_counted_records:increase1h")
            complete = counted and float(counted[0]["value"][1]) >= len(shifted)
            return found if complete and len(found) == len(telco_bundle.schema.fields) else None

        series = wait_for(psi_series, 90, "the PSI series of every field")
        # the same counts give the same PSI as /drift (Prometheus extrapolates the increase
        # alike for every bin, which leaves the shares as they are)
        served = by_field(requests.get(f"{url}/drift", timeout=10).json())
        assert max(series, key=series.get) == "tenure" and series["tenure"] > 0.25
        assert all(value < 0.1 for field, value in series.items() if field != "tenure")
        for field, value in series.items():
            assert value == pytest.approx(served[field]["psi"], rel=1e-3, abs=1e-4), field
        score = wait_for(lambda: query("tabserve:drift_score_psi:1h"), 30, "the score's PSI")
        assert float(score[0]["value"][1]) > 0.25

        def pending() -> list[dict]:
            answer = requests.get(f"{api}/alerts", timeout=5).json()["data"]["alerts"]
            return [a for a in answer if a["labels"]["alertname"] == "TabserveFieldDriftMajor"]

        alerts = wait_for(pending, 30, "the major-drift alert")
        assert [a["labels"]["field"] for a in alerts] == ["tenure"]
        assert alerts[0]["state"] == "pending"  # for: 15m before it fires

        dashboard = json.loads((MONITORING / "grafana-drift.json").read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$job", "tabserve")
                assert wait_for(lambda: query(expr), 30, f"data for {expr}")
    finally:
        server.terminate()
        server.wait(timeout=30)
        assert stop(process) == 0


# --- offline: monitor.py ------------------------------------------------------------------

def run_monitor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "monitor.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


@pytest.mark.slow
def test_monitor_reports_drift_and_decay_from_a_csv(telco_test_rows, tmp_path):
    shifted = days_not_months(telco_test_rows)
    shifted.loc[:140, "contract"] = "Four year"
    shifted.loc[5, "tenure"] = "many"  # the API would refuse it: left out, counted
    csv = tmp_path / "new.csv"
    shifted.to_csv(csv, index=False)
    done = run_monitor("--data", str(csv), "--report", str(tmp_path / "report"),
                       "--fail-on", "major")
    assert done.returncode == 3, done.stderr
    lines = done.stdout.splitlines()
    assert f"{len(shifted) - 1:,} rows counted, 1 rejected" in lines[0]
    assert lines[2].split()[:3] == ["tenure", lines[2].split()[1], "major"]
    assert lines[3].split()[0] == "contract"
    report = json.loads((tmp_path / "report" / "drift.json").read_text())
    card = ModelBundle.load(ROOT / "model.bin").metrics["test"]
    assert report["quality"]["metrics"]["roc_auc"]["test"] == card["roc_auc"]
    assert report["quality"]["metrics"]["roc_auc"]["now"] < 0.8  # decay, not just drift
    assert report["quality"]["rows"] == len(shifted) - 1
    contract = by_field(report)["contract"]
    # 141 rows hold the new level; the one the API would refuse is not counted
    assert [(u["level"], u["records"]) for u in contract["unseen_levels"]] == [("Four year", 140)]
    assert lines[4] == "  unseen levels, most frequent first: 'Four year' " \
        f"{140 / (len(shifted) - 1):.1%}"
    markdown = (tmp_path / "report" / "drift.md").read_text()
    assert "| `tenure` |" in markdown and "![drift](drift.png)" in markdown
    assert "`Four year` " in markdown
    assert (tmp_path / "report" / "drift.png").stat().st_size > 10_000


@pytest.mark.slow
def test_monitor_on_the_test_rows_as_they_were_is_stable(telco_test_rows, tmp_path):
    csv = tmp_path / "same.csv"
    telco_test_rows.to_csv(csv, index=False)
    done = run_monitor("--data", str(csv), "--fail-on", "moderate")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "major" not in done.stdout and "moderate" not in done.stdout
    assert "trained on" not in done.stdout  # the test rows, not the training file
    roc_auc = next(line for line in done.stdout.splitlines() if "roc_auc" in line)
    # the test rows themselves: the card's figure, give or take the refit on all rows
    assert float(roc_auc.split()[1]) > 0.84


@pytest.mark.slow
def test_monitor_on_the_training_file_says_why_the_score_drifts(tmp_path):
    """A user's first sanity check: the training file's rows were mostly fitted, so their
    scores drift from the held-out reference; the report says so, and the fields stay still."""
    done = run_monitor("--data", str(TELCO), "--report", str(tmp_path / "report"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].startswith("This is the file the model was trained on:"), done.stdout
    assert "This is the file the model was trained on" in \
        (tmp_path / "report" / "drift.md").read_text()
    fields = lines[3:next(i for i, line in enumerate(lines) if line.startswith("(score)"))]
    assert fields and all(line.split()[2] == "stable" for line in fields), done.stdout


@pytest.mark.process
def test_monitor_refuses_what_it_cannot_use(tmp_path):
    csv = tmp_path / "few.csv"
    csv.write_text("tenure,contract\n1,month-to-month\n")
    done = run_monitor("--data", str(csv))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("error: ") and "the model needs columns" in done.stderr
    done = run_monitor("--model", str(LEGACY / "telco.bin"), "--data", str(TELCO),
                       env={"ALLOW_PICKLE": "1"})
    assert done.returncode == 1 and "has no reference profile" in done.stderr
    done = run_monitor("--data", str(tmp_path / "absent.csv"))
    assert done.returncode == 1 and "not found" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.process
def test_monitor_help_needs_no_model():
    done = subprocess.run([sys.executable, "monitor.py", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--fail-on" in done.stdout
