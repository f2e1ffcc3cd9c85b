"""The environment's settings: each variable's default written once, the checks that read
them, and gunicorn's and the batch scorer's settings (the service's own are `web.config`,
built with these). Every wing may import this module; it imports only the standard library,
since gunicorn.conf.py and `serving.process` load it before numpy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
# the speed mechanisms that `SPEEDUPS_OFF` may switch off, to measure what each earns
# (`make bench ARGS=--ablation`; docs/performance.md)
SPEEDUPS = ("tree_tables", "packed_levels", "heap_reuse", "tensor_rows")
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


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


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
