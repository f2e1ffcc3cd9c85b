"""The real image on a real Docker engine, and the Elastic Beanstalk bundle behind nginx.

These skip, saying why, only where no Docker engine runs (`.ci/run` starts one with
../shared/docker/docker-sandbox.sh) or, for the nginx test, where nginx is not installed.
"""

import getpass
import json
import os
import re
import shutil
import socket
import subprocess
import time
import tomllib
import uuid
from pathlib import Path

import numpy as np
import pytest
import requests

from helpers import (IMAGE_UID, ONNX_SAMPLE_ROWS, PYTHON, ROOT, build, course_frame, docker,
                     free_port, logs, need_tool, one_input_per_field, process_fixture, wait_for)
from slow_clients import (SlowClients, SlowGrpcClients, grpc_latencies, p99,
                          valid_latencies)
from tabserve.model.bundle import ModelBundle
from tabserve.model.trust import Trust
from tabserve.serving.codecs.json_answers import JsonAnswers
from tabserve.serving.core import Predictor

pytestmark = pytest.mark.docker


@process_fixture(scope="session")
def image(docker_engine):
    tag = build(ROOT)
    yield tag
    docker("rmi", "-f", tag, check=False)


def wait_healthy(url: str, container: str, seconds: float = 60) -> None:
    def healthy() -> bool:
        try:
            return requests.get(f"{url}/health", timeout=1).ok
        except (requests.ConnectionError, requests.Timeout):  # not answering yet
            return False
    try:
        wait_for(healthy, seconds, "the container to answer /health", every=0.2)
    except AssertionError as err:
        raise AssertionError(f"{err}:\n{logs(container)}") from None


def run_container(image: str, *args: str) -> tuple[str, str]:
    port = free_port()
    name = f"tabserve-test-{uuid.uuid4().hex[:8]}"
    docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:9696", *args, image)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, name)
    return name, url


@process_fixture()
def container(image):
    name, url = run_container(image)
    yield name, url
    docker("rm", "-f", name, check=False)


def test_image_answers_like_the_in_process_model(container, telco_bundle, telco_record):
    _, url = container
    long_tenure = {**telco_record, "tenure": 60, "contract": "two_year"}
    expected = JsonAnswers(Predictor(telco_bundle)).for_records([telco_record, long_tenure])
    single = requests.post(f"{url}/predict", json=telco_record, timeout=10).json()
    batch = requests.post(f"{url}/predict", json=[telco_record, long_tenure], timeout=10).json()
    for got, want in zip([single, *batch], [expected[0], *expected]):
        assert got["label"] == want["label"] and got["churn"] == want["churn"]
        # within the parity bound: one record walks the trees in numpy, a batch uses XGBoost
        assert got["churn_probability"] == pytest.approx(want["churn_probability"], abs=1e-6)
        assert got["model_version"] == telco_bundle.version
    bad = requests.post(f"{url}/predict", json={**telco_record, "tenure": "x"}, timeout=10)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "tenure"



def test_the_image_serves_the_page_and_scores_a_file_without_pyarrow(container):
    """The page's file door reads with pandas: the image leaves pyarrow out."""
    name, url = container
    page = requests.get(f"{url}/", headers={"Accept": "text/html"}, timeout=10)
    assert page.ok and "Score a file" in page.text
    assert subprocess.run(["docker", "exec", name, "python", "-c", "import pyarrow"],
                          capture_output=True, timeout=60).returncode != 0
    rows = (ROOT / "data" / "telco_churn.csv").read_text().splitlines()[:11]
    scored = requests.post(f"{url}/score", data="\n".join(rows) + "\n\n",
                           headers={"Content-Type": "text/csv"}, timeout=30)
    assert scored.status_code == 200, scored.text
    assert (scored.json()["scored"], scored.json()["rejected"]) == (10, 1)


def test_image_is_hardened_and_healthchecked(container):
    name, _ = container
    config = docker("inspect", "--format",
                    "{{.Config.User}}|{{json .Config.ExposedPorts}}|{{json .Config.Healthcheck}}",
                    name)
    user, ports, healthcheck = config.split("|")
    assert user not in ("", "root", "0")
    assert "9696/tcp" in ports
    assert "/health" in healthcheck
    assert docker("exec", name, "id", "-u") != "0"
    deadline = time.monotonic() + 60
    status = ""
    while time.monotonic() < deadline:
        status = docker("inspect", "--format", "{{.State.Health.Status}}", name)
        if status == "healthy":
            break
        time.sleep(1)
    assert status == "healthy"
    for absent in ("tests", "data", "Pipfile", "README.md", "train.py", "tabserve/training",
                   "tabserve/monitoring", "monitor.py"):
        assert subprocess.run(["docker", "exec", name, "test", "-e", f"/app/{absent}"]
                              ).returncode != 0, f"/app/{absent} should not be in the image"
    assert subprocess.run(["docker", "exec", name, "which", "gcc"]).returncode != 0


def test_sigterm_stops_the_container_cleanly(container):
    """gunicorn is PID 1 and drains on SIGTERM: exit code 0, not a kill after a timeout."""
    name, _ = container
    docker("kill", "--signal", "TERM", name)
    docker("wait", name, timeout=60)
    assert docker("inspect", "--format", "{{.State.ExitCode}}", name) == "0"


@pytest.mark.parametrize("restriction", [
    ("--read-only", "--tmpfs", "/tmp"),
    ("--user", "12345"),
    ("--read-only", "--tmpfs", "/tmp", "--user", "12345", "--cap-drop", "ALL",
     "--security-opt", "no-new-privileges"),
], ids=["read-only", "any-user", "both-and-no-capabilities"])
def test_restricted_containers_serve_without_errors(image, telco_record, restriction):
    name, url = run_container(image, *restriction)
    try:
        answer = requests.post(f"{url}/predict", json=telco_record, timeout=10)
        assert answer.status_code == 200 and "churn_probability" in answer.json()
        assert requests.get(f"{url}/metrics", timeout=10).status_code == 200
        docker("stop", name, timeout=60)  # the whole log, to the clean exit on SIGTERM
        assert docker("inspect", "--format", "{{.State.ExitCode}}", name) == "0"
        logged = logs(name)
    finally:
        docker("rm", "-f", name, check=False)
    assert "[ERROR]" not in logged and "Traceback" not in logged, logged


LEGACY = ROOT / "tests" / "fixtures" / "legacy"


def _converted(older: Path, to: Path) -> None:
    """An older (pickled) bundle written in the current format, as `import_model.py` does:
    the image opens no pickle unless told to trust it."""
    ModelBundle.load(older, Trust(allow_pickle=True)).save(to)
    to.chmod(0o644)


def test_the_kubernetes_restricted_profile_serves_explains_counts_and_reloads(
        image, tmp_path, telco_record):
    """The image run as deploy/kubernetes's pods run it: read-only with a /tmp volume, the
    manifests' UID, no capabilities, no privilege escalation, one CPU (so one worker); the
    model from a mounted folder, replaced and reloaded by SIGHUP."""

    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(ROOT / "model.bin", models / "model.bin")
    models.chmod(0o755)
    (models / "model.bin").chmod(0o644)
    name, url = run_container(
        image, "--read-only", "--tmpfs", "/tmp", "--user", f"{IMAGE_UID}:{IMAGE_UID}",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--cpus", "1",
        "-v", f"{models}:/models:ro", "-e", "MODEL_PATH=/models/model.bin",
        "-e", "PROMETHEUS_MULTIPROC_DIR=/tmp/metrics")
    try:
        assert requests.post(f"{url}/predict", json=telco_record, timeout=10).status_code == 200
        explained = requests.post(f"{url}/explain", json=telco_record, timeout=10)
        assert explained.status_code == 200 and "contributions" in explained.json()
        metrics = requests.get(f"{url}/metrics", timeout=10).text
        assert 'tabserve_requests_total{endpoint="/predict",method="POST",status="200"} 1.0' \
            in metrics
        # drift counts live in files beside the metrics, on the /tmp volume
        assert "tabserve_drift_counted_records_total 1.0" in metrics
        assert requests.get(f"{url}/drift", timeout=10).json()["records"] == 1
        assert logs(name).count("Booting worker") == 1
        # the manifests' preStop hook runs `sleep` in the container: the image has it
        subprocess.run(["docker", "exec", name, "sleep", "0"], check=True, timeout=30)
        old = requests.get(f"{url}/model", timeout=10).json()["model_version"]
        _converted(LEGACY / "loans.bin", models / "model.bin")
        docker("kill", "--signal", "HUP", name)
        new = wait_for(lambda: (v := requests.get(f"{url}/model", timeout=10).json()[
            "model_version"]) != old and v, 60, "the reloaded model")
        assert requests.get(f"{url}/model", timeout=10).json()["target"] == "approved"
        assert new != old
        # an old bundle has no profile: drift is unavailable, and says why
        assert requests.get(f"{url}/drift", timeout=10).status_code == 501
        logged = logs(name)
    finally:
        docker("rm", "-f", name, check=False)
    assert "[ERROR]" not in logged and "Traceback" not in logged, logged


def test_the_image_serves_grpc_with_grpc_port_through_a_reload(image, tmp_path, telco_bundle,
                                                               telco_record):
    """The image's default command with GRPC_PORT, restricted as the Kubernetes pods run it:
    Triton's gRPC client is answered as /predict answers, and again by the new workers after
    SIGHUP (they bind the port the old ones held), and SIGTERM ends it cleanly."""
    import tritonclient.grpc as triton_grpc

    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(ROOT / "model.bin", models / "model.bin")
    models.chmod(0o755)
    (models / "model.bin").chmod(0o644)
    port, grpc_port = free_port(), free_port()
    name = f"tabserve-test-{uuid.uuid4().hex[:8]}"
    docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:9696",
           "-p", f"127.0.0.1:{grpc_port}:9697", "-e", "GRPC_PORT=9697",
           "--read-only", "--tmpfs", "/tmp", "--user", f"{IMAGE_UID}:{IMAGE_UID}",
           "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
           "-v", f"{models}:/models:ro", "-e", "MODEL_PATH=/models/model.bin", image)
    url = f"http://127.0.0.1:{port}"
    client = triton_grpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    try:
        wait_healthy(url, name)
        expected = requests.post(f"{url}/predict", json=telco_record, timeout=10).json()
        inputs = []
        for declared in requests.get(f"{url}/v2/models/churn", timeout=10).json()["inputs"]:
            name_, datatype = declared["name"], declared["datatype"]
            tensor = triton_grpc.InferInput(name_, [1], datatype)
            tensor.set_data_from_numpy(np.array([telco_record[name_]], dtype={
                "FP64": np.float64, "BYTES": np.object_, "INT64": np.int64}[datatype]))
            inputs.append(tensor)

        def ready(version: str) -> bool:
            try:
                return client.is_model_ready("churn", version)
            except Exception:  # noqa: BLE001 - not listening yet (calls through a reload are
                return False   # tests/test_open_inference.py's, without Docker's port proxy)

        wait_for(lambda: ready(telco_bundle.version), 60, "gRPC to answer")
        result = client.infer("churn", inputs)
        assert abs(result.as_numpy("churn_probability")[0]
                   - expected["churn_probability"]) < 1e-9
        # another churn model (an older bundle): the new workers serve its version
        _converted(LEGACY / "telco.bin", models / "model.bin")
        new = ModelBundle.load(models / "model.bin").version
        assert new != telco_bundle.version
        docker("kill", "--signal", "HUP", name)
        wait_for(lambda: ready(new), 60, "gRPC from the new workers")
        assert not client.is_model_ready("churn", telco_bundle.version)
        docker("stop", name, timeout=60)
        assert docker("inspect", "--format", "{{.State.ExitCode}}", name) == "0"
        logged = logs(name)
    finally:
        client.close()
        docker("rm", "-f", name, check=False)
    assert "[ERROR]" not in logged and "Traceback" not in logged, logged


def test_a_read_only_container_without_tmp_ends_with_one_line(image):
    done = subprocess.run(["docker", "run", "--rm", "--read-only", image],
                          capture_output=True, text=True, timeout=120)
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode != 0
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--tmpfs /tmp" in lines[0], lines


def test_workers_follow_the_container_cpu_quota(image):
    """gunicorn.conf.py's worker count, read inside a container limited to one CPU and inside
    one with no limit (this machine has 2 cores)."""
    count = ["python", "-c", "import runpy; print(runpy.run_path('gunicorn.conf.py')['workers'])"]
    assert docker("run", "--rm", "--cpus", "1", image, *count).splitlines()[-1] == "1"
    assert docker("run", "--rm", image, *count).splitlines()[-1] == str(len(os.sched_getaffinity(0)))


INSTALLED = ["python", "-c", "import importlib.metadata as m; "
             "print(sorted(f'{d.name.lower()}=={d.version}' for d in m.distributions()))"]


def test_the_image_built_from_uv_lock_holds_what_the_pipfile_lock_one_holds(
        image, telco_bundle, telco_record):
    """`docker build --build-arg LOCK=uv .` installs from uv.lock: the same packages at the
    same versions as the default build from Pipfile.lock, and it serves the same answer."""
    from_uv = build(ROOT, "--build-arg", "LOCK=uv")
    try:
        installed = docker("run", "--rm", from_uv, *INSTALLED).splitlines()[-1]
        assert installed == docker("run", "--rm", image, *INSTALLED).splitlines()[-1]
        assert "'xgboost-cpu==" in installed and "'matplotlib==" not in installed
        name, url = run_container(from_uv)
        try:
            answer = requests.post(f"{url}/predict", json=telco_record, timeout=10).json()
        finally:
            docker("rm", "-f", name, check=False)
        expected = JsonAnswers(Predictor(telco_bundle)).for_records([telco_record])[0]
        assert answer["churn_probability"] == expected["churn_probability"]
    finally:
        docker("rmi", "-f", from_uv, check=False)


def _seconds(duration: str) -> float:
    """A Fly duration ("15s", "1m") in seconds."""
    number, unit = re.fullmatch(r"(\d+)(s|m)", duration).groups()
    return int(number) * (60 if unit == "m" else 1)


def accepted_connections(container: str, port: int) -> int:
    """Connections to `port` a process in the container has accepted: established, with an
    inode (one still in the listen queue has none), from the container's /proc/net/tcp."""
    table = docker("exec", container, "cat", "/proc/net/tcp").splitlines()[1:]
    return sum(1 for line in table
               if (cells := line.split())[1].endswith(f":{port:04X}") and cells[3] == "01"
               and cells[9] != "0")


def test_fly_toml_runs_as_fly_would_run_the_image(image, telco_record):
    """fly.toml, read as Fly reads it: the image its Dockerfile builds, run with its env in a
    machine of its size (CPUs and memory), answers its HTTP check on its internal port and
    predicts there; on its kill signal a request in flight still gets its answer and the
    container exits 0 within its kill timeout. Fly's own machines, proxy and TLS are not
    reached here."""
    fly = tomllib.loads((ROOT / "fly.toml").read_text())
    assert (ROOT / fly["build"]["dockerfile"]).exists()
    service, vm = fly["http_service"], fly["vm"][0]
    port = service["internal_port"]
    cpus = {"shared-cpu-1x": "1", "shared-cpu-2x": "2"}[vm["size"]]
    memory = vm["memory"].lower().replace("mb", "m").replace("gb", "g")
    env = [arg for name, value in fly.get("env", {}).items() for arg in ("-e", f"{name}={value}")]
    host_port = free_port()
    name = f"tabserve-test-{uuid.uuid4().hex[:8]}"
    docker("run", "-d", "--name", name, "--cpus", cpus, "--memory", memory, *env,
           "-p", f"127.0.0.1:{host_port}:{port}", image)
    url = f"http://127.0.0.1:{host_port}"
    try:
        for check in service["checks"]:
            def answers_check(check=check) -> bool:
                try:
                    return requests.request(check["method"], f"{url}{check['path']}",
                                            timeout=_seconds(check["timeout"])).ok
                except (requests.ConnectionError, requests.Timeout):  # not answering yet
                    return False
            wait_for(answers_check, 60, f"the check {check['path']} to pass")
        answer = requests.post(f"{url}/predict", json=telco_record, timeout=10)
        assert answer.status_code == 200 and "churn_probability" in answer.json()
        body = json.dumps(telco_record).encode()
        with socket.create_connection(("127.0.0.1", host_port), timeout=60) as client:
            client.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: "
                           b"application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                           + body[:10])
            wait_for(lambda: accepted_connections(name, port) > 0, 30,
                     "a worker to accept the request")
            docker("kill", "--signal", fly["kill_signal"], name)
            wait_for(lambda: "Handling signal" in logs(name), 30, "gunicorn to take the signal")
            client.sendall(body[10:])
            answer = b""
            while chunk := client.recv(65536):  # until the server closes
                answer += chunk
        docker("wait", name, timeout=_seconds(fly["kill_timeout"]) + 10)  # + the CLI's own
        assert answer.startswith(b"HTTP/1.1 200") and b"churn_probability" in answer, logs(name)
        assert docker("inspect", "--format", "{{.State.ExitCode}}", name) == "0", logs(name)
        assert docker("inspect", "--format", "{{.State.OOMKilled}}", name) == "false"
    finally:
        docker("rm", "-f", name, check=False)


def test_another_model_without_rebuilding(image, tmp_path, flower_csv):
    model = tmp_path / "other.bin"
    subprocess.run([PYTHON, "train.py", "--data", str(flower_csv), "--target", "species",
                    "--output", str(model), "--folds", "3"], cwd=ROOT, check=True,
                   capture_output=True, timeout=300)
    model.chmod(0o644)
    name, url = run_container(image, "-v", f"{model}:/models/model.bin:ro",
                              "-e", "MODEL_PATH=/models/model.bin")
    try:
        record = requests.get(f"{url}/model", timeout=10).json()["example"]
        answer = requests.post(f"{url}/predict", json=record, timeout=10).json()
        assert set(answer["probabilities"]) == {"setosa", "versicolor", "virginica"}
    finally:
        docker("rm", "-f", name, check=False)


def assert_no_duplicate_keys(path: Path) -> None:
    """The `docker compose` plugin refuses a key given twice in one mapping; docker-compose 1.x
    and plain YAML loaders keep the last one silently."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
            repeated = {key for key in keys if keys.count(key) > 1}
            assert not repeated, f"{path.name}: {sorted(repeated)} given twice in one mapping"
            return super().construct_mapping(node, deep=deep)
    yaml.load(path.read_text(), Loader=StrictLoader)


def test_docker_compose_up_healthy_predict_down(image, telco_record):
    """The shipped docker-compose.yml with Debian's docker-compose (which validates it against
    the Compose Specification, the format the `docker compose` plugin reads), on the image
    this run built."""
    need_tool("docker-compose")
    port = free_port()
    project = f"tabserve-test-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "TABSERVE_IMAGE": image, "TABSERVE_PORT": str(port)}

    def compose(*args: str) -> str:
        done = subprocess.run(["docker-compose", "-p", project, "-f",
                               str(ROOT / "docker-compose.yml"), *args], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"docker-compose {' '.join(args)}: {done.stderr}"
        return done.stdout.strip()

    compose("config", "--quiet")
    assert_no_duplicate_keys(ROOT / "docker-compose.yml")
    compose("up", "-d", "--no-build")
    try:
        container = compose("ps", "-q", "tabserve")
        wait_for(lambda: docker("inspect", "--format", "{{.State.Health.Status}}",
                                container) == "healthy", 90, "compose's container to be healthy")
        answer = requests.post(f"http://127.0.0.1:{port}/predict", json=telco_record, timeout=10)
        assert answer.status_code == 200 and "churn_probability" in answer.json()
    finally:
        compose("down")
    assert docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}") == ""


def nginx_conf(run: Path, http: str) -> str:
    """nginx in the foreground, everything it writes under `run`, `http` inside http {}."""
    return f"""
daemon off;
user {getpass.getuser()};
pid {run}/nginx.pid;
error_log {run}/error.log;
events {{ }}
http {{
    access_log off;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
{http}
}}
"""


# --- Kubernetes: a rolling update, replayed with real replicas behind nginx as the Service ---

SERVICE_HTTP = """
    upstream replicas {{
        include {run}/endpoints.conf;
    }}
    server {{
        listen 127.0.0.1:{port};
        # no client keep-alive: a reload (our stand-in for an Endpoints change, which a real
        # Service applies without one) closes idle kept-alive connections, and a request sent
        # on one at that moment fails in the client, whatever the replicas do
        keepalive_timeout 0;
        location / {{
            proxy_pass http://replicas;
            # predictions are idempotent: a request a replica could not take goes to another
            proxy_next_upstream error timeout http_502 http_503 non_idempotent;
            proxy_next_upstream_tries 3;
            proxy_connect_timeout 1s;
        }}
    }}
"""


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except (requests.ConnectionError, requests.Timeout):  # not answering yet
        return False


class Service:
    """nginx standing in for a Service: its endpoints are the ready replicas, and changing
    them is a reload, as kube-proxy or an ingress controller applies an Endpoints change."""

    def __init__(self, tmp_path: Path):
        nginx = need_tool("nginx", "/usr/sbin/nginx")
        self.run = tmp_path / "service"
        self.run.mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.endpoints: list[str] = []
        conf = self.run / "nginx.conf"
        conf.write_text(nginx_conf(self.run, SERVICE_HTTP.format(run=self.run, port=self.port)))
        self.nginx, self.conf = nginx, conf
        self.process = None

    def set_endpoints(self, urls: list[str]) -> None:
        self.endpoints = list(urls)
        lines = [f"server {url.removeprefix('http://')} max_fails=1 fail_timeout=5s;"
                 for url in urls]
        (self.run / "endpoints.conf").write_text("\n".join(lines) + "\n")
        if self.process is None:
            self.process = subprocess.Popen([self.nginx, "-p", str(self.run), "-c",
                                             str(self.conf)], stderr=subprocess.PIPE)
            wait_for(lambda: answers(f"{self.url}/health"), 10, "nginx")
        else:
            subprocess.run([self.nginx, "-p", str(self.run), "-c", str(self.conf), "-s",
                            "reload"], check=True, timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)


class SteadyLoad:
    """Clients posting one record each, back to back, until stopped; every answer counted."""

    def __init__(self, url: str, record: dict, clients: int = 4):
        import threading
        self.url, self.record = url, record
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.stopping = threading.Event()
        # daemons: a test that fails before stop() must not keep the run from ending
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def client(self) -> None:
        with requests.Session() as session:
            while not self.stopping.is_set():
                started = time.perf_counter()
                try:
                    response = session.post(f"{self.url}/predict", json=self.record, timeout=30)
                    if response.status_code != 200:
                        self.failures.append(f"{response.status_code} {response.text[:100]}")
                except requests.RequestException as err:
                    self.failures.append(repr(err)[:120])
                self.latencies.append(time.perf_counter() - started)

    def stop(self) -> str:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)
        ms = sorted(1000 * s for s in self.latencies)
        return (f"{len(ms)} requests, {len(self.failures)} failed, latency p50 "
                f"{ms[len(ms) // 2]:.1f} ms, p99 {ms[int(len(ms) * 0.99)]:.1f} ms, "
                f"max {ms[-1]:.1f} ms")


PRE_STOP_PAUSE = 5  # deploy/kubernetes/base/deployment.yaml's preStop


def replace_replica(service: Service, old: tuple[str, str], image: str) -> tuple[str, str]:
    """One step of a rolling update with maxSurge 1, maxUnavailable 0, as the Deployment
    does it: the new pod starts and becomes ready (readiness on /ready) and joins the
    endpoints; then the old pod leaves them while its preStop pause runs, and gets SIGTERM
    after it; gunicorn drains and exits 0."""
    new = run_container(image, "--cpus", "1")
    wait_for(lambda: answers(f"{new[1]}/ready"), 60, "the new pod's /ready")
    service.set_endpoints([*service.endpoints, new[1]])
    service.set_endpoints([url for url in service.endpoints if url != old[1]])
    time.sleep(PRE_STOP_PAUSE)  # the preStop hook is a pause: this is the thing it stands for
    docker("kill", "--signal", "TERM", old[0])
    docker("wait", old[0], timeout=60)
    assert docker("inspect", "--format", "{{.State.ExitCode}}", old[0]) == "0"
    docker("rm", "-f", old[0], check=False)
    return new


def test_a_rolling_update_of_three_replicas_drops_no_request(image, tmp_path, telco_record):
    service = Service(tmp_path)  # first: it skips where nginx is missing
    replicas: list[tuple[str, str]] = []
    try:
        replicas += [run_container(image, "--cpus", "1") for _ in range(3)]
        service.set_endpoints([url for _, url in replicas])
        load = SteadyLoad(service.url, telco_record)
        wait_for(lambda: len(load.latencies) >= 50, 30, "the load to run")
        for at in range(3):
            replicas[at] = replace_replica(service, replicas[at], image)
        wait_for(lambda: len(load.latencies) >= 50, 30, "more load on the new replicas")
        report = load.stop()
        print(f"\nrolling update of 3 replicas under load: {report}")
        assert load.failures == [], load.failures[:5]

        # a replica killed outright (SIGKILL: no preStop, no drain), still in the endpoints
        load = SteadyLoad(service.url, telco_record)
        wait_for(lambda: len(load.latencies) >= 50, 30, "the load to run")
        docker("kill", "--signal", "KILL", replicas[0][0])
        done = len(load.latencies)
        wait_for(lambda: len(load.latencies) >= done + 200, 60, "load after the kill")
        report = load.stop()
        print(f"one replica of 3 killed with SIGKILL under load: {report}")
        assert len(load.failures) <= 4  # at most the requests in flight on it; nginx retries
    finally:
        service.stop()
        for name, _ in replicas:
            docker("rm", "-f", name, check=False)


# --- Elastic Beanstalk: what `eb deploy` uploads (git HEAD), behind nginx with our config ---

EB_HTTP = """
    {include}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_set_header Host $host;
        }}
    }}
"""


@process_fixture(scope="module")
def eb_bundle_image(docker_engine, tmp_path_factory):
    """The image built from `git archive HEAD`, which is what the EB CLI zips and uploads."""
    bundle_dir = tmp_path_factory.mktemp("eb-bundle")
    archive = bundle_dir / "bundle.tar"
    subprocess.run(["git", "archive", "--format=tar", "-o", str(archive), "HEAD"], cwd=ROOT,
                   check=True)
    source = bundle_dir / "source"
    source.mkdir()
    # tar itself: Debian's Python 3.11.2 predates tarfile's extraction filters
    subprocess.run(["tar", "-xf", str(archive), "-C", str(source)], check=True)
    for needed in ("Dockerfile", "model.bin", ".ebextensions/healthcheck.config",
                   ".platform/nginx/conf.d/body_size.conf"):
        assert (source / needed).is_file(), f"{needed} is not committed"
    tag = build(source)
    yield tag, source
    docker("rmi", "-f", tag, check=False)


def start_nginx(tmp_path: Path, upstream_url: str, include: str) -> tuple[subprocess.Popen, str]:
    nginx = need_tool("nginx", "/usr/sbin/nginx")
    run = tmp_path / f"nginx-{uuid.uuid4().hex[:6]}"
    run.mkdir()
    port = free_port()
    conf = run / "nginx.conf"
    conf.write_text(nginx_conf(run, EB_HTTP.format(port=port, include=include,
                                                   upstream=upstream_url.rsplit(":", 1)[1])))
    process = subprocess.Popen([nginx, "-p", str(run), "-c", str(conf)],
                               stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            requests.get(f"{url}/health", timeout=1)
            return process, url
        except (requests.ConnectionError, requests.Timeout):  # not answering yet
            if process.poll() is not None:
                raise AssertionError(f"nginx exited: {process.stderr.read()}") from None
            time.sleep(0.1)
    process.kill()
    raise AssertionError("nginx did not start")


def test_eb_bundle_serves_a_full_batch_behind_nginx(eb_bundle_image, tmp_path, telco_record):
    image, source = eb_bundle_image
    name, upstream = run_container(image)
    batch = [telco_record] * 10_000  # the API's default batch limit: about 4 MB of JSON
    try:
        include = f"include {source}/.platform/nginx/conf.d/*.conf;"
        nginx, url = start_nginx(tmp_path, upstream, include)
        try:
            assert requests.get(f"{url}/health", timeout=5).json() == {"status": "ok"}
            assert requests.get(f"{url}/", timeout=5).status_code == 200
            response = requests.post(f"{url}/predict", json=batch, timeout=120)
            assert response.status_code == 200, response.text[:300]
            assert len(response.json()) == 10_000
        finally:
            nginx.terminate()
            nginx.wait(timeout=10)
        # the control: EB's nginx without our config refuses the same batch
        nginx, url = start_nginx(tmp_path, upstream, "")
        try:
            assert requests.post(f"{url}/predict", json=batch, timeout=120).status_code == 413
        finally:
            nginx.terminate()
            nginx.wait(timeout=10)
    finally:
        docker("rm", "-f", name, check=False)


def test_eb_health_check_path_is_the_health_endpoint(eb_bundle_image):
    _, source = eb_bundle_image
    config = (source / ".ebextensions/healthcheck.config").read_text()
    assert "aws:elasticbeanstalk:environment:process:default" in config
    assert "HealthCheckPath: /health" in config


def test_the_image_answers_beside_50_slow_connections(image, telco_record):
    """`docker run -p` with no proxy in front (issue 47): 50 slow HTTP connections, then 50
    slow HTTP/2 ones on the gRPC port, while valid requests keep being answered (each within
    a 10 s client timeout; sync workers left them all unanswered). Latencies are printed."""
    port, grpc_port = free_port(), free_port()
    name = f"tabserve-test-{uuid.uuid4().hex[:8]}"
    docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:9696",
           "-p", f"127.0.0.1:{grpc_port}:9697", "-e", "GRPC_PORT=9697", image)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, name)
        with SlowClients("127.0.0.1", port, 50) as attack:
            seconds = valid_latencies(url, telco_record, 60)
        with SlowGrpcClients("127.0.0.1", grpc_port, 50):
            calls = grpc_latencies(grpc_port, telco_record, 60)
        print(f"\nthe image beside {attack.opened} slow connections: /predict p99 "
              f"{p99(seconds) * 1000:.1f} ms; beside 50 slow HTTP/2 ones, ModelInfer p99 "
              f"{p99(calls) * 1000:.1f} ms")
    finally:
        docker("rm", "-f", name, check=False)


# --- an imported ONNX graph: its image installs onnxruntime; the others have none -----------

@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory) -> Path:
    """A bundle of an ONNX graph (skl2onnx's, of a scikit-learn Pipeline), as import_model.py
    writes it."""
    from tabserve.tables import load_csv
    from tabserve.training.importing import import_model

    folder = tmp_path_factory.mktemp("onnx-model")
    frame = course_frame()
    graph, columns = one_input_per_field(frame)
    (folder / "model.onnx").write_bytes(graph.SerializeToString())
    frame[columns].iloc[:ONNX_SAMPLE_ROWS].to_csv(folder / "sample.csv", index=False)
    imported = import_model(folder / "model.onnx", load_csv(folder / "sample.csv"), "churn")
    imported.bundle.save(folder / "model.bin")
    (folder / "model.bin").chmod(0o644)
    return folder / "model.bin"


@process_fixture(scope="session")
def onnx_image(docker_engine, tmp_path_factory, onnx_model):
    """The image `docker build .` makes of a checkout whose model.bin is the ONNX bundle."""
    context = tmp_path_factory.mktemp("onnx-image")
    for name in ("Dockerfile", ".dockerignore", "Pipfile", "Pipfile.lock", "pyproject.toml",
                 "uv.lock", "gunicorn.conf.py", "predict.py", "lambda_function.py"):
        shutil.copy(ROOT / name, context / name)
    shutil.copytree(ROOT / "tabserve", context / "tabserve",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(onnx_model, context / "model.bin")
    tag = build(context)
    yield tag
    docker("rmi", "-f", tag, check=False)


def test_an_onnx_models_image_runs_it_with_onnxruntime(onnx_image, onnx_model):
    """The header's ` onnx` makes the build install onnxruntime and onnx: the container
    answers as the bundle does in process (to float32's 1e-6: batch sizes differ)."""
    bundle = ModelBundle.load(onnx_model)
    records = [bundle.example, {**bundle.example, "tenure": 60, "contract": "two_year"}]
    expected = JsonAnswers(Predictor(bundle)).for_records(records)
    name, url = run_container(onnx_image)
    try:
        answers = requests.post(f"{url}/predict", json=records, timeout=10).json()
    finally:
        docker("rm", "-f", name, check=False)
    for got, want in zip(answers, expected):
        assert got["label"] == want["label"]
        assert got["churn_probability"] == pytest.approx(want["churn_probability"], abs=1e-6)


def test_the_default_image_has_no_onnxruntime_and_an_onnx_model_says_so(image, onnx_model):
    imports = ["python", "-c", "import onnxruntime"]
    done = subprocess.run(["docker", "run", "--rm", image, *imports], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode != 0 and "No module named 'onnxruntime'" in done.stderr
    done = subprocess.run(["docker", "run", "--rm", "-v", f"{onnx_model}:/models/model.bin:ro",
                           "-e", "MODEL_PATH=/models/model.bin", image],
                          capture_output=True, text=True, timeout=120)
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode != 0
    assert len(lines) == 1 and "onnxruntime is not installed here" in lines[0], lines
