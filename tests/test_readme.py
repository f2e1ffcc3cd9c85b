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

from helpers import ROOT, answering, free_port, need_tool, process_fixture, wait_for

README = (ROOT / "README.md").read_text()
UV_PAGE = (ROOT / "docs" / "uv.md").read_text()
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


def _serve(clone: Path, command: str, port: int, env: dict | None = None):
    process = subprocess.Popen(["bash", "-c", command], cwd=clone, start_new_session=True,
                               env={**(env or os.environ), "PORT": str(port)},
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
                _same_answer_as_the_readme(command, port, clone)
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


def _same_answer_as_the_readme(command: str, port: int, clone: Path) -> None:
    command = command.replace("localhost:9696", f"127.0.0.1:{port}")
    done = subprocess.run(["bash", "-c", command + " --fail-with-body"], cwd=clone,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    answer, shown = json.loads(done.stdout), answer_shown(README)
    assert answer.keys() == shown.keys()
    for key, value in shown.items():
        assert answer[key] == (pytest.approx(value, abs=1e-9)
                               if isinstance(value, float | dict) else value), key


@process_fixture(scope="module")
def uv_clone(tmp_path_factory) -> Path:
    """Another fresh clone: uv's `.venv` is its own."""
    folder = tmp_path_factory.mktemp("uv") / "tabserve"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(folder)], check=True)
    return folder


@pytest.mark.slow
def test_the_uv_page_runs_as_written_in_a_fresh_clone(uv_clone):
    """docs/uv.md's commands, as a uv user types them: `uv sync --locked` installs what
    `make run` does from uv.lock, `uv run gunicorn` serves, and the answer is the README's."""
    uv = need_tool("uv", str(ROOT / ".venv-tools" / "bin" / "uv"))
    env = {**os.environ, "PATH": f"{Path(uv).parent}{os.pathsep}{os.environ['PATH']}",
           "UV_PYTHON_DOWNLOADS": "never"}  # the machine's Python 3.11, as the page says
    env = {k: v for k, v in env.items() if k != "VIRTUAL_ENV"}
    commands = shell_blocks(UV_PAGE)
    assert commands[:2] == ["uv sync --locked", "uv run gunicorn predict:app"]
    port = free_port()
    server = None
    try:
        for command in commands:
            if command.startswith("uv run gunicorn"):
                server = _serve(uv_clone, command, port, env)
            elif command.startswith("curl"):
                _same_answer_as_the_readme(command, port, uv_clone)
            else:
                done = subprocess.run(["bash", "-c", command], cwd=uv_clone, env=env,
                                      capture_output=True, text=True, timeout=900)
                assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
    finally:
        if server is not None:
            _stop(server)
    # what it installed is what `make run` installs: no test tool, the tools beside serving
    python = uv_clone / ".venv" / "bin" / "python"
    probe = "import importlib.util as u; print([u.find_spec(m) is not None for m in " \
            "('pytest', 'pyarrow', 'matplotlib', 'gunicorn')])"
    done = subprocess.run([str(python), "-c", probe], env=env, capture_output=True, text=True)
    assert done.stdout.strip() == "[False, True, True, True]", done.stderr[-2000:]


@pytest.mark.slow
def test_uv_lock_is_up_to_date_with_pyproject():
    """`uv lock --check`: uv.lock was made from pyproject.toml as it is (uv asks the index)."""
    uv = need_tool("uv", str(ROOT / ".venv-tools" / "bin" / "uv"))
    done = subprocess.run([uv, "lock", "--check"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_uv_pins_exactly_what_pipenv_pins():
    """pyproject.toml is what scripts/uv_pins.py writes from Pipfile.lock, and uv.lock holds
    every package of Pipfile.lock at its version (names compared as PEP 503 normalises them)."""
    import importlib.util
    import tomllib

    spec = importlib.util.spec_from_file_location("uv_pins", ROOT / "scripts" / "uv_pins.py")
    uv_pins = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(uv_pins)
    lock = json.loads((ROOT / "Pipfile.lock").read_text())
    assert (ROOT / "pyproject.toml").read_text() == uv_pins.pyproject(lock), \
        "pyproject.toml differs from Pipfile.lock: run `make uv-lock`"

    def normal(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    pinned = {normal(name): entry["version"].removeprefix("==")
              for category in ("default", "tools", "develop", "lambda")
              for name, entry in lock[category].items()}
    locked = {normal(package["name"]): package["version"]
              for package in tomllib.loads((ROOT / "uv.lock").read_text())["package"]}
    assert {name: (version, locked.get(name)) for name, version in pinned.items()
            if locked.get(name) != version} == {}
    # the Dockerfile's `LOCK=uv` build exports with the uv `make install` installs
    uv_version = re.search(r"^UV_VERSION := (\S+)", (ROOT / "Makefile").read_text(), re.M)[1]
    assert f"uv=={uv_version}" in (ROOT / "Dockerfile").read_text()
