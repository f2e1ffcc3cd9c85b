"""Faults and hostile clients against the real gunicorn: a new model on SIGHUP without refusing
a request, a killed worker, a stuck worker, sustained load, and hostile bodies."""

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from helpers import (GUNICORN, PYTHON, ROOT, alter_keeping_checksum, free_port, need_tool,
                     start_gunicorn, stop, wait_for, workers)
from tabserve.model.bundle import ModelBundle

pytestmark = pytest.mark.slow  # see pytest.ini


LOAD_SECONDS = int(os.environ.get("LOAD_SECONDS", "60"))  # sustained load, well past saturation


def sockets(pid: int) -> set[str]:
    """The sockets a process holds open, as /proc names them (`socket:[inode]`)."""
    links = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            links.add(os.readlink(fd))
        except FileNotFoundError:  # closed since the listing
            continue
    return {link for link in links if link.startswith("socket:")}


def server_socket(port: int, client_port: int) -> str | None:
    """The server's end of a loopback connection (local `port`, remote `client_port`), as
    /proc names a socket a process holds; None until a process has accepted it (the
    kernel's table shows inode 0 while it waits in the listening socket's queue)."""
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = row.split()
        if fields[1].endswith(f":{port:04X}") and fields[2].endswith(f":{client_port:04X}"):
            return f"socket:[{fields[9]}]" if fields[9] != "0" else None
    return None


def held_by_a_worker(master: int, port: int, client_port: int) -> bool:
    ours = server_socket(port, client_port)
    return ours is not None and any(ours in sockets(pid) for pid in workers(master))


class Load(threading.Thread):
    """Posts one record in a loop from a thread, recording each outcome."""

    def __init__(self, url: str, record: dict):
        super().__init__(daemon=True)
        self.url, self.record = url, record
        self.outcomes: list[tuple[int, str]] = []  # (status or 0 for a failure, version)
        self.times: list[float] = []  # when each answer came
        self.errors: list[str] = []
        self.headers: dict[str, str] = {}  # replaced whole by a test: a client's new API key
        self.running = True

    def run(self):
        while self.running:
            try:
                response = requests.post(f"{self.url}/predict", json=self.record, timeout=10,
                                         headers=self.headers)
                self.outcomes.append((response.status_code,
                                      response.json().get("model_version", "")))
            except requests.RequestException as err:
                self.outcomes.append((0, ""))
                self.errors.append(repr(err)[:300])
            self.times.append(time.monotonic())

    def stop(self):
        self.running = False
        self.join(timeout=20)


@pytest.fixture()
def model_copy(tmp_path):
    path = tmp_path / "model.bin"
    shutil.copy(ROOT / "model.bin", path)
    return path


def test_sighup_loads_a_new_model_without_refusing_a_request(tmp_path, model_copy, telco_record):
    other = tmp_path / "other.bin"
    subprocess.run([PYTHON, "train.py", "--output", str(other), "--trials", "1",
                    "--reports", str(tmp_path / "reports")], cwd=ROOT, check=True,
                   capture_output=True, timeout=300)
    old, new = ModelBundle.load(model_copy).version, ModelBundle.load(other).version
    assert old != new
    process, url = start_gunicorn(model_copy)
    load = Load(url, telco_record)
    try:
        load.start()
        wait_for(lambda: len(load.outcomes) >= 20, 60, "20 answers from the old model")
        os.replace(other, model_copy)  # what train.py --output model.bin does: atomic
        process.send_signal(signal.SIGHUP)
        # the reload is over when only the new model answers: 50 answers in a row from it
        wait_for(lambda: len(load.outcomes) > 50 and all(
            version == new for _, version in load.outcomes[-50:]), 120,
            "50 answers in a row from the new model")
        load.stop()
        metrics = requests.get(f"{url}/metrics", timeout=10).text
    finally:
        load.stop()
        assert stop(process) == 0
    counted = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(
        'tabserve_requests_total{endpoint="/predict",method="POST",status="200"}'))
    statuses = {status for status, _ in load.outcomes}
    versions = [version for _, version in load.outcomes]
    assert statuses == {200}, f"refused or failed: {load.errors[:3]}"
    assert versions[0] == old and versions[-1] == new, \
        f"versions seen: {sorted(set(versions))}; log: {process.error_path.read_text()[-1500:]}"
    # gunicorn forks the new workers before it stops the old ones (so nothing is refused): for
    # a moment both may answer, then only the new model does (how long both did is printed,
    # not asserted: it depends on the machine's load)
    first_new = versions.index(new)
    last_old = len(versions) - 1 - versions[::-1].index(old)
    overlap = max(0.0, load.times[last_old] - load.times[first_new])
    assert 0 < first_new and last_old < len(versions) - 50
    assert counted == len(load.outcomes)  # the old workers' counts survive the reload
    print(f"\nSIGHUP: {len(versions)} requests, all 200; model {old} -> {new}; both answered "
          f"for {overlap * 1000:.0f} ms ({max(0, last_old - first_new)} requests)")


def assert_sighup_keeps_the_model(process, url: str, record: dict, old: str,
                                  refusal: str) -> None:
    """SIGHUP with a model file the master must refuse: it logs `refusal`, and the model that
    answered before (`old`) still answers."""
    process.send_signal(signal.SIGHUP)
    wait_for(lambda: refusal in process.error_path.read_text(), 60,
             f"the master to log {refusal!r}")
    answer = requests.post(f"{url}/predict", json=record, timeout=10)
    assert answer.status_code == 200 and answer.json()["model_version"] == old


def test_sighup_with_a_broken_model_keeps_serving_the_old_one(model_copy, telco_record):
    process, url = start_gunicorn(model_copy)
    try:
        old = requests.post(f"{url}/predict", json=telco_record, timeout=10).json()["model_version"]
        model_copy.write_bytes(model_copy.read_bytes()[:1000])  # truncated
        assert_sighup_keeps_the_model(process, url, telco_record, old, "kept the current model")
    finally:
        assert stop(process) == 0


def test_a_killed_worker_is_replaced(model_copy, telco_record):
    process, url = start_gunicorn(model_copy)
    load = Load(url, telco_record)
    try:
        load.start()
        wait_for(lambda: len(load.outcomes) >= 20, 60, "20 answers")
        victim = workers(process.pid)[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: victim not in workers(process.pid) and len(workers(process.pid)) == 2,
                 60, "a new worker in place of the killed one")
        answered = len(load.outcomes)
        wait_for(lambda: len(load.outcomes) >= answered + 20, 60, "20 answers after the kill")
        load.stop()
        assert requests.post(f"{url}/predict", json=telco_record, timeout=10).status_code == 200
    finally:
        load.stop()
        assert stop(process) == 0
    failed = sum(1 for status, _ in load.outcomes if status != 200)
    print(f"\nSIGKILL of a worker under load: {failed} of {len(load.outcomes)} requests failed")
    assert failed <= 2  # at most the request the killed worker was answering, and a retry


def test_a_body_that_never_comes_holds_no_worker(model_copy, telco_record):
    """A client that promises 1,000 bytes and sends 12 holds a greenlet, not a worker: both
    workers keep answering, and none is killed by TIMEOUT for waiting (on sync workers this
    one was, after TIMEOUT, while the other answered alone)."""
    process, url = start_gunicorn(model_copy, TIMEOUT="3")
    host, port = url.removeprefix("http://").split(":")
    try:
        before = set(workers(process.pid))
        stuck = [socket.create_connection((host, int(port))) for _ in range(4)]
        for s in stuck:
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                      b"\r\nContent-Length: 1000\r\n\r\n{\"tenure\": 1")
        # valid requests for twice TIMEOUT: the master would have replaced a waiting worker
        started, answered = time.monotonic(), 0
        while time.monotonic() - started < 6:
            assert requests.post(f"{url}/predict", json=telco_record, timeout=10).ok
            answered += 1
        assert set(workers(process.pid)) == before
        assert "WORKER TIMEOUT" not in process.error_path.read_text().upper()
        for s in stuck:
            s.close()
    finally:
        assert stop(process) == 0


@pytest.mark.parametrize("body, headers, status", [
    (b"[" * 200_000 + b"]" * 200_000, {}, 400),              # deeply nested
    (b"\xff\xfe\x00{", {}, 400),                               # invalid UTF-8
    (b'{"tenure": 1e309}', {}, 400),                           # beyond a double
    (b"[1, 2, 3]", {}, 400),                                   # a list of non-objects
    (b" " * (40 * 1024 * 1024), {}, 413),                      # 40 MB, over the 32 MiB limit
    (b"{}", {"Content-Type": "text/csv"}, 415),
])
def test_hostile_bodies_get_their_status(telco_server, body, headers, status):
    response = requests.post(f"{telco_server}/predict", data=body, timeout=60,
                             headers={"Content-Type": "application/json", **headers})
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/problem+json"


def test_hostile_records(telco_server, telco_record):
    long_text = {**telco_record, "contract": "x" * 1_000_000}
    response = requests.post(f"{telco_server}/predict", json=long_text, timeout=30)
    assert response.status_code == 200 and len(response.text) < 2000  # warned, not echoed
    duplicate = b'{"tenure": "x", ' + requests.models.complexjson.dumps(telco_record)[1:].encode()
    assert requests.post(f"{telco_server}/predict", data=duplicate, timeout=10,
                         headers={"Content-Type": "application/json"}).status_code == 200
    too_many = requests.post(f"{telco_server}/predict", json=[telco_record] * 10_001, timeout=60)
    assert too_many.status_code == 413 and "MAX_BATCH_RECORDS" in too_many.json()["detail"]
    assert requests.get(f"{telco_server}/health", timeout=5).ok


def test_sustained_load_past_saturation(model_copy, tmp_path):
    wrk = need_tool("wrk")
    body = tmp_path / "one.json"
    body.write_text(requests.models.complexjson.dumps(ModelBundle.load(model_copy).example))
    process, url = start_gunicorn(model_copy)
    try:
        def rss() -> list[int]:
            return [int(line.split()[1]) for pid in workers(process.pid)
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith("VmRSS:")]
        requests.post(f"{url}/predict", data=body.read_bytes(), timeout=10,
                      headers={"Content-Type": "application/json"})
        before = rss()
        done = subprocess.run([wrk, "-t2", "-c64", f"-d{LOAD_SECONDS}s", "--timeout", "10s", "-s",
                               str(ROOT / "bench" / "post.lua"), f"{url}/predict"],
                              env={**os.environ, "BODY_FILE": str(body)}, capture_output=True,
                              text=True, timeout=LOAD_SECONDS + 60, check=True)
        after = rss()
    finally:
        assert stop(process) == 0
    assert "Non-2xx" not in done.stdout and "Socket errors" not in done.stdout, done.stdout
    requests_done = int(done.stdout.split(" requests in")[0].split()[-1])
    print(f"\n64 connections for {LOAD_SECONDS} s: {requests_done} requests, 0 errors; worker RSS "
          f"{[b // 1024 for b in before]} -> {[a // 1024 for a in after]} MB")
    assert all(a < b * 1.25 + 10_000 for a, b in zip(after, before))  # flat: within 25%


def test_sigterm_drains_a_request_in_flight(model_copy, telco_record):
    process, url = start_gunicorn(model_copy)
    host, port = url.removeprefix("http://").split(":")
    body = requests.models.complexjson.dumps(telco_record).encode()
    client = socket.create_connection((host, int(port)), timeout=60)
    try:
        client.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
        wait_for(lambda: held_by_a_worker(process.pid, int(port), client.getsockname()[1]),
                 30, "a worker to accept the request")
        process.send_signal(signal.SIGTERM)
        wait_for(lambda: "Handling signal: term" in process.error_path.read_text(), 30,
                 "the master to take the SIGTERM")
        client.sendall(body[10:])
        answer = b""
        while chunk := client.recv(65536):  # until the server closes: headers and body may part
            answer += chunk
        assert process.wait(timeout=30) == 0
    finally:
        client.close()
        if process.poll() is None:  # a failed wait above: never leave a server behind
            process.kill()
            process.wait(timeout=30)
    assert answer.startswith(b"HTTP/1.1 200") and b"churn_probability" in answer


@pytest.mark.parametrize("worker_class", ["sync", "gevent"])
def test_a_stop_while_the_workers_boot_ends_every_worker_cleanly(model_copy, worker_class):
    """SIGTERM as soon as the workers are forked (docker stop right after docker run): each
    worker takes it and exits. One that lost it, booting still, served on until the master
    killed it at the graceful timeout (docker stop's own kill came first: exit 137)."""
    process = subprocess.Popen(
        [GUNICORN, "predict:app"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "MODEL_PATH": str(model_copy), "HOST": "127.0.0.1",
                        "PORT": str(free_port()), "WEB_CONCURRENCY": "3",
                        "WORKER_CLASS": worker_class})
    logged = []
    try:
        for line in process.stderr:  # the master logs, then each worker as it is forked
            logged.append(line)
            if "Booting worker with pid:" in line:
                process.send_signal(signal.SIGTERM)  # the master forks the next one still
                break
        logged.extend(process.stderr)  # to the master's last line
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    booted = {line.split()[-1] for line in logged if "Booting worker with pid:" in line}
    exited = {line.split()[-1].rstrip(")") for line in logged if "Worker exiting (pid:" in line}
    assert len(booted) == 3 and exited == booted, "".join(logged)


SIGNING = {"MODEL_SIGNING_KEY": "test-signing-key-" + "x" * 16}


def test_signed_bundles_end_to_end(tmp_path, loan_csv):
    """train.py signs with the key in its environment; a server with the key serves that file,
    refuses to start on an unsigned one, and keeps its model when SIGHUP finds an altered one."""
    signed = tmp_path / "signed.bin"
    done = subprocess.run([PYTHON, "train.py", "--data", str(loan_csv), "--target", "approved",
                           "--output", str(signed), "--trials", "1", "--folds", "3"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **SIGNING})
    assert done.returncode == 0, done.stderr
    assert ", signed with key " in done.stdout and SIGNING["MODEL_SIGNING_KEY"] not in done.stdout

    unsigned = subprocess.run([str(Path(PYTHON).parent / "gunicorn"), "predict:app"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, **SIGNING, "MODEL_PATH": str(ROOT / "model.bin"),
                                   "PORT": "0", "HOST": "127.0.0.1"})
    errors = [line for line in unsigned.stderr.splitlines() if line.startswith("error:")]
    assert unsigned.returncode != 0 and len(errors) == 1 and "is not signed" in errors[0]
    assert "Traceback" not in unsigned.stderr

    process, url = start_gunicorn(signed, **SIGNING)
    try:
        record = requests.get(f"{url}/model", timeout=10).json()["example"]
        old = requests.post(f"{url}/predict", json=record, timeout=10).json()["model_version"]
        alter_keeping_checksum(signed, b"approved", b"Approved")
        assert_sighup_keeps_the_model(process, url, record, old, "altered after it was signed")
    finally:
        assert stop(process) == 0
    logged = process.log_path.read_text() + process.error_path.read_text()
    assert SIGNING["MODEL_SIGNING_KEY"] not in logged


def test_api_keys_rotated_by_sighup_under_load(tmp_path, telco_record):
    """A key file rotated as an operator would: add the new key, SIGHUP, move the clients to
    it, remove the old one, SIGHUP. No request with a key valid at the time fails; after the
    rotation the old key is refused and the new one accepted; the log has key ids, no keys."""
    old, new = "old-key-" + "a" * 24, "new-key-" + "b" * 24
    keys = tmp_path / "keys"
    keys.write_text(old + "\n")
    process, url = start_gunicorn(ROOT / "model.bin", API_KEYS_FILE=str(keys))

    def status(key: str) -> int:
        return requests.get(f"{url}/model", headers={"X-API-Key": key}, timeout=10).status_code
    load = Load(url, telco_record)
    load.headers = {"Authorization": f"Bearer {old}"}
    try:
        assert status(old) == 200 and status(new) == 401
        for probe in ("/health", "/ready", "/v2/health/live", "/v2/health/ready"):
            assert requests.get(f"{url}{probe}", timeout=10).status_code == 200
        refused = requests.post(f"{url}/predict", json=telco_record, timeout=10)
        assert refused.status_code == 401 and "WWW-Authenticate" in refused.headers
        load.start()
        wait_for(lambda: len(load.outcomes) >= 20, 60, "20 answers with the old key")
        keys.write_text(f"{old}\n{new}\n")
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: status(new) == 200, 60, "the new key to be accepted")
        load.headers = {"X-API-Key": new}
        done = len(load.outcomes)
        keys.write_text(new + "\n")
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: status(old) == 401, 60, "the old key to be refused")
        wait_for(lambda: len(load.outcomes) >= done + 50, 60, "50 answers with the new key")
    finally:
        load.stop()
        assert stop(process) == 0
    assert {s for s, _ in load.outcomes} == {200}, f"refused or failed: {load.errors[:3]}"
    logged = process.log_path.read_text() + process.error_path.read_text()
    assert old not in logged and new not in logged
    lines = [json.loads(line) for line in process.log_path.read_text().splitlines()
             if line.startswith("{")]
    ids = {line["key_id"] for line in lines if line["path"] == "/predict" and line["status"] == 200}
    assert ids == {hashlib.sha256(k.encode()).hexdigest()[:8] for k in (old, new)}
    assert "SIGHUP: now accepting 1 API keys" in process.error_path.read_text()
