"""Prometheus metrics, correct across gunicorn workers.

Under gunicorn, `gunicorn.conf.py` points PROMETHEUS_MULTIPROC_DIR at a fresh directory before
the app is imported: every worker writes its samples there and `GET /metrics` sums them over
live and dead workers (prometheus-client's multiprocess mode). Without that variable (tests,
`flask run`, Lambda) the counts live in this process.

Drift counts (`serving.drift`) are kept apart, in arrays rather than one prometheus-client
counter per bin (an increment costs about 1 µs, twenty fields a record); `DriftCollector`
exposes them, summed over the workers, with the reference shares beside them, so that a
Prometheus server can compute the PSI itself (`deploy/monitoring/`).
"""

from __future__ import annotations

import functools
import logging
import os
from collections import Counter as Tally
from pathlib import Path
from typing import Any

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram,
                               generate_latest, multiprocess)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.mmap_dict import MmapedDict

from tabserve.model.schema import Kind
from tabserve.serving.drift import DriftCounter

# label values come from the service, never from a client: a method or field name outside
# these is counted under one value, so no request can add series
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "GRPC"})
OTHER_METHOD = "(other)"
UNKNOWN_FIELD = "(unknown field)"
BODY = "(body)"
log = logging.getLogger(__name__)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


def _degrading(method):
    """A metrics update that cannot fail a request: if the metrics directory cannot be written
    (a full or remounted volume), this process stops counting and says so once; requests are
    answered all the same."""
    @functools.wraps(method)
    def update(self, *args):
        if self.broken:
            return
        try:
            method(self, *args)
        except OSError as err:
            self.broken = True
            log.error("metrics are no longer counted by worker %d: the metrics directory "
                      "cannot be written (%s)", os.getpid(), err.strerror or err)
    return update


class Metrics:
    """The service's counters and latency histogram, and their exposition."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, directory: Path | None = None):
        self.directory = directory  # gunicorn's workers write here (multiprocess mode)
        self.multiprocess = self.directory is not None
        self.drift: DriftCounter | None = None  # set with each model (web.service)
        self.fields: frozenset[str] = frozenset()  # the model's fields, set with each model
        self.broken = False  # the directory could not be written: nothing more is counted
        self.registry = CollectorRegistry()
        self.drift_collector = DriftCollector(self)
        self.requests = Counter("tabserve_requests_total", "HTTP requests answered",
                                ["endpoint", "method", "status"], registry=self.registry)
        self.latency = Histogram("tabserve_request_duration_seconds",
                                 "Time to answer a request", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.records = Counter("tabserve_records_predicted_total",
                               "Records answered by /predict, /explain and /v2 infer",
                               registry=self.registry)
        self.predictions = Counter("tabserve_predictions_total", "Predicted labels",
                                   ["label"], registry=self.registry)
        self.validation_failures = Counter("tabserve_validation_failures_total",
                                           "Problems found in requests, by field",
                                           ["field"], registry=self.registry)

        if not self.multiprocess:
            self.registry.register(self.drift_collector)
        # labelled children, looked up once: `labels()` costs more than the update itself
        self._children: dict[tuple, Any] = {}

    def _child(self, metric, *labels: str):
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    @_degrading
    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else OTHER_METHOD
        self._child(self.requests, endpoint, method, str(status)).inc()
        self._child(self.latency, endpoint).observe(seconds)

    @_degrading
    def observe_labels(self, labels: list[str]) -> None:
        self.records.inc(len(labels))
        if len(labels) == 1:
            self._child(self.predictions, labels[0]).inc()
            return
        for label, count in Tally(labels).items():
            self._child(self.predictions, label).inc(count)

    @_degrading
    def observe_problems(self, fields: list[str | None]) -> None:
        """Problems by field: the model's own fields by name, any other key a client sent
        as one label."""
        labels = (BODY if not field else field if field in self.fields else UNKNOWN_FIELD
                  for field in fields)
        for label, count in Tally(labels).items():
            self._child(self.validation_failures, label).inc(count)

    def exposition(self) -> bytes:
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            registry.register(self.drift_collector)
            return generate_latest(registry)
        return generate_latest(self.registry)


def collect_dead_worker(directory: Path, pid: int) -> None:
    """Fold an exited worker's counter and histogram files into one file of all exited
    workers' (`<kind>_exited.db`), so that workers dying and restarting do not pile files up;
    prometheus_client's `mark_process_dead` only removes a dead worker's live gauges. The sums
    /metrics shows stay the same."""
    multiprocess.mark_process_dead(pid, str(directory))
    for kind in ("counter", "histogram"):
        dead = directory / f"{kind}_{pid}.db"
        if not dead.exists():
            continue
        exited = MmapedDict(str(directory / f"{kind}_exited.db"))
        try:
            for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(str(dead)):
                total, _ = exited.read_value(key)
                exited.write_value(key, total + value, timestamp)
        finally:
            exited.close()
        dead.unlink()


class DriftCollector:
    """The drift counts of every worker since the server started, per field and bin, and the
    model's reference shares (a custom collector: prometheus-client calls `collect`)."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def collect(self):
        drift = self.metrics.drift
        if drift is None:
            return
        profile, layout = drift.profile, drift.layout
        totals = drift.store.totals().tolist()
        records = CounterMetricFamily("tabserve_drift_records",
                                      "Records counted for drift, by field and bin",
                                      labels=["field", "bin"])
        reference = GaugeMetricFamily("tabserve_drift_reference_share",
                                      "Share of the training rows in each bin of each field",
                                      labels=["field", "bin"])
        unseen = CounterMetricFamily("tabserve_drift_unseen_records",
                                     "Records whose level of a categorical field training never saw",
                                     labels=["field"])
        for i, (f, fp, start) in enumerate(zip(drift.bundle.schema.fields, profile.fields,
                                               layout.field_starts)):
            for j, (name, share) in enumerate(zip(fp.bins, fp.shares)):
                records.add_metric([fp.name, name], totals[start + j])
                reference.add_metric([fp.name, name], share)
            if f.kind is Kind.CATEGORICAL:
                unseen.add_metric([fp.name], totals[layout.unseen_start + i])
        scores = CounterMetricFamily("tabserve_drift_score_records",
                                     "Records counted for drift, by bin of the model's score",
                                     labels=["bin"])
        score_reference = GaugeMetricFamily("tabserve_drift_score_reference_share",
                                            "Share of the training rows' out-of-fold scores "
                                            "in each bin", labels=["bin"])
        for j, (name, share) in enumerate(zip(profile.score.bins, profile.score.shares)):
            scores.add_metric([name], totals[layout.score_start + j])
            score_reference.add_metric([name], share)
        yield from (records, reference, unseen, scores, score_reference,
                    CounterMetricFamily("tabserve_drift_counted_records",
                                        "Records counted for drift",
                                        value=totals[layout.records_at]))
