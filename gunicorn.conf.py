"""gunicorn defaults for `gunicorn predict:app`; each can be overridden by environment."""

import gc
import os
import queue
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # run from any directory
from tabserve.serving.process import available_cpus, prepare_process  # noqa: E402
from tabserve.settings import (ConfigError, ServerSettings, environment,  # noqa: E402
                               prepare_metrics_directory)

# Before the app (numpy, scikit-learn, xgboost) is imported: one thread per worker, and
# freed memory kept for the next batch
prepare_process(environment())

# Prometheus multiprocess mode: workers write their samples to a directory, /metrics sums them;
# set before prometheus_client is imported, emptied at start (see prepare_metrics_directory)
try:
    metrics_dir = prepare_metrics_directory(environment())
    server_settings = ServerSettings.from_env(environment(), available_cpus())
except ConfigError as err:
    sys.exit(f"error: {err}")
bind = server_settings.bind
workers = server_settings.workers
threads = server_settings.threads
# gevent's worker: a greenlet per connection, so slow clients do not hold a worker
# (tabserve/web/worker.py; WORKER_CLASS=sync for sync workers); at most this many connections each
worker_class = server_settings.gunicorn_worker
worker_connections = 1000
preload_app = True          # load model.bin once, in the master; workers share its memory
timeout = server_settings.timeout
graceful_timeout = 10
keepalive = 5
# gunicorn's control socket (gunicornc) is not used; off, it needs no writable $HOME, which a
# read-only container or an arbitrary --user has not
control_socket_disable = True
accesslog = "-"             # one JSON line per request on stdout, errors on stderr
logger_class = "tabserve.web.logs.JsonAccessLogger"
errorlog = "-"
loglevel = server_settings.log_level


def when_ready(server):
    """After the app is preloaded, before workers fork: exempt the loaded modules and model
    from garbage collection. Collections then scan only what requests allocate (they scanned
    pandas, scikit-learn and the model each time: tens of ms at p99), and workers keep
    sharing those pages instead of copying them when the collector touches them."""
    gc.collect()
    gc.freeze()
    served = getattr(server.app.wsgi(), "extensions", {}).get("tabserve")
    if served is None:  # another app under this configuration (the benchmark's reference apps)
        return
    host = "localhost" if server_settings.host in ("0.0.0.0", "::", "") else server_settings.host
    server.log.info("Serving model %s: try http://%s:%d/docs", served.bundle.version, host,
                    server_settings.port)


def on_reload(server):
    """SIGHUP: read the API key file and MODEL_PATH again in the master before the new
    workers fork from it; the old workers finish their requests and exit. A key file or a
    model file that fails to load keeps the current keys or model. The drift report starts
    afresh."""
    from tabserve.model.bundle import ModelLoadError
    from tabserve.web.app import reload_keys, reload_model, reset_drift
    from tabserve.web.auth import ApiKeyError
    from tabserve.web.handover import Handover

    if server_settings.grpc_port is not None:  # the old workers hold gRPC until new ones serve
        Handover(metrics_dir).reload_begins()

    try:
        keys = reload_keys(server.app.wsgi())
        if keys is not None:
            server.log.info("SIGHUP: now accepting %d API keys", keys)
    except ApiKeyError as err:
        server.log.error("SIGHUP: kept the current API keys: %s", err)
    reset_drift(server.app.wsgi())  # a new model's counts start from nothing anyway
    try:
        version = reload_model(server.app.wsgi())
    except Exception as err:  # noqa: BLE001 - whatever fails, the running model keeps serving
        reason = str(err) if isinstance(err, ModelLoadError) else \
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        server.log.error("SIGHUP: kept the current model: %s", reason)
        return
    gc.collect()
    gc.freeze()
    server.log.info("SIGHUP: now serving model %s; the drift report starts afresh", version)


def post_fork(server, worker):
    """In the new worker: when it was forked (for the gRPC hand-over on SIGHUP), and the
    master's signal queue, which catches the signals sent before the worker's own handlers."""
    worker.born = time.time()
    worker.early_signals = server.SIG_QUEUE


def take_early_stop_signals(worker) -> None:
    """A stop signal that came while the worker was booting went to the master's handler, which
    the worker still had, and was lost: the worker then served on until killed (docker stop a
    second after start: exit 137 after 10 s, with gevent's worker, whose boot is longer). Sent
    again now that the worker's handlers are in place. A stop queued in the master before the
    fork is taken too: the master stops this worker then anyway."""
    while True:
        try:
            sig = worker.early_signals.get_nowait()
        except queue.Empty:
            return
        if sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            os.kill(os.getpid(), sig)


def post_worker_init(worker):
    """A stop signal sent while the worker booted is taken now. With GRPC_PORT: this worker
    serves the Open Inference Protocol over gRPC too, on the port every worker binds (started
    after the fork: gRPC's threads do not survive one)."""
    take_early_stop_signals(worker)
    if server_settings.grpc_port is None or not worker.alive:
        return
    from tabserve.web.grpc_inference import serve
    from tabserve.web.handover import Handover

    try:
        worker.grpc_server = serve(worker.app.wsgi().extensions["tabserve"],
                                   server_settings.grpc_port)
    except OSError as err:
        worker.log.error("error: %s", err)
        sys.exit(3)  # gunicorn's "worker failed to boot": the master stops, as it should
    Handover(metrics_dir).serving(worker.pid, worker.born)


def worker_exit(server, worker):
    """SIGTERM (and SIGHUP's old workers): once HTTP has finished, gRPC refuses new calls and
    gives those under way the same grace; on SIGHUP, only once a new worker serves gRPC (see
    `tabserve.web.handover`)."""
    grpc_server = getattr(worker, "grpc_server", None)
    if grpc_server is None:
        return
    from tabserve.web.handover import Handover

    handover = Handover(metrics_dir)
    handover.leaving(worker.pid)
    if not handover.await_successor(worker.born, graceful_timeout):
        worker.log.warning("SIGHUP: no new worker served gRPC within %d s; stopping anyway",
                           graceful_timeout)
    grpc_server.stop(graceful_timeout)


def child_exit(server, worker):
    """A worker's samples stay counted after it exits, folded into the exited workers' files
    (restarts do not pile files up); its live gauges do not. A failure is logged, never
    raised: it would stop the master."""
    from tabserve.serving.drift import collect_dead_counts
    from tabserve.web.metrics import collect_dead_worker

    try:
        collect_dead_worker(metrics_dir, worker.pid)
        collect_dead_counts(metrics_dir, worker.pid)
    except Exception as err:  # noqa: BLE001 - a full disk must not stop the master
        server.log.error("the metrics of exited worker %d were not folded: %s", worker.pid, err)
