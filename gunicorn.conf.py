"""gunicorn defaults for `gunicorn predict:app`; each can be overridden by environment."""

import os

from tabserve.config import available_cpus

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
