"""End to end: the real `gunicorn predict:app` over HTTP, stopped by its PID."""

import json
import os
import socket
import subprocess

import pytest
import requests

from helpers import (GUNICORN, PYTHON, ROOT, chromium, enter_api_key, free_port,
                     served_in_chromium, start_gunicorn, stop, wait_for)
from tabserve.tables import load_csv


pytestmark = pytest.mark.process  # every test here starts a process or a server

def test_default_model_answers_over_http(telco_server, telco_record):
    answer = requests.post(f"{telco_server}/predict", json=telco_record, timeout=10).json()
    assert isinstance(answer["churn"], bool) and 0 <= answer["churn_probability"] <= 1
    batch = requests.post(f"{telco_server}/predict", json=[telco_record] * 3, timeout=10)
    assert batch.status_code == 200 and len(batch.json()) == 3
    assert requests.get(f"{telco_server}/ready", timeout=10).json()["status"] == "ready"


def test_the_start_says_which_model_and_where_its_page_is(telco_process, telco_bundle):
    process, url = telco_process
    assert f"Serving model {telco_bundle.version}: try {url}/docs" in \
        process.error_path.read_text()


def test_bad_request_over_http_is_a_422_naming_the_field(telco_server, telco_record):
    response = requests.post(f"{telco_server}/predict",
                             json={**telco_record, "tenure": "twelve"}, timeout=10)
    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == "tenure"


@pytest.mark.slow
def test_a_multiclass_csv_never_seen_trains_and_serves(tmp_path, flower_csv):
    model = tmp_path / "m.bin"
    subprocess.run([PYTHON, "train.py", "--data", str(flower_csv), "--target", "species",
                    "--output", str(model), "--folds", "3"], cwd=ROOT, check=True,
                   capture_output=True, timeout=300)
    process, url = start_gunicorn(model)
    try:
        record = requests.get(f"{url}/model", timeout=10).json()["example"]
        answer = requests.post(f"{url}/predict", json=record, timeout=10).json()
        assert answer["label"] in ("setosa", "versicolor", "virginica")
        bad = requests.post(f"{url}/predict", json={**record, "petal_length": [1]}, timeout=10)
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "petal_length"
    finally:
        assert stop(process) == 0


@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    (b"not a model", "is not a tabserve model bundle"),
])
def test_no_model_no_service(tmp_path, content, message):
    model = tmp_path / "model.bin"
    if content is not None:
        model.write_bytes(content)
    done = subprocess.run([GUNICORN, "predict:app"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "MODEL_PATH": str(model),
                                           "PORT": str(free_port()), "HOST": "127.0.0.1"})
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(model) in errors[0] and message in errors[0]
    assert ".venv/bin/python train.py" in errors[0] and "Traceback" not in done.stderr


@pytest.mark.parametrize("setting, value, message", [
    ("PORT", "http", "PORT must be a port number (0 to 65535), got 'http'"),
    ("WEB_CONCURRENCY", "0", "WEB_CONCURRENCY must be a positive integer, got '0'"),
    ("TIMEOUT", "30s", "TIMEOUT must be a positive integer, got '30s'"),
    ("GRPC_PORT", "0", "GRPC_PORT must be a port number (1 to 65535), got '0'"),
    ("GRPC_PORT", "h2c", "GRPC_PORT must be a port number (1 to 65535), got 'h2c'"),
    ("WORKER_CLASS", "eventlet", "WORKER_CLASS must be sync or gevent, got 'eventlet'"),
])
def test_a_server_setting_it_cannot_use_stops_the_start_in_one_line(setting, value, message):
    env = {**os.environ, "PORT": str(free_port()), "HOST": "127.0.0.1", setting: value}
    done = subprocess.run([GUNICORN, "predict:app"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip() == f"error: {message}"


def metric(text: str, line_start: str) -> float:
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith(line_start)]
    return sum(values)


def test_metrics_count_every_request_across_two_workers(tmp_path, telco_record):
    process, url = start_gunicorn(ROOT / "model.bin")
    try:
        with requests.Session() as session:
            for i in range(60):
                response = session.post(f"{url}/predict", json=[telco_record] * 2, timeout=10)
                assert response.status_code == 200
            for i in range(15):
                session.post(f"{url}/predict", json={**telco_record, "tenure": "x"}, timeout=10)
        text = requests.get(f"{url}/metrics", timeout=10).text
        access_lines = process.log_path.read_text().splitlines()
    finally:
        assert stop(process) == 0
    assert metric(text, 'tabserve_requests_total{endpoint="/predict",method="POST",status="200"}') == 60
    assert metric(text, 'tabserve_requests_total{endpoint="/predict",method="POST",status="422"}') == 15
    assert metric(text, "tabserve_records_predicted_total") == 120
    assert metric(text, "tabserve_predictions_total{") == 120
    assert metric(text, 'tabserve_validation_failures_total{field="tenure"}') == 15
    assert metric(text, 'tabserve_request_duration_seconds_count{endpoint="/predict"}') == 75
    predict_lines = [line for line in access_lines if json.loads(line)["path"] == "/predict"]
    assert len(predict_lines) == 75  # one access line per request


def test_one_json_log_line_per_request_with_request_id(telco_process, telco_record):
    process, url = telco_process
    response = requests.post(f"{url}/predict", json=telco_record, timeout=10,
                             headers={"X-Request-ID": "trace-42"})
    assert response.headers["X-Request-ID"] == "trace-42"

    def logged() -> list[dict]:
        lines = [json.loads(line) for line in process.log_path.read_text().splitlines()
                 if line.startswith("{")]
        return [line for line in lines if line["request_id"] == "trace-42"]
    mine = wait_for(logged, 30, "the request's access log line")
    assert mine == [{**mine[0], "method": "POST", "path": "/predict", "status": 200,
                     "records": 1, "model_version": response.json()["model_version"]}]
    assert mine[0]["duration_ms"] > 0


@pytest.mark.parametrize("level", ["info", "debug"])
def test_probes_are_logged_only_at_debug_level(telco_record, level):
    process, url = start_gunicorn(ROOT / "model.bin", WEB_CONCURRENCY="1", LOG_LEVEL=level)
    try:
        for path in ("/health", "/ready", "/v2/health/live", "/v2/health/ready"):
            assert requests.get(f"{url}{path}", timeout=10).status_code == 200
        requests.post(f"{url}/predict", json=telco_record, timeout=10,
                      headers={"X-Request-ID": "after-the-probes"})

        def lines() -> list[dict]:  # one worker: the probes' lines come before the predict's
            logged = [json.loads(line) for line in process.log_path.read_text().splitlines()
                      if line.startswith("{")]
            return logged if any(line["request_id"] == "after-the-probes"
                                 for line in logged) else []
        paths = [line["path"] for line in wait_for(lines, 30, "the predict's access log line")]
    finally:
        assert stop(process) == 0
    probes = ["/health", "/ready", "/v2/health/live", "/v2/health/ready"]
    if level == "debug":
        assert paths[-5:] == probes + ["/predict"]
    else:
        assert paths == ["/predict"]


def test_client_script_posts_csv_and_json(telco_server, tmp_path, telco_record):
    csv = tmp_path / "customers.csv"
    frame = load_csv(ROOT / "data" / "telco_churn.csv").head(5).drop(columns="churn")
    frame.to_csv(csv, index=False)
    done = subprocess.run([PYTHON, "predict_client.py", str(csv), "--url", telco_server,
                           "--batch-size", "2"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(answers) == 5 and all("churn_probability" in a for a in answers)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**telco_record, "tenure": "x"}))
    done = subprocess.run([PYTHON, "predict_client.py", str(bad), "--url", telco_server],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "422" in done.stderr and "tenure" in done.stderr
    done = subprocess.run([PYTHON, "predict_client.py", str(bad), "--url",
                           f"http://127.0.0.1:{free_port()}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.startswith("error:")


def test_client_script_sends_the_api_key(tmp_path, telco_record):
    key = "client-key-" + "e" * 20
    record = tmp_path / "record.json"
    record.write_text(json.dumps(telco_record))
    process, url = start_gunicorn(ROOT / "model.bin", API_KEYS=key, WEB_CONCURRENCY="1")
    try:
        def client(*options: str, **env: str) -> subprocess.CompletedProcess:
            return subprocess.run([PYTHON, "predict_client.py", str(record), "--url", url,
                                   *options], cwd=ROOT, capture_output=True, text=True,
                                  timeout=60, env={**os.environ, **env})
        refused = client()
        assert refused.returncode == 1 and "needs an API key" in refused.stderr
        wrong = client("--api-key", "wrong-key-" + "f" * 20)
        assert wrong.returncode == 1 and "is not valid" in wrong.stderr
        for done in (client("--api-key", key), client(TABSERVE_API_KEY=key)):
            assert done.returncode == 0, done.stderr
            assert "churn_probability" in json.loads(done.stdout)
    finally:
        assert stop(process) == 0


@pytest.mark.browser
def test_docs_page_in_a_real_browser(telco_server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = chromium(tmp_path)
    try:
        browser.get(f"{telco_server}/docs")
        WebDriverWait(browser, 20).until(lambda b: b.find_elements(By.ID, "predict"))
        assert not browser.find_element(By.ID, "key-row").is_displayed()
        browser.find_element(By.ID, "predict").click()
        WebDriverWait(browser, 20).until(
            lambda b: "churn_probability" in b.find_element(By.ID, "answer").text)
        answer = browser.find_element(By.ID, "answer").text
        assert answer.startswith("200") and '"model_version"' in answer
        browser.find_element(By.ID, "explain").click()
        WebDriverWait(browser, 20).until(
            lambda b: "contributions" in b.find_element(By.ID, "answer").text)
        browser.execute_script("document.getElementById('answer').scrollIntoView()")
        browser.save_screenshot(str(tmp_path / "docs.png"))
        assert (tmp_path / "docs.png").stat().st_size > 10_000
    finally:
        browser.quit()


@pytest.mark.browser
def test_docs_page_asks_for_the_api_key(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    key = "browser-key-" + "c" * 20
    with served_in_chromium(tmp_path, API_KEYS=key, WEB_CONCURRENCY="1") as (browser, url):
        browser.get(f"{url}/docs")
        WebDriverWait(browser, 20).until(lambda b: b.find_element(By.ID, "key-row").is_displayed())
        enter_api_key(browser, "wrong-key-" + "d" * 20)
        WebDriverWait(browser, 20).until(
            lambda b: "not valid" in b.find_element(By.ID, "key-problem").text)
        enter_api_key(browser, key)
        WebDriverWait(browser, 20).until(lambda b: b.find_elements(By.ID, "predict"))
        browser.find_element(By.ID, "predict").click()
        WebDriverWait(browser, 20).until(
            lambda b: "churn_probability" in b.find_element(By.ID, "answer").text)
        assert browser.find_element(By.ID, "answer").text.startswith("200")
        assert key not in browser.current_url


def test_a_grpc_port_another_program_holds_stops_the_start_in_one_line():
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        done = subprocess.run([GUNICORN, "predict:app"], cwd=ROOT, capture_output=True,
                              text=True, timeout=60,
                              env={**os.environ, "PORT": str(free_port()), "HOST": "127.0.0.1",
                                   "GRPC_PORT": str(taken), "WEB_CONCURRENCY": "1"})
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert f"error: cannot serve gRPC on GRPC_PORT={taken}: another program holds the port" \
        in done.stderr
