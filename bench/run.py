"""Benchmark the service against reference apps on the same gunicorn settings.

    make bench                       # or: .venv/bin/python bench/run.py [--rounds 3 --seconds 4]
    make bench ARGS=--ablation       # and our service with each speed mechanism switched off
    make bench ARGS=--api-keys       # and with API keys on: with the key, without (401s), /health
    make bench ARGS="--model my.bin" # another model (ALLOW_PICKLE=1 for one that holds pickle)

Each round starts every server in turn (ours, a constant-answer Flask app, the course-style
DictVectorizer app, a bare WSGI app that only parses the body with the stdlib's json, and ours
again over the Open Inference Protocol: JSON tensors, binary tensors, gRPC), drives it with
wrk on loopback (1 thread, 8 connections; gRPC with bench/grpc_load.py, 8 calls in flight)
with one record and with a batch of 1,000, and stops it. Figures are medians over rounds; CPU is read from /proc for the server's
processes and from rusage for wrk. The Markdown table is appended to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from tabserve.model.bundle import ModelBundle, load_trusted  # noqa: E402
from tabserve.model.schema import Kind  # noqa: E402
from tabserve.tables import load_csv  # noqa: E402
from tabserve.serving.codecs.tensors import RAW_DTYPES  # noqa: E402
from tabserve.serving.codecs.tensors import datatype as tensor_datatype  # noqa: E402
from tabserve.settings import SPEEDUPS  # noqa: E402

APPS = Path(__file__).resolve().parent / "apps"
ALTERNATIVES = Path(__file__).resolve().parent / "alternatives"
VENVS = Path(__file__).resolve().parent / ".venvs"  # throwaway, not project dependencies
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BATCH = 1000
BENCH_KEY = "bench-api-key-0123456789abcdef"
KEYS_ON, KEYS_REFUSED = "tabserve, API keys on", "tabserve, API keys on, no key sent (401)"
KEYS_HEALTH = "tabserve, API keys on, GET /health"
MONITORING_OFF = "tabserve, monitoring off"
SYNC_WORKERS = "tabserve, sync workers"
SYNC = {"WORKER_CLASS": "sync"}  # the reference apps run as they would alone: sync workers
V2_SPEEDUPS = ("tensor_rows", "tensor_levels", "inference_before_flask")  # measured on /v2's path
V2_JSON, V2_BINARY, V2_GRPC = ("tabserve, /v2 JSON tensors", "tabserve, /v2 binary tensors",
                               "tabserve, gRPC (raw tensors)")
# each machine door against /predict, by server CPU per request: one record, 1,000 records
DOOR_GOALS = {V2_JSON: (1.0, 1.0), V2_BINARY: (1.0, 2.0), V2_GRPC: (1.0, 2.0)}


@dataclass(frozen=True)
class Encoded:
    """A body that is not JSON: its bytes, and the headers that say what they are."""
    data: bytes
    headers: dict[str, str] = field(default_factory=dict)


def records_body(records: list[dict]) -> object:
    """Our body, and the reference apps': a record alone, or a list of them."""
    return records[0] if len(records) == 1 else records


@dataclass
class Server:
    name: str
    target: str  # gunicorn's module:app (ignored when `command` is given)
    chdir: Path
    env: dict[str, str] = field(default_factory=dict)
    command: list[str] | None = None  # an alternative's own server; "{port}" is filled in
    health: str = "/health"
    path: str = "/predict"
    body: Callable[[list[dict]], object] = records_body
    method: str = "POST"
    key: str | None = None  # the API key the load sends (X-API-Key)
    grpc_port: int | None = None  # driven over gRPC on this port, not over HTTP


def alternative_bin(name: str, packages: list[str]) -> Path:
    """The bin directory of a venv holding one alternative server, made on first use with the
    same scikit-learn, XGBoost and numpy as ours (the course model's pickle must load)."""
    venv = VENVS / name
    if not (venv / "bin" / "python").exists():
        print(f"making {venv} (pip install {' '.join(packages)})", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        same = [f"{p}=={version(p)}" for p in ("scikit-learn", "xgboost-cpu", "numpy")]
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                        *packages, *same], check=True)
    return venv / "bin"


def alternatives(course_model: Path, work: Path) -> list[Server]:
    """BentoML, MLflow's model server and Seldon MLServer serving the course model (the same
    DictVectorizer and XGBoost as the course app), 2 workers each, in their request formats."""
    env = {"COURSE_MODEL": str(course_model)}
    bentoml = alternative_bin("bentoml", ["bentoml==1.4.40"])
    mlflow = alternative_bin("mlflow", ["mlflow==3.17.2"])
    # uvloop 0.22 and later stop MLServer 1.7's workers from starting
    mlserver = alternative_bin("mlserver", ["mlserver==1.7.1", "uvloop==0.21.0"])
    mlflow_model = work / "mlflow-model"
    subprocess.run([str(mlflow / "python"), str(ALTERNATIVES / "mlflow_model.py"),
                    str(course_model), str(mlflow_model)], check=True, capture_output=True)
    mlserver_models = work / "churn"
    mlserver_models.mkdir()
    shutil.copy(ALTERNATIVES / "mlserver_runtime.py", mlserver_models)
    (mlserver_models / "model-settings.json").write_text(json.dumps(
        {"name": "churn", "implementation": "mlserver_runtime.Churn"}))
    def on_path(bin_dir: Path) -> dict[str, str]:  # servers that start their own tools
        return {**env, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}

    return [
        Server("BentoML 1.4", "", ALTERNATIVES, on_path(bentoml),
               [str(bentoml / "bentoml"), "serve", "bentoml_service:Churn", "--host",
                "127.0.0.1", "--port", "{port}"],
               health="/readyz", body=lambda records: {"records": records}),
        Server("MLflow 3 model server", "", work, on_path(mlflow),
               [str(mlflow / "mlflow"), "models", "serve", "-m", str(mlflow_model), "-h",
                "127.0.0.1", "-p", "{port}", "--env-manager", "local", "--workers", "2"],
               health="/ping", path="/invocations",
               body=lambda records: {"dataframe_records": records}),
        Server("Seldon MLServer 1.7", "", mlserver_models,
               {**on_path(mlserver), "MLSERVER_PARALLEL_WORKERS": "2", "MLSERVER_HTTP_PORT": "{port}",
                "MLSERVER_GRPC_PORT": str(free_port()), "MLSERVER_METRICS_PORT": str(free_port())},
               [str(mlserver / "mlserver"), "start", str(mlserver_models)],
               health="/v2/models/churn/ready", path="/v2/models/churn/infer", body=v2_body),
    ]


def v2_body(records: list[dict]) -> dict:
    """An Open Inference Protocol request: one column per field, decoded by pandas."""
    def datatype(values: list) -> str:
        if all(isinstance(v, str) for v in values):
            return "BYTES"
        return "INT64" if all(isinstance(v, int) for v in values) else "FP64"

    columns = {name: [r[name] for r in records] for name in records[0]}
    return {"parameters": {"content_type": "pd"},
            "inputs": [{"name": name, "shape": [len(values)], "datatype": datatype(values),
                        "data": values} for name, values in columns.items()]}


def v2_tensors(bundle: ModelBundle) -> Callable[[list[dict]], object]:
    """Our Open Inference Protocol request, one JSON tensor per field, as tritonclient sends
    with binary_data=False."""
    def body(records: list[dict]) -> object:
        return {"inputs": [{"name": f.name, "shape": [len(records)],
                            "datatype": tensor_datatype(f),
                            "data": [r[f.name] for r in records]} for f in bundle.schema.fields]}
    return body


def raw_tensors(bundle: ModelBundle, records: list[dict]) -> list[tuple[dict, bytes]]:
    """Each field as a tensor's metadata and its binary data (the protocol's layout)."""
    tensors = []
    for f in bundle.schema.fields:
        tensor = {"name": f.name, "shape": [len(records)], "datatype": tensor_datatype(f),
                  "data": [r[f.name] for r in records]}
        tensors.append((tensor, encode_raw(tensor)))
    return tensors


def encode_raw(tensor: dict) -> bytes:
    """A tensor's `data` as the protocol's binary data (BYTES: each length, then the text)."""
    if tensor["datatype"] == "BYTES":
        return b"".join(len(text.encode()).to_bytes(4, "little") + text.encode()
                        for text in tensor["data"])
    return np.asarray(tensor["data"], dtype=RAW_DTYPES[tensor["datatype"]]).tobytes()


def v2_binary(bundle: ModelBundle) -> Callable[[list[dict]], Encoded]:
    """The binary tensor extension both ways, as tritonclient's default path sends it."""
    def body(records: list[dict]) -> Encoded:
        tensors = raw_tensors(bundle, records)
        head = json.dumps({"inputs": [
            {**{k: v for k, v in t.items() if k != "data"},
             "parameters": {"binary_data_size": len(raw)}} for t, raw in tensors],
            "parameters": {"binary_data_output": True}}).encode()
        return Encoded(head + b"".join(raw for _, raw in tensors),
                       {"Content-Type": "application/octet-stream",
                        "Inference-Header-Content-Length": str(len(head))})
    return body


def grpc_request(bundle: ModelBundle) -> Callable[[list[dict]], Encoded]:
    """A serialized ModelInferRequest with raw input contents, as tritonclient sends it."""
    def body(records: list[dict]) -> Encoded:
        from open_inference.grpc import protocol as pb

        tensors = raw_tensors(bundle, records)
        request = pb.ModelInferRequest(
            model_name=bundle.schema.target,
            inputs=[pb.ModelInferRequest.InferInputTensor(
                name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t, _ in tensors],
            raw_input_contents=[raw for _, raw in tensors])
        return Encoded(request.SerializeToString())
    return body


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """A server's worker processes, and theirs (an alternative may run workers of workers)."""
    try:
        direct = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return [p for child in direct for p in (child, *descendants(child))]


def cpu_seconds(pids: list[int]) -> float:
    return sum(stat_fields(pid, 11, 12) for pid in pids) / CLOCK_TICKS  # utime, stime


def page_faults(pids: list[int]) -> int:
    """Minor page faults: a fresh page of memory touched (a count, steady where speed is not)."""
    return sum(stat_fields(pid, 7) for pid in pids)  # minflt


def stat_fields(pid: int, *at: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return sum(int(fields[i]) for i in at)


def memory_mb(pids: list[int]) -> tuple[float, float]:
    """Resident (RSS) and proportional (PSS: shared pages split between sharers) MB."""
    rss = pss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return rss / 1024, pss / 1024


def tree_memory_mb(pid: int) -> tuple[float, float]:
    """RSS and PSS of a process tree: RSS counts the libraries every process maps once per
    process; PSS splits shared pages between their sharers, so it sums to what the tree
    really holds."""
    return memory_mb([pid, *descendants(pid)])


def timed(command: list[str]) -> tuple[float, tuple[float, float]]:
    """Wall seconds and the peak RSS and PSS (MB) of the command's process tree."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    peak = (0.0, 0.0)
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            rss, pss = tree_memory_mb(process.pid)
            peak = (max(peak[0], rss), max(peak[1], pss))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, errors = process.communicate()
    stop.set()
    sampler.join()
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed: {errors.strip()[-2000:]}")
    return time.perf_counter() - started, peak


def start(server: Server, port: int, workers: int) -> tuple[subprocess.Popen, float]:
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "WEB_CONCURRENCY": str(workers),
           **{name: value.replace("{port}", str(port)) for name, value in server.env.items()}}
    command = [part.replace("{port}", str(port)) for part in server.command or [
        str(Path(sys.executable).parent / "gunicorn"), "--config", str(ROOT / "gunicorn.conf.py"),
        "--chdir", str(server.chdir), "--access-logfile", "/dev/null", server.target]]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=server.chdir, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}{server.health}"
    while time.perf_counter() - started < 120:
        if process.poll() is not None:
            raise RuntimeError(f"{server.name} exited: {process.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return process, time.perf_counter() - started
        except OSError:
            time.sleep(0.01)
    stop(process)
    raise RuntimeError(f"{server.name} did not answer {url} within 120 s")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's whole process group (workers included), SIGKILL if it lingers."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def to_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def drive_grpc(server: Server, body_file: Path, seconds: float,
               connections: int) -> dict[str, float]:
    """One bench/grpc_load.py run; its figures and its own CPU time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("grpc_load.py")),
         f"127.0.0.1:{server.grpc_port}", str(body_file), f"{seconds:g}", str(connections)],
        capture_output=True, text=True, timeout=seconds + 60, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {**json.loads(done.stdout),
            "wrk_cpu": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)}


def drive(port: int, server: Server, body_file: Path, seconds: float,
          connections: int, headers: dict[str, str]) -> dict[str, float]:
    """One wrk run; its figures and its own CPU time."""
    if server.grpc_port is not None:
        return drive_grpc(server, body_file, seconds, connections)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s",
         str(Path(__file__).with_name("post.lua")), f"http://127.0.0.1:{port}{server.path}"],
        env={**os.environ, "BODY_FILE": str(body_file), "METHOD": server.method,
             **({"API_KEY": server.key} if server.key else {}),
             **({"HEADER_LENGTH": headers["Inference-Header-Content-Length"]}
                if "Inference-Header-Content-Length" in headers else {})},
        capture_output=True, text=True, timeout=seconds + 60, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = done.stdout
    latency = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)\s*$", out, re.MULTILINE))
    if len(latency) < 3:
        raise RuntimeError(f"wrk gave no latencies for {server.name} on {body_file.name}: {out}")
    requests_done = int(re.search(r"(\d+) requests in", out).group(1))
    socket_errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests": requests_done,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": to_ms(latency["50"]), "p90": to_ms(latency["90"]), "p99": to_ms(latency["99"]),
        "errors": socket_errors + (int(non_2xx.group(1)) if non_2xx else 0),
        "wrk_cpu": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
    }


def records_from_frame(bundle: ModelBundle, frame) -> list[dict]:
    """Rows of a frame as a client sends them: numbers as numbers, 0/1 flags as integers."""
    records = []
    for row in frame[bundle.schema.names].to_dict("records"):
        record = {}
        for f in bundle.schema.fields:
            value = row[f.name]
            if f.kind is Kind.NUMERIC:
                value = float(value)
            elif f.kind is Kind.BOOLEAN and value in ("0", "1"):
                value = int(value)
            record[f.name] = value
        records.append(record)
    return records


def complete_rows(bundle: ModelBundle):
    """Labelled training rows without missing values (the course app cannot take nulls)."""
    frame = load_csv(ROOT / bundle.metadata["data"]["path"])
    return frame.dropna(subset=[*bundle.schema.names, bundle.schema.target])


def train_course_model(bundle: ModelBundle, path: Path) -> None:
    """The course's recipe on the same rows: DictVectorizer, then the bundle's model family
    (a blend's XGBoost member)."""
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression
    from xgboost import XGBClassifier

    from tabserve.training.importing import class_codes

    frame = complete_rows(bundle)
    # an imported model's classes may be 0/1 where the table says yes/no (read as flags)
    y = (class_codes(frame[bundle.schema.target], bundle.classes)[0] == len(bundle.classes) - 1
         ).astype(int).to_numpy()
    dv = DictVectorizer(sparse=False)
    X = dv.fit_transform(records_from_frame(bundle, frame))
    # an imported model's family is "imported": the course's own LogisticRegression
    family, params = bundle.metrics["chosen"], bundle.metrics.get("chosen_params", {})
    if family == "blend":  # its XGBoost member
        family, params = next((m["family"], m["params"]) for m in params["members"]
                              if m["family"] == "xgboost")
    if family == "xgboost":
        model = XGBClassifier(**params, tree_method="hist", n_jobs=1,
                              random_state=bundle.metadata.get("seed", 1))
    else:
        model = LogisticRegression(C=1.0, max_iter=5000)
    model.fit(X, y)
    path.write_bytes(pickle.dumps((dv, model)))


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "model.bin")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    parser.add_argument("--alternatives", action="store_true",
                        help="also BentoML, MLflow and MLServer (venvs made in bench/.venvs)")
    parser.add_argument("--api-keys", action="store_true",
                        help="also our service with API keys on: with the key, without it "
                             "(401s, bodies unread), and GET /health beside them")
    parser.add_argument("--ablation", action="store_true",
                        help="also our service with each speed mechanism off (SPEEDUPS_OFF), "
                             "to show what each earns on its path")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("error: wrk is not installed (apt-get install wrk; `make bench` does)",
              file=sys.stderr)
        return 1
    bundle = load_trusted(args.model)  # ALLOW_PICKLE=1 for an older pickled bundle
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    records = records_from_frame(bundle, complete_rows(bundle).sample(BATCH, random_state=0))
    course_model = work / "course.bin"
    imported = bundle.metrics.get("imported", {})
    if imported.get("kind", "").startswith("the course's pair"):
        # an imported course model: the course's app serves the user's own pickle
        course_model = Path(bundle.metadata["imported_from"]["path"])
    else:
        train_course_model(bundle, course_model)
    servers = [
        Server("tabserve", "predict:app", ROOT, {"MODEL_PATH": str(args.model.resolve())}),
        Server("Flask, constant answer", "constant_flask:app", APPS, SYNC),
        Server("course app (DictVectorizer)", "course_app:app", APPS,
               {"COURSE_MODEL": str(course_model), **SYNC}),
        Server("plain WSGI, stdlib json parse", "plain_wsgi:app", APPS, SYNC),
    ]
    # what serving slow clients (gevent's worker, the default) costs against sync workers
    servers.append(Server(SYNC_WORKERS, "predict:app", ROOT,
                          {"MODEL_PATH": str(args.model.resolve()), **SYNC}))
    # the cost of counting for drift, measured beside ours in every run
    servers.append(Server(MONITORING_OFF, "predict:app", ROOT,
                          {"MODEL_PATH": str(args.model.resolve()), "MONITORING": "off"}))
    # the Open Inference Protocol's three ways in, beside /predict
    model_env = {"MODEL_PATH": str(args.model.resolve())}
    v2_path = f"/v2/models/{bundle.schema.target}/infer"
    grpc_port = free_port()
    servers += [Server(V2_JSON, "predict:app", ROOT, model_env, path=v2_path,
                       body=v2_tensors(bundle)),
                Server(V2_BINARY, "predict:app", ROOT, model_env, path=v2_path,
                       body=v2_binary(bundle)),
                Server(V2_GRPC, "predict:app", ROOT, {**model_env, "GRPC_PORT": str(grpc_port)},
                       body=grpc_request(bundle), grpc_port=grpc_port)]
    if args.alternatives:
        servers += alternatives(course_model, work)
    if args.api_keys:
        keyed = {"MODEL_PATH": str(args.model.resolve()), "API_KEYS": BENCH_KEY}
        servers += [Server(KEYS_ON, "predict:app", ROOT, keyed, key=BENCH_KEY),
                    Server(KEYS_REFUSED, "predict:app", ROOT, keyed),
                    Server(KEYS_HEALTH, "predict:app", ROOT, keyed, path="/health",
                           method="GET")]
    if args.ablation:  # each on the path it speeds: /v2's or /predict's
        servers += [Server(f"tabserve, {name} off", "predict:app", ROOT,
                           {"MODEL_PATH": str(args.model.resolve()), "SPEEDUPS_OFF": name},
                           **({"path": v2_path, "body": v2_tensors(bundle)}
                              if name in V2_SPEEDUPS else {}))
                    for name in SPEEDUPS]
    samples: dict[tuple[str, str], list[dict]] = {}
    startups: dict[str, list[float]] = {}
    memory: dict[str, list[tuple[float, float]]] = {}
    began = time.perf_counter()
    for round_number in range(args.rounds):
        for server in servers:
            port = free_port()
            process, startup = start(server, port, args.workers)
            startups.setdefault(server.name, []).append(startup)
            try:
                for body_name, sent in (("single", records[:1]), ("batch", records)):
                    body_file = work / f"{body_name}.json"
                    payload = server.body(sent)
                    encoded = payload if isinstance(payload, Encoded) else \
                        Encoded(json.dumps(payload).encode(),
                                {"Content-Type": "application/json"})
                    body_file.write_bytes(encoded.data)
                    warm_up(server, port, encoded)
                    pids = [process.pid, *descendants(process.pid)]
                    cpu_before, faults_before = cpu_seconds(pids), page_faults(pids)
                    figures = drive(port, server, body_file, args.seconds, args.connections,
                                    encoded.headers)
                    figures["server_cpu"] = cpu_seconds(pids) - cpu_before
                    figures["faults"] = page_faults(pids) - faults_before
                    samples.setdefault((server.name, body_name), []).append(figures)
                memory.setdefault(server.name, []).append(memory_mb(pids))
            finally:
                stop(process)
        print(f"round {round_number + 1}/{args.rounds} done "
              f"({time.perf_counter() - began:.0f} s)", flush=True)

    report = render(args, bundle, servers, samples, startups, memory)
    print(report)
    with args.results.open("a") as f:
        f.write(report + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


def warm_up(server: Server, port: int, encoded: Encoded) -> None:
    """Requests to every worker before measuring (gRPC: until each worker serves it)."""
    if server.grpc_port is not None:
        import grpc

        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
            for _ in range(20):
                infer(encoded.data, timeout=30, wait_for_ready=True)
        return
    for _ in range(20):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{server.path}", method=server.method,
            data=encoded.data if server.method == "POST" else None,
            headers={**encoded.headers, **({"X-API-Key": server.key} if server.key else {})})
        try:
            urllib.request.urlopen(request, timeout=30).read()
        except urllib.error.HTTPError as err:  # the refusals measured below
            if err.code != 401:
                raise


def render(args, bundle, servers, samples, startups, memory) -> str:
    def figure(server: str, body: str, key: str) -> float:
        runs = samples[(server, body)]
        if key in ("server_cpu_per_request", "wrk_cpu_per_request"):
            source = "server_cpu" if key.startswith("server") else "wrk_cpu"
            return median([r[source] / r["requests"] * 1e3 for r in runs])
        if key == "faults_per_request":
            return median([r["faults"] / r["requests"] for r in runs])
        return median([r[key] for r in runs])

    versions = ", ".join(f"{name} {version(name)}" for name in
                         ("flask", "gunicorn", "scikit-learn", "xgboost-cpu", "numpy", "msgspec"))
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor())
    lines = [
        f"## {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC: model {bundle.version} "
        f"({bundle.metrics['chosen']}, {len(bundle.schema.fields)} fields)",
        "",
        f"{cpu}, {os.cpu_count()} CPUs, Linux {platform.release()}; Python "
        f"{platform.python_version()}; {versions}. gunicorn with this repository's "
        f"gunicorn.conf.py for ours and the reference apps: {args.workers} workers (the default "
        f"WORKER_CLASS for ours, sync for the reference apps and '{SYNC_WORKERS}'), "
        f"1 thread, preload, access log to /dev/null. wrk -t1 -c{args.connections}, "
        f"{args.seconds:g} s per run, medians of {args.rounds} rounds. CPU per request: the "
        f"server's processes / requests. gRPC is driven by bench/grpc_load.py (Python, "
        f"{args.connections} calls in flight) instead of wrk: its client CPU is in the wrk "
        f"column, and on two shared cores it takes from the server's."
        + (" BentoML, MLflow and MLServer serve the course app's model with their own servers "
           "and 2 workers each, in their own request formats (bench/alternatives)."
           if any(s.command for s in servers) else ""),
        "",
        "| server | body | req/s | records/s | p50 ms | p90 ms | p99 ms | errors "
        "| server CPU ms/req | wrk CPU ms/req | page faults/req | RSS MB | PSS MB | startup s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for server in servers:
        rss = median([m[0] for m in memory[server.name]])
        pss = median([m[1] for m in memory[server.name]])
        for body, size in (("single", 1), ("batch", BATCH)):
            rps = figure(server.name, body, "rps")
            lines.append(
                f"| {server.name} | {'1 record' if size == 1 else f'{size:,} records'} "
                f"| {rps:,.0f} | {rps * size:,.0f} | {figure(server.name, body, 'p50'):.2f} "
                f"| {figure(server.name, body, 'p90'):.2f} | {figure(server.name, body, 'p99'):.2f} "
                f"| {figure(server.name, body, 'errors'):.0f} "
                f"| {figure(server.name, body, 'server_cpu_per_request'):.3f} "
                f"| {figure(server.name, body, 'wrk_cpu_per_request'):.3f} "
                f"| {figure(server.name, body, 'faults_per_request'):.1f} "
                f"| {rss:.0f} | {pss:.0f} | {median(startups[server.name]):.2f} |")
    ours, ceiling, course, plain = (s.name for s in servers[:4])
    ratio = figure(ours, "single", "rps") / figure(ceiling, "single", "rps")
    cpu_ratio = (figure(ceiling, "single", "server_cpu_per_request")
                 / figure(ours, "single", "server_cpu_per_request"))
    p99 = figure(ours, "single", "p99") / figure(ceiling, "single", "p99")
    batch_ratio = figure(ours, "batch", "rps") / figure(plain, "batch", "rps")
    batch_cpu = (figure(plain, "batch", "server_cpu_per_request")
                 / figure(ours, "batch", "server_cpu_per_request"))
    startup = median(startups[ours])

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    lines += [
        "",
        f"- One record, throughput vs constant-answer Flask: **{ratio:.2f}×** req/s "
        f"({cpu_ratio:.2f}× by server CPU per request); goal ≥ 0.90: {verdict(ratio >= 0.9)}.",
        f"- One record, p99 latency vs constant-answer Flask: **{p99:.2f}×**; goal ≤ 1.2: "
        f"{verdict(p99 <= 1.2)}.",
        f"- 1,000 records, records/s vs plain WSGI parsing with stdlib json: **{batch_ratio:.2f}×** "
        f"({batch_cpu:.2f}× by server CPU per request); goal ≥ 1.2: "
        f"{verdict(batch_ratio >= 1.2)}.",
        f"- Startup to ready: **{startup:.2f} s**; goal < 1.5 s: {verdict(startup < 1.5)}.",
        f"- Against the course app: **{figure(ours, 'single', 'rps') / figure(course, 'single', 'rps'):.2f}×** "
        f"req/s with one record, **{figure(ours, 'batch', 'rps') / figure(course, 'batch', 'rps'):.2f}×** "
        f"with 1,000.",
    ]
    monitoring = figure(ours, "single", "rps") / figure(MONITORING_OFF, "single", "rps")
    monitoring_batch = figure(ours, "batch", "rps") / figure(MONITORING_OFF, "batch", "rps")
    lines += [
        f"- Drift monitoring on (the default) against MONITORING=off: **{monitoring:.2f}×** "
        f"one-record req/s, goal ≥ 0.95: {verdict(monitoring >= 0.95)}; **{monitoring_batch:.2f}×"
        f"** 1,000-record records/s, goal ≥ 0.90: {verdict(monitoring_batch >= 0.9)}."]
    workers_single = figure(ours, "single", "rps") / figure(SYNC_WORKERS, "single", "rps")
    workers_batch = figure(ours, "batch", "rps") / figure(SYNC_WORKERS, "batch", "rps")
    workers_p99 = figure(ours, "single", "p99") / figure(SYNC_WORKERS, "single", "p99")
    lines += [
        f"- the default worker (WORKER_CLASS) against sync workers: "
        f"**{workers_single:.2f}×** one-record req/s, **{workers_batch:.2f}×** 1,000-record "
        f"records/s, p99 {workers_p99:.2f}×; goal ≥ 0.95 both: "
        f"{verdict(workers_single >= 0.95 and workers_batch >= 0.95)}."]
    for name, (goal_single, goal_batch) in DOOR_GOALS.items():
        single = figure(name, "single", "rps") / figure(ours, "single", "rps")
        batch = figure(name, "batch", "rps") / figure(ours, "batch", "rps")
        cpu_single = (figure(ours, "single", "server_cpu_per_request")
                      / figure(name, "single", "server_cpu_per_request"))
        cpu_batch = (figure(ours, "batch", "server_cpu_per_request")
                     / figure(name, "batch", "server_cpu_per_request"))
        lines.append(f"- {name.removeprefix('tabserve, ')} against /predict, by server CPU per "
                     f"request (req/s beside): **{cpu_single:.2f}×** with one record "
                     f"({single:.2f}×), goal ≥ {goal_single:g}: "
                     f"{verdict(cpu_single >= goal_single)}; **{cpu_batch:.2f}×** with 1,000 "
                     f"({batch:.2f}×), goal ≥ {goal_batch:g}: {verdict(cpu_batch >= goal_batch)}.")
    if KEYS_ON in {s.name for s in servers}:
        keys_on = figure(KEYS_ON, "single", "rps") / figure(ours, "single", "rps")
        lines += [
            f"- API keys on, the key sent: **{keys_on:.2f}×** one-record req/s of keys off "
            f"({figure(KEYS_ON, 'batch', 'rps') / figure(ours, 'batch', 'rps'):.2f}× with "
            f"1,000); goal ≥ 0.95: {verdict(keys_on >= 0.95)}.",
            f"- Refused for want of a key (401): **{figure(KEYS_REFUSED, 'single', 'rps'):,.0f}"
            f"**/s with one record, **{figure(KEYS_REFUSED, 'batch', 'rps'):,.0f}**/s with a "
            f"1,000-record body (unread); GET /health on the same server: "
            f"**{figure(KEYS_HEALTH, 'single', 'rps'):,.0f}**/s."]
    for server in servers:
        if server.name.startswith("tabserve, ") and "SPEEDUPS_OFF" in server.env:
            on = V2_JSON if server.path != "/predict" else ours
            single = figure(on, "single", "rps") / figure(server.name, "single", "rps")
            batch = figure(on, "batch", "rps") / figure(server.name, "batch", "rps")
            lines.append(f"- What {server.env['SPEEDUPS_OFF']} earns: **{single:.2f}×** req/s with "
                         f"one record, **{batch:.2f}×** with 1,000 (on / off).")
    return "\n".join(lines + [""])


if __name__ == "__main__":
    sys.exit(main())
