"""The Lambda image: its size, cold start and warm latency, through the Runtime API stand-in.

    make bench-lambda          # or: .venv/bin/python bench/lambda.py [--cold 5 --warm 200]

Needs a Docker engine (../shared/docker/docker-sandbox.sh up). Builds `--target lambda`, then:
- cold start, `--cold` times: a fresh container from `docker run` to the runtime's first
  `GET /invocation/next` (its init is done: the handler module imported, the model loaded),
  and to the answer of a first one-record event;
- the init alone, as Lambda's "Init Duration" counts it: importing lambda_function in the
  image (interpreter start excluded), and which imports take the time (`-X importtime`);
- warm, in one container: `--warm` one-record events and `--warm // 10` events of 1,000
  records, each timed from the event handed over to the answer posted (the handler, the
  adapter and the Runtime API's HTTP), beside the app's own time from the access log; and
  the runtime's peak resident memory after them.
Medians, with p90; appended to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from lambda_runtime_api import RuntimeApi  # noqa: E402

from tabserve.model.bundle import ModelBundle  # noqa: E402
from tabserve.tables import load_csv  # noqa: E402

TAG = "tabserve-bench:lambda"
# packages whose first import counts, in the importtime report (each includes what it imports)
PACKAGES = ("sklearn", "scipy.stats", "pandas", "scipy.sparse", "joblib", "xgboost", "numpy",
            "flask", "prometheus_client", "awslambdaric", "apig_wsgi", "msgspec")


def docker(*args: str, timeout: float = 900) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        sys.exit(f"docker {args[0]} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def http_event(body: object) -> dict:
    """A Function URL's event (payload 2.0) for POST /predict."""
    return {"version": "2.0", "routeKey": "$default", "rawPath": "/predict",
            "rawQueryString": "", "headers": {"content-type": "application/json"},
            "requestContext": {"http": {"method": "POST", "path": "/predict",
                                        "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7",
                                        "userAgent": "bench"},
                               "requestId": str(uuid.uuid4())},
            "body": json.dumps(body), "isBase64Encoded": False}


def start(api: RuntimeApi) -> str:
    name = f"tabserve-bench-{uuid.uuid4().hex[:8]}"
    docker("run", "-d", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp",
           "-e", f"AWS_LAMBDA_RUNTIME_API={api.address}", TAG)
    return name


def median_p90(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[int(0.9 * (len(ordered) - 1))]


def cold_starts(runs: int, record: dict) -> list[tuple[float, float]]:
    """(to init done, to first answer) in seconds, from `docker run`."""
    found = []
    for _ in range(runs):
        with RuntimeApi() as api:
            started = time.perf_counter()
            name = start(api)
            try:
                if not api.init_done.wait(120):
                    sys.exit(f"the runtime never asked for an event:\n{docker('logs', name)}")
                invocation = api.invoke(http_event(record))
                found.append((api.first_next_at - started, invocation.answered_at - started))
            finally:
                docker("rm", "-f", name)
    return found


def init_seconds(runs: int) -> list[float]:
    probe = ("import time; t = time.perf_counter(); import lambda_function; "
             "print(time.perf_counter() - t)")
    return [float(docker("run", "--rm", "--read-only", "--entrypoint", "python", TAG, "-c",
                         probe).splitlines()[-1]) for _ in range(runs)]


def import_breakdown() -> dict[str, float]:
    """Seconds of each package's first import (cumulative: with what it imports itself)."""
    done = subprocess.run(["docker", "run", "--rm", "--read-only", "--entrypoint", "python",
                           TAG, "-X", "importtime", "-c", "import lambda_function"],
                          capture_output=True, text=True, timeout=300)
    seconds = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|")
        name = name.strip()
        if name in PACKAGES or name in ("lambda_function", "tabserve.model.bundle"):
            seconds.setdefault(name, int(cumulative) / 1e6)
    return seconds


def warm(runs: int, record: dict, batch: list[dict]) -> dict:
    """Per body: round trips (s) through the Runtime API, and the app's own ms (access log);
    and the runtime's peak RSS in MB."""
    out = {}
    with RuntimeApi() as api:
        name = start(api)
        try:
            api.init_done.wait(120)
            for label, body, count in (("1 record", record, runs),
                                       ("1,000 records", batch, max(runs // 10, 5))):
                for _ in range(5):  # the first answers warm caches and the allocator
                    api.invoke(http_event(body))
                timed = [api.invoke(http_event(body)) for _ in range(count)]
                ids = {i.request_id for i in timed}
                app_ms = [line["duration_ms"] for line in map(json.loads, (
                    raw for raw in docker("logs", name).splitlines() if raw.startswith("{")))
                    if line.get("request_id") in ids]
                out[label] = ([i.seconds for i in timed], app_ms)
            # the runtime is PID 1; its peak resident memory, after the batches
            status = docker("exec", name, "cat", "/proc/1/status")
            out["peak_rss_mb"] = int(next(line.split()[1] for line in status.splitlines()
                                          if line.startswith("VmHWM:"))) / 1024
        finally:
            docker("rm", "-f", name)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cold", type=int, default=5)
    parser.add_argument("--warm", type=int, default=200)
    parser.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = parser.parse_args()

    print("building the Lambda image (docker build --target lambda)", flush=True)
    docker("build", "-q", "--target", "lambda", "-t", TAG, str(ROOT))
    size_mb = int(docker("image", "inspect", "--format", "{{.Size}}", TAG)) / 1e6
    packages_mb = int(docker("run", "--rm", "--entrypoint", "du", TAG, "-sk",
                             "/usr/local/lib/python3.11/site-packages").split()[0]) / 1024

    bundle = ModelBundle.load(ROOT / "model.bin")
    record = dict(bundle.example)
    rows = load_csv(ROOT / "data" / "telco_churn.csv")
    names = [f.name for f in bundle.schema.fields]
    pool = json.loads(rows[names].to_json(orient="records"))
    batch = [pool[i % len(pool)] for i in range(1000)]

    print(f"cold starts ({args.cold})", flush=True)
    colds = cold_starts(args.cold, record)
    inits = init_seconds(args.cold)
    imports = import_breakdown()
    print(f"warm invocations ({args.warm} of one record, {max(args.warm // 10, 5)} of 1,000)",
          flush=True)
    warms = warm(args.warm, record, batch)

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    to_init, to_answer = zip(*colds)
    lines = [
        f"## {stamp}: the Lambda image, model {bundle.version}",
        "",
        f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, "
        f"Linux {platform.release()}; image `docker build --target lambda` {size_mb:.0f} MB "
        f"({packages_mb:.0f} MB of Python packages); driven through "
        "tests/lambda_runtime_api.py (the Runtime API stand-in) on loopback, container "
        "read-only but /tmp.",
        "",
        "| measure | median | p90 | runs |",
        "|---|---:|---:|---:|",
        f"| cold: `docker run` → init done (first GET /next) | {median_p90(to_init)[0]:.2f} s | "
        f"{median_p90(to_init)[1]:.2f} s | {len(colds)} |",
        f"| cold: `docker run` → first answer (one record) | {median_p90(to_answer)[0]:.2f} s | "
        f"{median_p90(to_answer)[1]:.2f} s | {len(colds)} |",
        f"| init alone: import lambda_function (imports, model load) | "
        f"{median_p90(inits)[0]:.2f} s | {median_p90(inits)[1]:.2f} s | {len(inits)} |",
    ]
    peak_rss_mb = warms.pop("peak_rss_mb")
    for label, (seconds, app_ms) in warms.items():
        mid, p90 = median_p90(seconds)
        lines.append(f"| warm, {label}: event → answer posted | {mid * 1000:.2f} ms | "
                     f"{p90 * 1000:.2f} ms | {len(seconds)} |")
        if app_ms:
            mid, p90 = median_p90(app_ms)
            lines.append(f"| warm, {label}: the app's own time (access log) | {mid:.2f} ms | "
                         f"{p90:.2f} ms | {len(app_ms)} |")
    lines += ["", f"Peak resident memory of the runtime after the warm runs: {peak_rss_mb:.0f} MB.",
              "", "Imports during the init (cumulative seconds of each package's first import, "
                  "which includes what it imports): " + ", ".join(
                      f"{name} {seconds:.2f}" for name, seconds in
                      sorted(imports.items(), key=lambda item: -item[1])) + ".", ""]
    report = "\n".join(lines)
    print(report)
    with args.results.open("a") as out:
        out.write("\n" + report + "\n")
    docker("rmi", "-f", TAG)
    return 0


if __name__ == "__main__":
    sys.exit(main())
