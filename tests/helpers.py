"""What several test modules share: paths, data sets, a quick bundle, a real gunicorn, and
waiting for an event with a deadline (never sleeping and hoping)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import msgspec
import numpy as np
import pandas as pd
import pytest
import requests

from tabserve.model.bundle import ModelBundle
from tabserve.tables import file_sha256, load_csv
from tabserve.training.trainer import train

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
GUNICORN = str(Path(sys.executable).parent / "gunicorn")
T = TypeVar("T")


def wait_for(check: Callable[[], T], seconds: float, what: str, every: float = 0.1) -> T:
    """Poll `check` until it returns something truthy (returned); AssertionError naming
    `what` after `seconds` (a generous deadline: the event, not the time, is what is tested)."""
    deadline = time.monotonic() + seconds
    while True:
        outcome = check()
        if outcome:
            return outcome
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds} s for {what}")
        time.sleep(every)


def answering(url: str, process: subprocess.Popen, exited: Callable[[], str]
              ) -> Callable[[], bool]:
    """For `wait_for`: whether `url` answers 2xx yet; an AssertionError saying `exited()`
    as soon as `process` has ended (waiting on would only reach the deadline)."""
    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(exited())
        try:
            return requests.get(url, timeout=1).ok
        except (requests.ConnectionError, requests.Timeout):  # not answering yet
            return False
    return answers


def loan_frame(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """A binary problem that is not churn: target `approved` (`yes`/`no`), with every kind of
    column, missing values, stray whitespace, an ID and a constant column."""
    rng = np.random.default_rng(seed)
    income = rng.normal(50, 15, rows).round(1)
    debt = rng.uniform(0, 40, rows).round(2)
    region = rng.choice(["north", "south", "east", "west"], rows)
    owner = rng.choice(["Yes", "No"], rows)
    score = income / 10 - debt / 8 + (region == "south") * 1.0 + (owner == "Yes") * 0.8
    approved = np.where(score + rng.normal(0, 1, rows) > np.median(score), "yes", "no")
    frame = pd.DataFrame({
        "application_id": np.arange(1000, 1000 + rows),
        "income": income.astype(object),
        "debt": debt,
        "region": [f" {r} " if i % 7 == 0 else r for i, r in enumerate(region)],
        "home_owner": owner,
        "country": "NL",
        "approved": approved,
    })
    frame.loc[rng.choice(rows, rows // 16, replace=False), "income"] = "NA"
    frame.loc[rng.choice(rows, rows // 40, replace=False), "region"] = ""
    return frame


def flower_frame(rows: int = 300, seed: int = 0) -> pd.DataFrame:
    """A multiclass problem: target `species` with three classes, and an ordered text field."""
    rng = np.random.default_rng(seed)
    species = rng.choice(["setosa", "versicolor", "virginica"], rows)
    centre = pd.Series(species).map({"setosa": 1.0, "versicolor": 2.5, "virginica": 4.0})
    return pd.DataFrame({
        "petal_length": (centre + rng.normal(0, 0.6, rows)).round(2),
        "petal_width": (centre / 3 + rng.normal(0, 0.3, rows)).round(2),
        "colour": np.where(species == "setosa", rng.choice(["blue", "white"], rows),
                           rng.choice(["purple", "white", "blue"], rows)),
        # ordered levels, found from their words: a rank column joins the one-hot ones
        "size": np.where(rng.random(rows) < 0.7, pd.Series(species).map(
            {"setosa": "Small", "versicolor": "Medium", "virginica": "Large"}),
            rng.choice(["Small", "Medium", "Large"], rows)),
        "species": species,
    })


def fit_bundle(csv: Path, target: str, **options) -> ModelBundle:
    """A bundle from the first trials of the search (each family's defaults): quick and exact."""
    options = {"max_trials": 3, **options}
    result = train(load_csv(csv), target, seed=1, folds=3, **options)
    return result.bundle.stamp(data_path=csv, data_sha256=file_sha256(csv), seed=1)


def records_from_csv(frame: pd.DataFrame, schema) -> list[dict]:
    """Training rows as a JSON client would send them."""
    records = []
    for row in frame[schema.names].to_dict("records"):
        record = {}
        for f in schema.fields:
            value = row[f.name]
            if not isinstance(value, str):
                record[f.name] = None
            elif f.kind.value == "numeric":
                record[f.name] = float(value)
            else:
                record[f.name] = value
        records.append(record)
    return msgspec.json.decode(msgspec.json.encode(records))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# the fixtures declared with `process_fixture`: a test that uses one, itself or through
# another fixture, is outside the unit tier (conftest marks the tiers from this)
PROCESS_FIXTURES: set[str] = set()


def process_fixture(*args, **kwargs):
    """`pytest.fixture` for a fixture that starts a process (a server, a container, Spark, a
    command): the fixture says so itself, where it is written."""
    def declare(function):
        PROCESS_FIXTURES.add(kwargs.get("name") or function.__name__)
        return pytest.fixture(*args, **kwargs)(function)
    return declare


STARTED: list[subprocess.Popen] = []  # every gunicorn the tests started (conftest stops them)


def start_gunicorn(model_path: Path, **env: str) -> tuple[subprocess.Popen, str]:
    """gunicorn on a free port; its stdout (the access log) and stderr go to files, named by
    the process's `log_path` and `error_path` attributes (a pipe left unread would fill)."""
    port = free_port()
    logs = Path(tempfile.mkdtemp(prefix="gunicorn-"))
    process = subprocess.Popen(
        [GUNICORN, "predict:app"], cwd=ROOT,
        env={**os.environ, "MODEL_PATH": str(model_path), "HOST": "127.0.0.1",
             "PORT": str(port), "WEB_CONCURRENCY": "2", **env},
        stdout=(logs / "access.log").open("w"), stderr=(logs / "error.log").open("w"))
    process.log_path, process.error_path = logs / "access.log", logs / "error.log"
    STARTED.append(process)
    url = f"http://127.0.0.1:{port}"

    healthy = answering(f"{url}/health", process,
                        lambda: f"gunicorn exited: {process.error_path.read_text()}")
    count = int({"WEB_CONCURRENCY": "2", **env}["WEB_CONCURRENCY"])
    try:
        wait_for(healthy, 60, "gunicorn to answer /health")
        # one worker answers /health while the master may still be forking the others
        wait_for(lambda: len(workers(process.pid)) == count, 60, f"{count} workers")
    except AssertionError:
        process.kill()
        raise
    return process, url


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()


def workers(master: int) -> list[int]:
    """The pids of a gunicorn master's workers."""
    return [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def alter_keeping_checksum(path: Path, old: bytes, new: bytes) -> None:
    """Replace `old` by `new` in a bundle's `bundle.json` and write the archive and the
    checksum that fit, keeping any signature: what someone who can write the file, but has no
    key, can do."""
    rewrite_payload(path, lambda members: {
        **members, "bundle.json": members["bundle.json"].replace(old, new, 1)})


def rewrite_payload(path: Path, change, header_change=lambda fields: fields) -> None:
    """Rewrite a bundle's archive members (`change`: members → members, `bundle.json` first)
    and header fields (after the format), with the checksum that fits."""
    import io
    import zipfile

    from tabserve.model import archive
    from tabserve.model.bundle import MAGIC

    header, _, payload = path.read_bytes().partition(b"\n")
    with zipfile.ZipFile(io.BytesIO(payload)) as zipped:
        members = {info.filename: zipped.read(info) for info in zipped.infolist()}
    members = change(members)
    payload = archive.write(members.pop("bundle.json"), members)
    version, *fields = header[len(MAGIC):].split(b" ")
    fields = [b"sha256=" + hashlib.sha256(payload).hexdigest().encode()
              if f.startswith(b"sha256=") else f for f in header_change(fields)]
    path.write_bytes(MAGIC + b" ".join([version, *fields]) + b"\n" + payload)



def docker(*args: str, timeout: float = 600, check: bool = True) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def logs(container: str) -> str:
    done = subprocess.run(["docker", "logs", container], capture_output=True, text=True,
                          timeout=30)
    return done.stdout + done.stderr  # gunicorn logs to stderr


# what the tests name their containers and images: a run removes what it leaves (conftest)
TEST_CONTAINERS = ("tabserve-test-", "tabserve-lambda-")
TEST_IMAGES = "tabserve-test"


def docker_engine_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def build(context: Path, *args: str) -> str:
    """Build the image in `context` (with `args`, e.g. a --target); its tag."""
    tag = f"tabserve-test:{uuid.uuid4().hex[:8]}"
    docker("build", "-q", "-t", tag, *args, str(context))
    return tag


# the user the image runs as (its Dockerfile's `useradd --uid`), which the manifests must match
IMAGE_UID = int(re.search(r"--uid (\d+)", (ROOT / "Dockerfile").read_text())[1])


# The system tools some tests need beyond Python, and how to get each: `make test` installs
# the missing ones where it can (.ci/system-packages); elsewhere those tests skip alike, with
# the line to run. CI sets TABSERVE_TESTS_NEED_EVERY_TOOL so that none can skip there.
SYSTEM_TOOLS = {
    "nginx": "apt-get install nginx-light",
    "chromium": "apt-get install chromium chromium-driver",
    "wrk": "apt-get install wrk",
    "docker-compose": "apt-get install docker-compose",
    "prometheus": "apt-get install prometheus",
    "promtool": "apt-get install prometheus",
    "kubectl": "install kubectl (it brings kustomize): https://kubernetes.io/docs/tasks/tools/",
    "java": "apt-get install openjdk-17-jre-headless (for a local Spark)",
    "docker": "a Docker engine: ../shared/docker/docker-sandbox.sh up (.ci/run starts one)",
    "modeldata": "apt-get install r-cran-modeldata (R writes its tables to CSV)",
    "uv": "make install (it puts uv in .venv-tools/)",
}


def need_tool(name: str, path: str | None = None, present: bool | None = None) -> str | None:
    """The path of a system tool, found on the PATH (or at `path`; or `present` says whether
    it is there); without it the test skips, saying the line to run, or fails where every
    tool is required (CI)."""
    import pytest

    found = path if path and os.path.exists(path) else shutil.which(name)
    if present is False or present is None and found is None:
        message = f"{name} is not installed: {SYSTEM_TOOLS[name]} (make test does, as root)"
        if os.environ.get("TABSERVE_TESTS_NEED_EVERY_TOOL"):
            pytest.fail(message)
        pytest.skip(message)
    return found


COURSE_CATEGORICAL = ["gender", "seniorcitizen", "partner", "dependents", "phoneservice",
                      "multiplelines", "internetservice", "onlinesecurity", "onlinebackup",
                      "deviceprotection", "techsupport", "streamingtv", "streamingmovies",
                      "contract", "paperlessbilling", "paymentmethod"]
COURSE_NUMERICAL = ["tenure", "monthlycharges", "totalcharges"]


def course_frame() -> pd.DataFrame:
    """Our Telco rows (in the ML Zoomcamp course's layout) as its notebook prepares them for
    training: missing total charges as 0, and churn as 0/1."""
    frame = pd.read_csv(ROOT / "data" / "telco_churn.csv")
    frame["totalcharges"] = frame["totalcharges"].fillna(0)
    frame["churn"] = (frame["churn"] == "yes").astype(int)
    return frame


# the Kaggle file's names for the course's (the course lower-cases them)
KAGGLE_NAMES = {name.lower(): name for name in [
    "SeniorCitizen", "Partner", "Dependents", "PhoneService", "MultipleLines", "InternetService",
    "OnlineSecurity", "OnlineBackup", "DeviceProtection", "TechSupport", "StreamingTV",
    "StreamingMovies", "Contract", "PaperlessBilling", "PaymentMethod", "MonthlyCharges",
    "TotalCharges", "Churn"]}


def kaggle_frame() -> pd.DataFrame:
    """Our Telco rows as the Kaggle file "Telco Customer Churn" spells them, the file a course
    student downloads: a `customerID`, CamelCase names, levels as written (`Month-to-month`,
    `Fiber optic`, `DSL`, `Yes`), a blank `TotalCharges` as " ": the course's preparation
    (lower case, `_` for spaces) undone. As text, as a CSV holds it."""
    frame = pd.read_csv(ROOT / "data" / "telco_churn.csv", dtype=str, keep_default_na=False)

    def as_written(level: str) -> str:
        if level == "dsl":
            return "DSL"
        words = level.replace("_", " ")
        return words[:1].upper() + words[1:]

    for name in [*COURSE_CATEGORICAL, "churn"]:
        if name != "seniorcitizen":
            frame[name] = frame[name].map(as_written)
    frame["totalcharges"] = frame["totalcharges"].replace("", " ")
    frame.insert(0, "customerID", [f"{i:04d}-KAGGL" for i in range(len(frame))])
    return frame.rename(columns=KAGGLE_NAMES)


# The ML Zoomcamp course's client: the original column names and lowercase values
COURSE_CUSTOMER = {
    "gender": "female", "seniorcitizen": 0, "partner": "yes", "dependents": "no",
    "phoneservice": "no", "multiplelines": "no_phone_service", "internetservice": "dsl",
    "onlinesecurity": "no", "onlinebackup": "yes", "deviceprotection": "no",
    "techsupport": "no", "streamingtv": "no", "streamingmovies": "no",
    "contract": "month-to-month", "paperlessbilling": "yes",
    "paymentmethod": "electronic_check", "tenure": 1, "monthlycharges": 29.85,
    "totalcharges": 29.85}


# --- an ONNX graph as skl2onnx users write one (tests/test_onnx.py, the ONNX image) ----------

ONNX_SAMPLE_ROWS = 3000  # the rest of the course's rows are the ones answers are compared on
ONNX_NUMBERS = ["seniorcitizen", *COURSE_NUMERICAL]
ONNX_LEVELS = [name for name in COURSE_CATEGORICAL if name not in ONNX_NUMBERS]


def as_float32(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as skl2onnx users convert it: numbers as float32 (float64 and float32 inputs
    side by side make a graph onnxruntime refuses)."""
    return frame.astype({name: np.float32 for name in ONNX_NUMBERS if name in frame.columns})


def one_input_per_field(frame):
    """A Pipeline of a ColumnTransformer (OneHotEncoder, imputed and scaled numbers) and a
    LogisticRegression, converted from the frame: one input per field, ZipMap's maps out."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from skl2onnx import to_onnx

    columns = ONNX_LEVELS + ONNX_NUMBERS
    train = as_float32(frame[columns].iloc[:ONNX_SAMPLE_ROWS])
    pipeline = make_pipeline(
        ColumnTransformer([
            ("levels", OneHotEncoder(handle_unknown="ignore"), ONNX_LEVELS),
            ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), ONNX_NUMBERS)]),
        LogisticRegression(max_iter=3000)).fit(train, frame.churn.iloc[:ONNX_SAMPLE_ROWS])
    return to_onnx(pipeline, train[:1]), columns + ["churn"]


# --- the kinds users bring, imported (every door's test of them) ----------------------------

DOOR_NUMBERS = ["seniorcitizen", "tenure", "monthlycharges", "totalcharges"]


def _lightgbm_on_numbers(frame: pd.DataFrame):
    from lightgbm import LGBMClassifier
    return LGBMClassifier(n_estimators=30, n_jobs=1, verbose=-1, random_state=0).fit(
        frame[DOOR_NUMBERS], frame.contract), DOOR_NUMBERS + ["contract"]


def _catboost_on_numbers(frame: pd.DataFrame):
    from catboost import CatBoostClassifier
    return CatBoostClassifier(iterations=30, thread_count=1, verbose=0, random_seed=0,
                              allow_writing_files=False).fit(
        frame[DOOR_NUMBERS], frame.churn), DOOR_NUMBERS + ["churn"]


BROUGHT_KINDS = {"LightGBM": (_lightgbm_on_numbers, "model.pkl"),
                 "CatBoost": (_catboost_on_numbers, "model.pkl"),
                 "ONNX": (one_input_per_field, "model.onnx")}


def brought_bundle(kind: str, folder: Path) -> tuple[Path, pd.DataFrame]:
    """A kind users bring (multiclass LightGBM, binary CatBoost, an ONNX Pipeline), saved as
    its user saves it and imported as import_model.py does; and rows it has not seen, as a
    CSV holds them (`held_out.csv` beside the bundle, read as text)."""
    import pickle

    from tabserve.tables import load_csv
    from tabserve.training.importing import import_model

    frame = course_frame()
    make, name = BROUGHT_KINDS[kind]
    model, columns = make(frame.iloc[:ONNX_SAMPLE_ROWS])
    (folder / name).write_bytes(model.SerializeToString() if name.endswith(".onnx")
                                else pickle.dumps(model))
    frame[columns].iloc[:ONNX_SAMPLE_ROWS].to_csv(folder / "sample.csv", index=False)
    imported = import_model(folder / name, load_csv(folder / "sample.csv"), columns[-1])
    imported.bundle.save(folder / "model.bin")
    frame[columns].iloc[ONNX_SAMPLE_ROWS:ONNX_SAMPLE_ROWS + 200].to_csv(
        folder / "held_out.csv", index=False)
    return folder / "model.bin", load_csv(folder / "held_out.csv")


def chromium(tmp_path: Path, width: int = 1000, height: int = 1400):
    """Headless Chromium through Selenium, or a skip saying how to get it."""
    chromium, driver = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
    need_tool("chromium", str(chromium))
    need_tool("chromium", str(driver))
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking", "--disable-sync",
                 "--disable-component-update", f"--window-size={width},{height}",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(driver)), options=options)


@contextmanager
def served_in_chromium(tmp_path: Path, model: Path = ROOT / "model.bin", **env: str):
    """The real gunicorn serving `model` with `env`, and headless Chromium beside it: (the
    browser, the service's URL); both stopped after, the server cleanly."""
    process, url = start_gunicorn(model, **env)
    try:
        browser = chromium(tmp_path)
        try:
            yield browser, url
        finally:
            browser.quit()
    finally:
        assert stop(process) == 0


def enter_api_key(browser, key: str) -> None:
    """Type `key` into a page's key row (/docs and the model's page share it) and use it."""
    from selenium.webdriver.common.by import By

    field = browser.find_element(By.ID, "api-key")
    field.clear()
    field.send_keys(key)
    browser.find_element(By.ID, "use-key").click()


# where the browser tests keep their screenshots: CI keeps the folder as the run's artefacts
SCREENSHOTS = Path(os.environ.get("TABSERVE_SCREENSHOTS", ROOT / "artifacts" / "screenshots"))


def screenshot(browser, name: str) -> Path:
    """The whole page as `name`.png in `SCREENSHOTS` (its full height, not just the window)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    height = browser.execute_script("return document.documentElement.scrollHeight")
    width = browser.get_window_size()["width"]
    browser.set_window_size(width, max(height + 120, 600))
    browser.save_screenshot(str(path))
    return path
