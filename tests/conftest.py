"""Fixtures layered as CSV → bundle → app → client, and a real gunicorn; the CSVs are written
by the tests (helpers in `helpers.py`)."""

import os
import shutil
import sys
import _posixsubprocess
import subprocess

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from helpers import (PROCESS_FIXTURES, ROOT, STARTED, TEST_CONTAINERS, TEST_IMAGES,  # noqa: E402
                     docker, docker_engine_available, fit_bundle, flower_frame, loan_frame,
                     need_tool, process_fixture, start_gunicorn, stop)
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


@process_fixture(scope="session")
def docker_engine():
    need_tool("docker", present=docker_engine_available())


@process_fixture(scope="module")
def telco_process():
    """The real gunicorn serving the committed model."""
    process, url = start_gunicorn(ROOT / "model.bin")
    yield process, url
    assert stop(process) == 0


@process_fixture(scope="module")
def telco_server(telco_process):
    return telco_process[1]


@process_fixture(scope="session")
def spark():
    """One local Spark (`local[2]`, Java 17) for every test that needs one: its JVM takes
    seconds to start."""
    pyspark = pytest.importorskip("pyspark")
    need_tool("java")
    from pyspark.sql import SparkSession

    # the executors' Python: this one, with the project's packages (in a cluster, a packed
    # virtualenv shipped with the job; docs/batch.md)
    os.environ["PYSPARK_PYTHON"] = sys.executable

    session = (SparkSession.builder.master("local[2]").appName("tabserve-tests")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .getOrCreate())
    assert pyspark.__version__
    yield session
    session.stop()


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


def pytest_sessionstart(session):
    """matplotlib's first import in a fresh environment builds its font cache with `fc-list`,
    a process, which the unit tier refuses: built here, before any test, so the tier passes
    on its first run as on the next (`.ci/run` runs it first, with an empty cache)."""
    import matplotlib.font_manager  # noqa: F401 - builds the cache when there is none


def pytest_collection_finish(session):
    """Collecting the tests must not set up a server's environment in this process: the
    servers the tests start would inherit it (a shared metrics directory, counts mixed up)."""
    leaked = {"TABSERVE_METRICS_STARTED", "PROMETHEUS_MULTIPROC_DIR"} & set(os.environ)
    assert not leaked, f"set while collecting the tests: {sorted(leaked)}"



# --- test tiers ------------------------------------------------------------------------------
# A test is in the unit tier (`make test-unit`: no server, no subprocess) unless it is slow,
# needs Docker or a browser, is marked `process`, or uses a fixture that starts a process
# (one declared with `helpers.process_fixture`, itself or through another fixture).
OUTSIDE_UNIT = ("slow", "docker", "browser", "process")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if not any(item.get_closest_marker(name) for name in OUTSIDE_UNIT) \
                and not PROCESS_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.unit)


def _refuse_processes(*args, **kwargs):
    raise RuntimeError("a unit-tier test started a process: mark it `process` (or declare the "
                       "fixture that starts it with helpers.process_fixture)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    with _no_processes_for(item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    with _no_processes_for(item):
        yield


class _no_processes_for:
    """While a unit-tier test sets up and runs, starting any process (subprocess, a
    multiprocessing spawn, a fork) raises: the tier's promise is checked, not assumed."""

    def __init__(self, item):
        self.active = item.get_closest_marker("unit") is not None

    def __enter__(self):
        if self.active:
            self.saved = (subprocess.Popen._execute_child, _posixsubprocess.fork_exec, os.fork,
                          os.posix_spawn)
            subprocess.Popen._execute_child = _posixsubprocess.fork_exec = os.fork = \
                os.posix_spawn = _refuse_processes

    def __exit__(self, *exc):
        if self.active:
            (subprocess.Popen._execute_child, _posixsubprocess.fork_exec, os.fork,
             os.posix_spawn) = self.saved
