"""A scoring process's set-up, shared by every host of the predictor (gunicorn's workers,
AWS Lambda, the batch scorer's workers): how many CPUs it may use, one thread per native
pool, freed memory kept for the next batch, and the speed mechanisms that may be switched
off. Imports only the standard library: `prepare_process` must run before numpy loads."""

from __future__ import annotations

import ctypes
import math
import os
from pathlib import Path

from tabserve.settings import ConfigError, speedups_off

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


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
    """What a scoring process sets before numpy, scikit-learn and xgboost are imported and
    the model loads (gunicorn.conf.py, lambda_function.py, the batch scorer's workers). One
    BLAS/OpenMP thread, and idle OpenMP threads sleep instead of spinning: processes don't
    fight over cores. And unless SPEEDUPS_OFF names heap_reuse, `keep_freed_memory`
    (docs/performance.md). A bad SPEEDUPS_OFF is left for the app to report, in one line."""
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(variable, "1")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        if "heap_reuse" not in speedups_off(env):
            keep_freed_memory()
    except ConfigError:
        pass
