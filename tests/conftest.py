"""Fixtures layered as CSV → bundle → app → client, and a real gunicorn; the CSVs are written
by the tests (helpers in `helpers.py`)."""

import os
import shutil

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from helpers import (ROOT, STARTED, TEST_CONTAINERS, TEST_IMAGES,  # noqa: E402
                     docker, docker_engine_available, fit_bundle, flower_frame, loan_frame,
                     need_tool, start_gunicorn, stop)
from tabserve.model.bundle import ModelBundle  # noqa: E402
from tabserve.web.app import create_app  # noqa: E402
from tabserve.web.config import Settings  # noqa: E402


@pytest.fixture(scope="session")
def loan_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "loans.csv"
    loan_frame().to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def flower_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "flowers.csv"
    flower_frame().to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def loan_bundle(loan_csv) -> ModelBundle:
    return fit_bundle(loan_csv, "approved")


@pytest.fixture(scope="session")
def flower_bundle(flower_csv) -> ModelBundle:
    return fit_bundle(flower_csv, "species")


@pytest.fixture(scope="session")
def telco_bundle() -> ModelBundle:
    """The committed default model."""
    return ModelBundle.load(ROOT / "model.bin")


@pytest.fixture(scope="session")
def telco_record(telco_bundle) -> dict:
    return dict(telco_bundle.example)


@pytest.fixture()
def client(telco_bundle):
    return create_app(telco_bundle, Settings(max_batch_records=50, max_body_bytes=200_000)
                      ).test_client()


@pytest.fixture()
def loan_client(loan_bundle):
    return create_app(loan_bundle, Settings()).test_client()


@pytest.fixture()
def flower_client(flower_bundle):
    return create_app(flower_bundle, Settings()).test_client()


@pytest.fixture(scope="session")
def docker_engine():
    need_tool("docker", present=docker_engine_available())


@pytest.fixture(scope="module")
def telco_process():
    """The real gunicorn serving the committed model."""
    process, url = start_gunicorn(ROOT / "model.bin")
    yield process, url
    assert stop(process) == 0


@pytest.fixture(scope="module")
def telco_server(telco_process):
    return telco_process[1]


@pytest.fixture(scope="session", autouse=True)
def nothing_left_running():
    """Whatever a test leaves when it fails or skips midway (a gunicorn master, a replica of a
    rolling update, an image) is stopped and removed at the end of the run, not left behind."""
    yield
    for process in STARTED:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    if shutil.which("docker") and docker_engine_available():
        names = docker("ps", "-a", "--format", "{{.Names}}", check=False).split()
        leftover = [name for name in names if name.startswith(TEST_CONTAINERS)]
        if leftover:
            docker("rm", "-f", *leftover, check=False)
        images = docker("images", "-q", TEST_IMAGES, check=False).split()
        if images:
            docker("rmi", "-f", *set(images), check=False)


def pytest_collection_finish(session):
    """Collecting the tests must not set up a server's environment in this process: the
    servers the tests start would inherit it (a shared metrics directory, counts mixed up)."""
    leaked = {"TABSERVE_METRICS_STARTED", "PROMETHEUS_MULTIPROC_DIR"} & set(os.environ)
    assert not leaked, f"set while collecting the tests: {sorted(leaked)}"

