"""Settings of the service, read from the environment once, when the app is created, and the
set-up of a serving process. Imports nothing heavy at the top: `prepare_process` must run
before numpy and the rest load (a test checks it)."""

from __future__ import annotations

import ctypes
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tabserve.web.auth import ApiKeys

# the speed mechanisms that `SPEEDUPS_OFF` may switch off, to measure what each earns
# (`make bench ARGS=--ablation`; docs/performance.md)
SPEEDUPS = ("tree_tables", "packed_levels", "heap_reuse")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


def _positive_int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a positive integer, got {raw!r}") from None
    if value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    model_path: Path = Path("model.bin")
    max_batch_records: int = 10_000
    max_body_bytes: int = 32 * 1024 * 1024
    model_name: str = ""  # the Open Inference Protocol's model name; empty: the target's name
    speedups_off: frozenset[str] = frozenset()  # see SPEEDUPS
    # with a key, only bundles signed with it are loaded (model.bundle); never shown
    signing_key: bytes | None = field(default=None, repr=False)
    api_keys: ApiKeys | None = field(default=None, repr=False)  # None: no key needed

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Settings from `MODEL_PATH`, `MAX_BATCH_RECORDS`, `MAX_BODY_BYTES`, `MODEL_NAME`,
        `SPEEDUPS_OFF`, `MODEL_SIGNING_KEY` or `MODEL_SIGNING_KEY_FILE`, `API_KEYS_FILE` or
        `API_KEYS` (and `METRICS_WITHOUT_KEY`)."""
        from tabserve.model.bundle import SigningKeyError, signing_key
        from tabserve.web.auth import ApiKeyError, ApiKeys

        env = os.environ if env is None else env
        try:
            key, api_keys = signing_key(env), ApiKeys.from_env(env)
        except (SigningKeyError, ApiKeyError) as err:
            raise ConfigError(str(err)) from None
        return cls(
            model_path=Path(env.get("MODEL_PATH") or "model.bin"),
            max_batch_records=_positive_int(env, "MAX_BATCH_RECORDS", cls.max_batch_records),
            max_body_bytes=_positive_int(env, "MAX_BODY_BYTES", cls.max_body_bytes),
            model_name=env.get("MODEL_NAME", "").strip(),
            speedups_off=speedups_off(env),
            signing_key=key,
            api_keys=api_keys,
        )

    def served_model_name(self, target: str) -> str:
        """The model's name in the Open Inference Protocol: `MODEL_NAME`, else the target's."""
        return self.model_name or target


def speedups_off(env: dict[str, str]) -> frozenset[str]:
    """The mechanisms `SPEEDUPS_OFF` names; `ConfigError` for a name that is none of them."""
    names = frozenset(name.strip() for name in env.get("SPEEDUPS_OFF", "").split(",")
                      if name.strip())
    unknown = sorted(names - set(SPEEDUPS))
    if unknown:
        raise ConfigError(f"SPEEDUPS_OFF names {', '.join(unknown)}; choose from "
                          f"{', '.join(SPEEDUPS)}")
    return names


def _cgroup_cpu_limit() -> float | None:
    """The CPU quota of this container, from cgroup v2 or v1; None when unlimited."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()  # cgroup v2
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        v1 = Path("/sys/fs/cgroup/cpu")
        quota = int((v1 / "cpu.cfs_quota_us").read_text())
        return None if quota <= 0 else quota / int((v1 / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None


def available_cpus() -> int:
    """CPUs this process may use: the container's CPU quota, else the affinity mask."""
    cpus = len(os.sched_getaffinity(0))
    limit = _cgroup_cpu_limit()
    if limit is not None:
        cpus = min(cpus, max(1, math.ceil(limit)))
    return cpus


def keep_freed_memory(mmap_bytes: int = 16 << 20, trim_bytes: int = 64 << 20) -> bool:
    """Ask glibc's allocator to take blocks up to `mmap_bytes` from the heap and to keep up to
    `trim_bytes` of freed heap. A batch's arrays (a few hundred KB each) then reuse what the
    previous request freed instead of fresh pages from the kernel, each a page fault. Applies
    to this process and the workers it forks; False where the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_bytes)
                    and libc.mallopt(M_TRIM_THRESHOLD, trim_bytes))
    except (OSError, AttributeError):
        return False


def prepare_process(env: dict[str, str]) -> None:
    """What a serving process sets before numpy, scikit-learn and xgboost are imported and
    the model loads (gunicorn.conf.py, lambda_function.py). One BLAS/OpenMP thread, and idle
    OpenMP threads sleep instead of spinning: processes don't fight over cores. And unless
    SPEEDUPS_OFF names heap_reuse, `keep_freed_memory` (docs/performance.md). A bad
    SPEEDUPS_OFF is left for the app to report, in one line."""
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(variable, "1")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        if "heap_reuse" not in speedups_off(env):
            keep_freed_memory()
    except ConfigError:
        pass
