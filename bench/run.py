"""Benchmark the service against reference apps on the same gunicorn settings.

    make bench                       # or: .venv/bin/python bench/run.py [--rounds 3 --seconds 4]

Each round starts every server in turn (ours, a constant-answer Flask app, the course-style
DictVectorizer app, a bare WSGI app that only parses the body with the stdlib's json), drives
it with wrk on loopback (1 thread, 8 connections) with one record and with a batch of 1,000,
and stops it. Figures are medians over rounds; CPU is read from /proc for the server's
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
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tabserve.bundle import ModelBundle  # noqa: E402
from tabserve.data import load_csv  # noqa: E402
from tabserve.schema import Kind  # noqa: E402

APPS = Path(__file__).resolve().parent / "apps"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BATCH = 1000


@dataclass
class Server:
    name: str
    target: str  # gunicorn's module:app
    chdir: Path
    env: dict[str, str] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            continue
    return total / CLOCK_TICKS


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


def start(server: Server, port: int, workers: int) -> tuple[subprocess.Popen, float]:
    env = {**os.environ, **server.env, "PORT": str(port), "HOST": "127.0.0.1",
           "WEB_CONCURRENCY": str(workers)}
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "--config", str(ROOT / "gunicorn.conf.py"),
         "--chdir", str(server.chdir), "--access-logfile", "/dev/null", server.target],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/health"
    while time.perf_counter() - started < 60:
        if process.poll() is not None:
            raise RuntimeError(f"{server.name} exited: {process.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return process, time.perf_counter() - started
        except OSError:
            time.sleep(0.01)
    process.kill()
    raise RuntimeError(f"{server.name} did not answer {url} within 60 s")


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def to_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def drive(port: int, body_file: Path, seconds: float, connections: int) -> dict[str, float]:
    """One wrk run; its figures and its own CPU time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s",
         str(Path(__file__).with_name("post.lua")), f"http://127.0.0.1:{port}/predict"],
        env={**os.environ, "BODY_FILE": str(body_file)}, capture_output=True, text=True,
        timeout=seconds + 60, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = done.stdout
    latency = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)$", out, re.MULTILINE))
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

    frame = complete_rows(bundle)
    y = (frame[bundle.schema.target] == bundle.classes[-1]).astype(int).to_numpy()
    dv = DictVectorizer(sparse=False)
    X = dv.fit_transform(records_from_frame(bundle, frame))
    fitted = bundle.pipeline.steps[-1][1]
    if bundle.metrics["chosen"] == "blend":
        fitted = fitted.members[-1][-1]  # its XGBoost member
    if hasattr(fitted, "get_booster"):
        model = XGBClassifier(**{**fitted.get_params(), "n_jobs": 1})
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
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("error: wrk is not installed (apt-get install wrk; `make bench` does)",
              file=sys.stderr)
        return 1
    bundle = ModelBundle.load(args.model)
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    single, batch = work / "single.json", work / "batch.json"
    records = records_from_frame(bundle, complete_rows(bundle).sample(BATCH, random_state=0))
    single.write_text(json.dumps(records[0]))
    batch.write_text(json.dumps(records))
    course_model = work / "course.bin"
    train_course_model(bundle, course_model)
    servers = [
        Server("tabserve", "predict:app", ROOT, {"MODEL_PATH": str(args.model.resolve())}),
        Server("Flask, constant answer", "constant_flask:app", APPS),
        Server("course app (DictVectorizer)", "course_app:app", APPS,
               {"COURSE_MODEL": str(course_model)}),
        Server("plain WSGI, stdlib json parse", "plain_wsgi:app", APPS),
    ]
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
                for body_name, body_file in (("single", single), ("batch", batch)):
                    for _ in range(20):  # warm up every worker
                        request = urllib.request.Request(
                            f"http://127.0.0.1:{port}/predict", data=body_file.read_bytes(),
                            headers={"Content-Type": "application/json"})
                        urllib.request.urlopen(request, timeout=30).read()
                    pids = [process.pid, *children(process.pid)]
                    cpu_before = cpu_seconds(pids)
                    figures = drive(port, body_file, args.seconds, args.connections)
                    figures["server_cpu"] = cpu_seconds(pids) - cpu_before
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


def render(args, bundle, servers, samples, startups, memory) -> str:
    def figure(server: str, body: str, key: str) -> float:
        runs = samples[(server, body)]
        if key in ("server_cpu_per_request", "wrk_cpu_per_request"):
            source = "server_cpu" if key.startswith("server") else "wrk_cpu"
            return median([r[source] / r["requests"] * 1e3 for r in runs])
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
        f"gunicorn.conf.py for every server: {args.workers} sync workers, 1 thread, preload, "
        f"access log to /dev/null. wrk -t1 -c{args.connections}, {args.seconds:g} s per run, "
        f"medians of {args.rounds} rounds. CPU per request: server processes / requests.",
        "",
        "| server | body | req/s | records/s | p50 ms | p90 ms | p99 ms | errors "
        "| server CPU ms/req | wrk CPU ms/req | RSS MB | PSS MB | startup s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
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
                f"| {rss:.0f} | {pss:.0f} | {median(startups[server.name]):.2f} |")
    ours, ceiling, course, plain = (s.name for s in servers)
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
        f"({cpu_ratio:.2f}× by server CPU per request); goal ≥ 0.80: {verdict(ratio >= 0.8)}.",
        f"- One record, p99 latency vs constant-answer Flask: **{p99:.2f}×**; goal ≤ 2: "
        f"{verdict(p99 <= 2)}.",
        f"- 1,000 records, records/s vs plain WSGI parsing with stdlib json: **{batch_ratio:.2f}×** "
        f"({batch_cpu:.2f}× by server CPU per request); goal ≥ 1: {verdict(batch_ratio >= 1)}.",
        f"- Startup to ready: **{startup:.2f} s**; goal < 2 s: {verdict(startup < 2)}.",
        f"- Against the course app: **{figure(ours, 'single', 'rps') / figure(course, 'single', 'rps'):.2f}×** "
        f"req/s with one record, **{figure(ours, 'batch', 'rps') / figure(course, 'batch', 'rps'):.2f}×** "
        f"with 1,000.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
