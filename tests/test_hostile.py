"""The hostile tier: what a stranger may send or plant, against the real gunicorn (issue 40).
Each case once killed a worker, stopped the service, grew its memory or its metrics without
bound, or answered with no answer at all; each test here failed on the code before the fix."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from helpers import (PYTHON, ROOT, free_port, process_fixture, rewrite_payload, start_gunicorn,
                     stop, wait_for, workers)
from tabserve.model.bundle import ModelBundle, ModelLoadError

pytestmark = pytest.mark.process
KEY = "hostile-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
# framings gunicorn refuses before the app sees them; answered, never a dead worker
FRAMINGS = {
    "negative length": b"Content-Length: -1\r\n\r\n",
    "length and chunked": b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two lengths": b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    "gzip coding": b"Transfer-Encoding: gzip\r\n\r\n",
}


def _raw(url: str, request: bytes) -> bytes:
    """The answer to raw bytes sent on one connection (gunicorn closes it after an error)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and b"Connection: close" not in answer and \
                    answer.endswith(b"}"):
                break
        return answer


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers={
        "Content-Type": "application/json", **AUTH, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@process_fixture(scope="module")
def keyed_server(tmp_path_factory):
    """A server with API keys on a copy of the default model (SIGHUP may replace it)."""
    folder = tmp_path_factory.mktemp("hostile")
    shutil.copy(ROOT / "model.bin", folder / "model.bin")
    grpc_port = free_port()
    process, url = start_gunicorn(folder / "model.bin", API_KEYS=KEY, GRPC_PORT=str(grpc_port),
                                  PROMETHEUS_MULTIPROC_DIR=str(folder / "metrics"))
    process.model_path, process.metrics_dir = folder / "model.bin", folder / "metrics"
    process.grpc_port = grpc_port
    yield process, url
    stop(process)


def test_malformed_framing_is_answered_before_any_key_and_kills_no_worker(keyed_server,
                                                                         telco_record):
    process, url = keyed_server
    before = sorted(workers(process.pid))
    for name, rest in FRAMINGS.items():
        answer = _raw(url, b"POST /predict HTTP/1.1\r\nHost: x\r\n" + rest)
        status = answer.split(b"\r\n", 1)[0]
        # 400, or 501 for a transfer coding the server does not implement (RFC 9112, 6.1)
        assert re.match(rb"HTTP/1\.1 (400|501) ", status), (name, answer[:200])
    assert sorted(workers(process.pid)) == before
    assert "Worker exited" not in process.error_path.read_text()
    assert _post(f"{url}/predict", json.dumps(telco_record).encode())[0] == 200


@pytest.mark.parametrize("path", ["/predict", "/v2/models/churn/infer"])
def test_a_chunked_body_whose_sizes_lie_is_a_400_not_a_500(keyed_server, path):
    process, url = keyed_server
    answer = _raw(url, f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                       "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "zz\r\n{}\r\n0\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 400"), answer[:300]
    assert b"cannot be read" in answer
    assert "Traceback" not in process.error_path.read_text()


def test_clients_cannot_choose_metric_labels(keyed_server):
    process, url = keyed_server
    for i in range(300):
        _post(f"{url}/predict", json.dumps({f"field-{i}-{'x' * 30}": [{}]}).encode())
        method = "".join(chr(65 + i // 26 ** k % 26) for k in range(3)) + "Q"
        _raw(url, f"{method} /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                  "Connection: close\r\n\r\n".encode())
    with urllib.request.urlopen(urllib.request.Request(f"{url}/metrics", headers=AUTH)) as r:
        exposition = r.read().decode()
    fields = set(re.findall(r'tabserve_validation_failures_total\{field="([^"]*)"', exposition))
    model = {f["name"] for f in ModelBundle.load(process.model_path).describe()["schema"]["fields"]}
    assert fields <= model | {"(body)", "(unknown field)"} and "(unknown field)" in fields
    methods = set(re.findall(r'tabserve_requests_total\{[^}]*method="([^"]*)"', exposition))
    assert methods <= {"GET", "POST", "(other)"} and "(other)" in methods, methods


def test_v2_input_names_are_unique_and_quoted_short(keyed_server, telco_record):
    process, url = keyed_server
    inputs = [{"name": name, "datatype": "BYTES" if isinstance(v, str) else "FP64",
               "shape": [1], "data": [v]} for name, v in telco_record.items()]
    twice = {"inputs": inputs + [inputs[0]]}
    status, answer = _post(f"{url}/v2/models/churn/infer", json.dumps(twice).encode())
    assert status == 400 and b"given twice" in answer
    huge = {"inputs": inputs + [{"name": "n" * 1_000_000, "datatype": "FP64", "shape": [1],
                                 "data": [1.0]}]}
    status, answer = _post(f"{url}/v2/models/churn/infer", json.dumps(huge).encode())
    assert status == 200 and len(answer) < 2000


def test_grpc_garbage_is_invalid_argument(keyed_server):
    import grpc

    process, _ = keyed_server
    with grpc.insecure_channel(f"127.0.0.1:{process.grpc_port}") as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as refused:
            call(b"\xff\xff\xff\xff garbage", metadata=(("x-api-key", KEY),), timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ModelInferRequest" in refused.value.details()


# the default model as committed before its trees were saved as arrays: its XGBoost booster
# is UBJSON, which files of that age hold and the bounded reader reads
UBJSON_BOOSTER = ROOT / "tests" / "fixtures" / "legacy" / "booster-ubjson.bin"


def _forge_booster_length(path: Path) -> None:
    """An older model's XGBoost booster (UBJSON) with its first key declared 2^30 bytes
    long, the checksum made to fit: XGBoost's own reader crashed on it."""
    def forge(members):
        name = next(n for n in members if n.endswith(".ubj"))
        data = members[name]
        assert data.startswith(b"{L\x00\x00\x00\x00\x00\x00\x00\x07learner")
        return {**members, name: b"{L\x00\x00\x00\x00\x40\x00\x00\x00" + data[10:]}
    rewrite_payload(path, forge)


def _forge_booster_count(path: Path) -> None:
    """The booster's first typed array declaring 2^31 elements (XGBoost grew past 5 GB)."""
    def forge(members):
        name = next(n for n in members if n.endswith(".ubj"))
        data = members[name]
        at = data.index(b"[$")
        count_at = data.index(b"#L", at) + 2
        return {**members, name: data[:count_at] + (1 << 31).to_bytes(8, "big")
                + data[count_at + 8:]}
    rewrite_payload(path, forge)


@pytest.mark.parametrize("forge", [_forge_booster_length, _forge_booster_count])
def test_a_forged_booster_is_refused_in_one_line_at_every_door(tmp_path, forge):
    path = tmp_path / "model.bin"
    shutil.copy(UBJSON_BOOSTER, path)  # an older bundle: its booster is XGBoost's UBJSON
    forge(path)
    with pytest.raises(ModelLoadError) as refused:
        ModelBundle.load(path)
    assert "XGBoost booster is not valid UBJSON" in str(refused.value)
    assert "\n" not in str(refused.value)
    scored = subprocess.run([PYTHON, "score.py", "--model", str(path), "--input",
                             "data/telco_churn.csv", "--output", str(tmp_path / "s.csv")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert scored.returncode != 0 and scored.returncode > 0  # not a signal
    assert scored.stderr.strip().count("\n") == 0 and "UBJSON" in scored.stderr
    assert not (tmp_path / "s.csv").exists()
    monitored = subprocess.run([PYTHON, "monitor.py", "--model", str(path), "--data",
                                "data/telco_churn.csv", "--report", str(tmp_path / "r")],
                               cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert monitored.returncode > 0 and "UBJSON" in monitored.stderr
    started = subprocess.run([str(ROOT / ".venv/bin/gunicorn"), "predict:app"], cwd=ROOT,
                             env={**os.environ, "MODEL_PATH": str(path),
                                  "PORT": "0"}, capture_output=True, text=True, timeout=120)
    assert started.returncode != 0
    assert [line for line in started.stderr.splitlines() if line.startswith("error:")] and \
        "Traceback" not in started.stderr


def test_sighup_with_a_forged_booster_keeps_the_current_model(keyed_server, telco_record):
    process, url = keyed_server
    original = process.model_path.read_bytes()
    shutil.copy(UBJSON_BOOSTER, process.model_path)
    _forge_booster_length(process.model_path)
    try:
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: "SIGHUP: kept the current model" in process.error_path.read_text(),
                 60, "the reload to keep the model")
        assert process.poll() is None
        status, answer = _post(f"{url}/predict", json.dumps(telco_record).encode())
        assert status == 200 and b"churn_probability" in answer
    finally:
        process.model_path.write_bytes(original)


def test_exited_workers_metrics_are_folded_not_piled_up(keyed_server, telco_record):
    process, url = keyed_server
    body = json.dumps(telco_record).encode()
    for _ in range(4):
        for _ in range(5):
            assert _post(f"{url}/predict", body)[0] == 200
        victim = workers(process.pid)[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: victim not in workers(process.pid) and len(workers(process.pid)) == 2,
                 60, "the worker to be replaced")
    wait_for(lambda: len(list(process.metrics_dir.glob("counter_*.db"))) <= 3, 30,
             "exited workers' files to be folded")  # two live workers and the exited
    with urllib.request.urlopen(urllib.request.Request(f"{url}/metrics", headers=AUTH)) as r:
        exposition = r.read().decode()
    counted = re.search(r'tabserve_requests_total\{endpoint="/predict",method="POST",'
                        r'status="200"\} ([0-9.]+)', exposition)
    assert counted and float(counted[1]) >= 20


def test_largest_bodies_keep_a_worker_within_the_kubernetes_limit(tmp_path):
    """The worst bodies of MAX_BODY_BYTES (32 MB) each door accepts to read: the worker's
    peak memory stays well under the 384 MiB the shipped manifests allow a container."""
    process, url = start_gunicorn(ROOT / "model.bin", WEB_CONCURRENCY="1")
    try:
        limit = 32 * 1024 * 1024
        # bodies made as one bytes object each: a list per element would grow this process,
        # and every process it forks afterwards starts from its size
        empty_objects = b"[" + b"{}," * ((limit - 3) // 3) + b"{}]"
        assert _post(f"{url}/predict", empty_objects)[0] == 413
        zeros = b'{"inputs":[{"name":"tenure","datatype":"FP64","shape":[-1],"data":[' + \
            b"0," * ((limit - 100) // 2) + b'0]}]}'
        assert _post(f"{url}/v2/models/churn/infer", zeros)[0] == 413
        header = json.dumps({"inputs": [{"name": "tenure", "datatype": "UINT8",
                                         "shape": [limit - 200],
                                         "parameters": {"binary_data_size": limit - 200}}]})
        status, _ = _post(f"{url}/v2/models/churn/infer", header.encode() + bytes(limit - 200),
                          {"Inference-Header-Content-Length": str(len(header)),
                           "Content-Type": "application/octet-stream"})
        assert status == 400
        worker = workers(process.pid)[0]
        peak = int(re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{worker}/status").read_text())[1])
        assert peak < 300 * 1024, f"a worker peaked at {peak // 1024} MiB"
    finally:
        stop(process)


def test_requests_are_answered_when_the_metrics_directory_goes_away(tmp_path, telco_record):
    metrics = tmp_path / "metrics"
    process, url = start_gunicorn(ROOT / "model.bin", PROMETHEUS_MULTIPROC_DIR=str(metrics))
    try:
        shutil.rmtree(metrics)  # a volume gone; new workers cannot create their files
        for victim in workers(process.pid):
            os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(workers(process.pid)) == 2, 60, "new workers")
        body = json.dumps(telco_record).encode()
        answers = [_post(f"{url}/predict", body)[0] for _ in range(40)]
        assert answers == [200] * 40
        assert "metrics are no longer counted" in process.error_path.read_text()
    finally:
        stop(process)


def test_a_blend_whose_weights_are_not_shares_is_refused(tmp_path):
    path = tmp_path / "model.bin"
    shutil.copy(ROOT / "model.bin", path)

    def weigh(members):
        document = json.loads(members["bundle.json"])
        document["model"]["weights"] = [1e308, 0.25]
        return {**members, "bundle.json": json.dumps(document).encode()}
    rewrite_payload(path, weigh)
    with pytest.raises(ModelLoadError, match="shares between 0 and 1"):
        ModelBundle.load(path)


def test_booster_arrays_answer_as_xgboost_did(telco_record):
    """An older model's booster (UBJSON) read by the bounded reader into arrays scores exactly
    as XGBoost's own reading of the same bytes; the committed model, the same one saved as
    arrays with their base margin, answers as it does."""
    import xgboost

    from tabserve.model.archive import Archive
    from tabserve.model.xgboost_trees import loaded_booster
    from tabserve.serving.core import Predictor

    bundle = ModelBundle.load(UBJSON_BOOSTER)
    trees = bundle.model.members[1]
    assert trees.base_margin is None  # measured when it loads for serving
    payload = UBJSON_BOOSTER.read_bytes().partition(b"\n")[2]
    archive = Archive(payload)
    ubj = next(name for name in archive.unread() if name.endswith(".ubj"))
    own = xgboost.Booster(model_file=bytearray(archive.read(ubj)))
    rows = np.random.default_rng(0).normal(size=(200, trees.n_features)) * 50
    rows[rows < -40] = np.nan
    served = loaded_booster(trees).predict(xgboost.DMatrix(rows), output_margin=True)
    assert np.array_equal(served, own.predict(xgboost.DMatrix(rows), output_margin=True))
    records = [{**telco_record, "tenure": tenure} for tenure in range(0, 72, 3)]
    older, committed = (Predictor(b).score_records(records).probabilities
                        for b in (bundle, ModelBundle.load(ROOT / "model.bin")))
    np.testing.assert_allclose(older, committed, rtol=0, atol=1e-12)


def test_a_soak_of_hostile_and_valid_traffic_answers_every_valid_request(keyed_server,
                                                                        telco_record):
    """~15 s of framing attacks, label floods and oversized bodies beside valid clients:
    every valid request gets the model's answer (bounded by the count of requests, not by a
    clock: each side sends a fixed number)."""
    import threading

    process, url = keyed_server
    body = json.dumps(telco_record).encode()
    expected = json.loads(_post(f"{url}/predict", body)[1])["churn_probability"]
    answers: list = []

    def valid():
        for _ in range(150):
            status, answer = _post(f"{url}/predict", body)
            answers.append((status, json.loads(answer).get("churn_probability")
                            if status == 200 else answer[:200]))

    def hostile():
        for i in range(60):
            rest = list(FRAMINGS.values())[i % len(FRAMINGS)]
            _raw(url, b"POST /predict HTTP/1.1\r\nHost: x\r\n" + rest)
            _post(f"{url}/predict", json.dumps({f"flood-{i}": [{}]}).encode())
            _post(f"{url}/predict", b"[" + b"{}," * 400_000 + b"{}]")

    threads = [threading.Thread(target=valid) for _ in range(3)] + \
        [threading.Thread(target=hostile) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert len(answers) == 450
    assert all(a == (200, expected) for a in answers), [a for a in answers if a[0] != 200][:3]
    assert "Worker exited" not in process.error_path.read_text()


def test_a_metrics_directory_that_cannot_be_written_stops_the_start_in_one_line():
    """A directory that exists but takes no files (/proc here: root ignores permissions, not a
    read-only file system) is one line, not prometheus_client's traceback at the first count."""
    done = subprocess.run([str(ROOT / ".venv/bin/gunicorn"), "predict:app"], cwd=ROOT,
                          env={**os.environ, "PORT": str(free_port()), "HOST": "127.0.0.1",
                               "PROMETHEUS_MULTIPROC_DIR": "/proc/self"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().startswith("error: cannot write the metrics directory")
    assert done.stderr.strip().count("\n") == 0
