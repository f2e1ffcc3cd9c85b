"""gunicorn defaults for `gunicorn predict:app`; each can be overridden by environment."""

import gc
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # run from any directory
from tabserve.config import available_cpus  # noqa: E402

# Before the app (numpy, scikit-learn, xgboost) is imported: one BLAS/OpenMP thread per
# worker, and idle OpenMP threads sleep instead of spinning, so workers don't fight over cores.
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(variable, "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '9696')}"
workers = int(os.environ.get("WEB_CONCURRENCY") or available_cpus())
threads = int(os.environ.get("THREADS") or 1)
preload_app = True          # load model.bin once, in the master; workers share its memory
timeout = int(os.environ.get("TIMEOUT") or 30)
graceful_timeout = 10
keepalive = 5
accesslog = "-"             # access and error logs to stdout/stderr for containers
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")


def when_ready(server):
    """After the app is preloaded, before workers fork: exempt the loaded modules and model
    from garbage collection. Collections then scan only what requests allocate (they scanned
    pandas, scikit-learn and the model each time: tens of ms at p99), and workers keep
    sharing those pages instead of copying them when the collector touches them."""
    gc.collect()
    gc.freeze()
