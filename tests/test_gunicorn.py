"""End to end: the real `gunicorn predict:app` over HTTP, stopped by its PID."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from conftest import PYTHON, ROOT

GUNICORN = str(Path(sys.executable).parent / "gunicorn")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(model_path: Path, **env: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [GUNICORN, "predict:app"], cwd=ROOT,
        env={**os.environ, "MODEL_PATH": str(model_path), "HOST": "127.0.0.1",
             "PORT": str(port), "WEB_CONCURRENCY": "2", **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited: {process.stderr.read()}")
        try:
            if requests.get(f"{url}/health", timeout=1).ok:
                return process, url
        except requests.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("gunicorn did not become healthy within 30 s")


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()


@pytest.fixture(scope="module")
def telco_server():
    process, url = start_gunicorn(ROOT / "model.bin")
    yield url
    assert stop(process) == 0


def test_default_model_answers_over_http(telco_server, telco_record):
    answer = requests.post(f"{telco_server}/predict", json=telco_record, timeout=10).json()
    assert isinstance(answer["churn"], bool) and 0 <= answer["churn_probability"] <= 1
    batch = requests.post(f"{telco_server}/predict", json=[telco_record] * 3, timeout=10)
    assert batch.status_code == 200 and len(batch.json()) == 3
    assert requests.get(f"{telco_server}/ready", timeout=10).json()["status"] == "ready"


def test_bad_request_over_http_is_a_422_naming_the_field(telco_server, telco_record):
    response = requests.post(f"{telco_server}/predict",
                             json={**telco_record, "tenure": "twelve"}, timeout=10)
    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == "tenure"


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
    assert "python train.py" in errors[0] and "Traceback" not in done.stderr
