"""The README's shell blocks, run as written in a fresh clone after the README's own install
(`make run`), so the front door cannot drift from the code. Only the port and the files a
user would bring (`my.csv`, `customers.csv`, `new.csv`) are substituted; `make test` is what
runs this test, so it is the one command not run again."""

import json
import os
import re
import shlex
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from helpers import ROOT, answering, free_port, process_fixture, wait_for

README = (ROOT / "README.md").read_text()
SERVERS = ("make run", ".venv/bin/gunicorn")  # commands that serve until stopped


def shell_blocks(text: str) -> list[str]:
    """Every command of the README's ```bash blocks: a quoted string may span lines; a
    comment after a command is left out."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        pending = ""
        for line in block.replace("\\\n", " ").splitlines():
            pending = f"{pending}\n{line}" if pending else line.split("  #")[0].strip()
            try:
                shlex.split(pending)
            except ValueError:  # an open quote: the command goes on
                continue
            if pending:
                commands.append(pending)
            pending = ""
    return commands


def answer_shown(text: str) -> dict:
    return json.loads(re.search(r"```json\n(.*?)```", text, re.S)[1])


@process_fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A fresh clone of the committed HEAD, and the files a user would bring."""
    folder = tmp_path_factory.mktemp("readme") / "tabserve"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(folder)], check=True)
    telco = pd.read_csv(ROOT / "data" / "telco_churn.csv", dtype=str, keep_default_na=False)
    telco.rename(columns={"churn": "outcome"}).head(1500).to_csv(folder / "my.csv", index=False)
    telco.drop(columns="churn").to_csv(folder / "customers.csv", index=False)
    telco.tail(2000).to_csv(folder / "new.csv", index=False)
    return folder


def _serve(clone: Path, command: str, port: int):
    process = subprocess.Popen(["bash", "-c", command], cwd=clone, start_new_session=True,
                               env={**os.environ, "PORT": str(port)},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    ready = answering(f"http://127.0.0.1:{port}/ready", process,
                      lambda: f"{command!r} exited: {process.stdout.read()[-3000:]}")
    wait_for(ready, 900, f"{command!r} to serve")  # a fresh `make run` installs first
    return process


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


@pytest.mark.slow
def test_the_readme_runs_as_written_in_a_fresh_clone(clone):
    commands = shell_blocks(README)
    assert "make run" in commands and "make test" in commands
    port = free_port()
    servers: list[subprocess.Popen] = []
    try:
        for command in commands:
            if command == "make test":
                continue
            if command.startswith(SERVERS) or " .venv/bin/gunicorn " in f" {command} ":
                for process in servers:  # the next server takes the same port
                    _stop(process)
                servers = [_serve(clone, command, port)]
                continue
            if command.startswith("curl"):
                command = command.replace("localhost:9696", f"127.0.0.1:{port}")
                done = subprocess.run(["bash", "-c", command + " --fail-with-body"], cwd=clone,
                                      capture_output=True, text=True, timeout=60)
                assert done.returncode == 0, done.stdout + done.stderr
                answer, shown = json.loads(done.stdout), answer_shown(README)
                assert answer.keys() == shown.keys()
                for key, value in shown.items():
                    assert answer[key] == (pytest.approx(value, abs=1e-9)
                                           if isinstance(value, float | dict) else value), key
                continue
            done = subprocess.run(["bash", "-c", command], cwd=clone, capture_output=True,
                                  text=True, timeout=900)
            assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
            assert "Traceback" not in done.stderr, f"{command}\n{done.stderr[-3000:]}"
    finally:
        for process in servers:
            _stop(process)
    # what the commands were asked to write is there, and whole
    assert (clone / "my.bin").exists() and (clone / "my.reports" / "reference_profile.png").exists()
    assert len(pd.read_csv(clone / "scores.csv")) == 7043
    assert (clone / "drift-report" / "drift.md").exists()
