"""The environment's settings: the one place the process's environment is read
(`environment()`; tests/test_architecture.py holds that), each variable's default written
once, the checks that read them, and gunicorn's and the batch scorer's settings (the service's
own are `web.config`, built with these). Every wing may import this module; it imports only
the standard library, since gunicorn.conf.py and `serving.process` load it before numpy."""

from __future__ import annotations

import os
import tempfile
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
# the speed mechanisms that `SPEEDUPS_OFF` may switch off, to measure what each earns
# (`make bench ARGS=--ablation`; docs/performance.md)
SPEEDUPS = ("tree_tables", "tree_groups", "packed_levels", "heap_reuse", "tensor_rows", "tensor_levels", "inference_before_flask")
DEFAULT_PORT = 9696
# gunicorn's worker for each `WORKER_CLASS`: gevent's by default, so that slow clients hold a
# greenlet and not a worker (docs/reliability.md); sync workers need a buffering proxy in front
WORKER_CLASSES = {"sync": "sync", "gevent": "tabserve.web.worker.SlowClientWorker"}
MAX_BATCH_RECORDS = 10_000
# Below this many records a drift report judges nothing: a sample of n records drawn from the
# training rows themselves has a PSI of about (bins − 1) / n per field, so 500 records keep a
# field's PSI from chance under 0.1 (the "stable" bound) with a wide margin.
DRIFT_MIN_RECORDS = 500
CHUNK_ROWS = 25_000  # rows per chunk read from a file (score.py, monitor.py); bench: docs/batch.md
PROGRESS_SECONDS = 2.0  # between score.py's progress lines


MIN_SIGNING_KEY_BYTES = 16


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


def environment() -> MutableMapping[str, str]:
    """The process's environment: every module reads its settings through this, and passes it
    to the functions below (tests pass a dict of their own). gunicorn.conf.py and the scripts
    also set variables in it for the libraries (OpenMP's, Prometheus' directory)."""
    return os.environ


def read_secret(env: dict[str, str], name: str) -> str | None:
    """The value of `name`, or the content of the file named by `name`_FILE (a mounted Docker
    or Kubernetes secret); None without either. `ConfigError` naming the setting when both
    are set or the file cannot be read."""
    text, path = env.get(name) or "", env.get(f"{name}_FILE") or ""
    if text and path:
        raise ConfigError(f"set {name} or {name}_FILE, not both")
    if not path:
        return text or None
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{name}_FILE {path} cannot be read "
                          f"({getattr(err, 'strerror', None) or err})") from None


def signing_key(env: dict[str, str]) -> bytes | None:
    """The key that signs bundles (training) and checks them (serving): `MODEL_SIGNING_KEY`,
    or the content of the file `MODEL_SIGNING_KEY_FILE`; None without."""
    secret = read_secret(env, "MODEL_SIGNING_KEY")
    if secret is None or not secret.strip():
        return None
    key = secret.strip().encode()
    if len(key) < MIN_SIGNING_KEY_BYTES:
        raise ConfigError(f"the model signing key has {len(key)} bytes; use at least "
                          f"{MIN_SIGNING_KEY_BYTES} (for example: openssl rand -hex 32)")
    return key


def allows_pickle(env: dict[str, str]) -> bool:
    """`ALLOW_PICKLE`: 1 to open model files that hold pickle (which runs code as it loads)."""
    raw = (env.get("ALLOW_PICKLE") or "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"ALLOW_PICKLE must be 1 or 0, got {env['ALLOW_PICKLE']!r}")


def api_key_entries(env: dict[str, str]) -> tuple[str, list[str]] | None:
    """The API keys as given: which setting (`API_KEYS_FILE`, a key per line, or `API_KEYS`,
    comma-separated) and its entries, blank lines and `#` comments left out; None when
    neither is set (keys off)."""
    secret = read_secret(env, "API_KEYS")
    if secret is None:
        return None
    where = "API_KEYS_FILE" if env.get("API_KEYS_FILE") else "API_KEYS"
    lines = secret.splitlines() if where == "API_KEYS_FILE" else secret.split(",")
    return where, [line.strip() if line.strip() and not line.strip().startswith("#") else ""
                   for line in lines]


def metrics_without_key(env: dict[str, str]) -> bool:
    """`METRICS_WITHOUT_KEY=1`: /metrics answers without an API key (a scraper inside)."""
    return env.get("METRICS_WITHOUT_KEY", "") == "1"


def model_path(env: dict[str, str]) -> Path:
    """`MODEL_PATH`: the model file a server serves (default model.bin)."""
    return Path(env.get("MODEL_PATH") or "model.bin")


def model_name(env: dict[str, str]) -> str:
    """`MODEL_NAME`: the model's name in the Open Inference Protocol (empty: the target's)."""
    return env.get("MODEL_NAME", "").strip()


def logs_debug(env: dict[str, str]) -> bool:
    """`LOG_LEVEL=debug`: the probes' requests are logged too."""
    return (env.get("LOG_LEVEL") or "info").strip().lower() == "debug"


def client_api_key(env: dict[str, str]) -> str | None:
    """`TABSERVE_API_KEY`: the key predict_client.py sends (kept out of the shell history)."""
    return env.get("TABSERVE_API_KEY") or None


def speedups_off(env: dict[str, str]) -> frozenset[str]:
    """The mechanisms `SPEEDUPS_OFF` names; `ConfigError` for a name that is none of them."""
    names = frozenset(name.strip() for name in env.get("SPEEDUPS_OFF", "").split(",")
                      if name.strip())
    unknown = sorted(names - set(SPEEDUPS))
    if unknown:
        raise ConfigError(f"SPEEDUPS_OFF names {', '.join(unknown)}; choose from "
                          f"{', '.join(SPEEDUPS)}")
    return names


def _integer(env: dict[str, str], name: str, default: int, lowest: int, highest: int | None,
             what: str) -> int:
    """An integer setting within [lowest, highest]; `ConfigError` naming `what` it must be."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = lowest - 1
    if value < lowest or (highest is not None and value > highest):
        raise ConfigError(f"{name} must be {what}, got {raw!r}")
    return value


def positive_int(env: dict[str, str], name: str, default: int) -> int:
    return _integer(env, name, default, 1, None, "a positive integer")


def port(env: dict[str, str], name: str, default: int) -> int:
    """A TCP port: 1 to 65535, or 0 for any free port the system picks."""
    return _integer(env, name, default, 0, 65535, "a port number (0 to 65535)")


def switch(env: dict[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("on", "true", "1", "yes"):
        return True
    if raw in ("off", "false", "0", "no"):
        return False
    raise ConfigError(f"{name} must be on or off, got {env[name]!r}")


def metrics_directory(env: dict[str, str]) -> Path | None:
    """Where gunicorn's workers write their metrics and drift counts (`PROMETHEUS_MULTIPROC_DIR`,
    which gunicorn.conf.py sets when unset); None in a single process."""
    return Path(env["PROMETHEUS_MULTIPROC_DIR"]) if env.get("PROMETHEUS_MULTIPROC_DIR") \
        else None


def prepare_metrics_directory(env: MutableMapping[str, str]) -> Path:
    """gunicorn's start (not SIGHUP's re-read of gunicorn.conf.py, which must keep the running
    workers' counts): `PROMETHEUS_MULTIPROC_DIR`, or a new temporary directory, emptied of
    stale counts and checked writable, set in `env` before prometheus_client is imported.
    `ConfigError` in one line for a directory that cannot be written."""
    if env.get("TABSERVE_METRICS_STARTED"):
        return Path(env["PROMETHEUS_MULTIPROC_DIR"])
    try:
        directory = Path(env.get("PROMETHEUS_MULTIPROC_DIR")
                         or tempfile.mkdtemp(prefix="tabserve-metrics-"))
        directory.mkdir(parents=True, exist_ok=True)
        for stale in [*directory.glob("*.db"), *directory.glob("drift_*"),
                      *directory.glob("grpc-*")]:
            stale.unlink()
        probe = directory / ".writable"  # a read-only directory fails here, in one line
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:  # a read-only container without a writable /tmp
        raise ConfigError(
            f"cannot write the metrics directory {err.filename or ''} ({err.strerror}): give "
            "the server a writable /tmp (docker run --tmpfs /tmp; Kubernetes: an emptyDir "
            "volume at /tmp) or set PROMETHEUS_MULTIPROC_DIR to a writable directory") from None
    env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    env["TABSERVE_METRICS_STARTED"] = "1"
    return directory


@dataclass(frozen=True)
class ServerSettings:
    """gunicorn's settings (gunicorn.conf.py): `HOST`, `PORT`, `WEB_CONCURRENCY` (default:
    the CPUs this process may use), `THREADS`, `TIMEOUT`, `LOG_LEVEL`, `WORKER_CLASS`
    (`gevent` or `sync`); `GRPC_PORT`: the Open Inference Protocol over gRPC on that port too
    (None: not served)."""

    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    workers: int = 1
    threads: int = 1
    timeout: int = 30
    log_level: str = "info"
    grpc_port: int | None = None
    worker_class: str = "gevent"

    @classmethod
    def from_env(cls, env: dict[str, str], cpus: int) -> ServerSettings:
        settings = cls(host=env.get("HOST") or cls.host,
                       port=port(env, "PORT", cls.port),
                       workers=positive_int(env, "WEB_CONCURRENCY", cpus),
                       threads=positive_int(env, "THREADS", cls.threads),
                       timeout=positive_int(env, "TIMEOUT", cls.timeout),
                       log_level=env.get("LOG_LEVEL") or cls.log_level,
                       # every worker binds it (SO_REUSEPORT): 0, a port each, cannot be used
                       grpc_port=_integer(env, "GRPC_PORT", 0, 1, 65535,
                                          "a port number (1 to 65535)") or None,
                       worker_class=(env.get("WORKER_CLASS") or cls.worker_class).strip())
        if settings.worker_class not in WORKER_CLASSES:
            raise ConfigError(f"WORKER_CLASS must be {' or '.join(WORKER_CLASSES)}, got "
                              f"{settings.worker_class!r}")
        if settings.grpc_port is not None and settings.grpc_port == settings.port:
            raise ConfigError(f"GRPC_PORT must differ from PORT, both are {settings.port}")
        return settings

    @property
    def bind(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def gunicorn_worker(self) -> str:
        return WORKER_CLASSES[self.worker_class]


def progress_seconds(env: dict[str, str]) -> float:
    """Seconds between score.py's progress lines (`TABSERVE_PROGRESS_SECONDS`; 0: every chunk)."""
    raw = (env.get("TABSERVE_PROGRESS_SECONDS") or "").strip()
    try:
        return float(raw) if raw else PROGRESS_SECONDS
    except ValueError:
        raise ConfigError(f"TABSERVE_PROGRESS_SECONDS must be a number, got {raw!r}") from None
