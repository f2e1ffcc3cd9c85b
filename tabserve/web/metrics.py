"""Prometheus metrics, correct across gunicorn workers.

Under gunicorn, `gunicorn.conf.py` points PROMETHEUS_MULTIPROC_DIR at a fresh directory before
the app is imported: every worker writes its samples there and `GET /metrics` sums them over
live and dead workers (prometheus-client's multiprocess mode). Without that variable (tests,
`flask run`) the counts live in this process.
"""

from __future__ import annotations

import os
from collections import Counter as Tally
from typing import Any

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram,
                               generate_latest, multiprocess)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    """The service's counters and latency histogram, and their exposition."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry()
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

        # labelled children, looked up once: `labels()` costs more than the update itself
        self._children: dict[tuple, Any] = {}

    def _child(self, metric, *labels: str):
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self._child(self.requests, endpoint, method, str(status)).inc()
        self._child(self.latency, endpoint).observe(seconds)

    def observe_labels(self, labels: list[str]) -> None:
        self.records.inc(len(labels))
        if len(labels) == 1:
            self._child(self.predictions, labels[0]).inc()
            return
        for label, count in Tally(labels).items():
            self._child(self.predictions, label).inc(count)

    def observe_problems(self, fields: list[str | None]) -> None:
        for field, count in Tally(field or "(body)" for field in fields).items():
            self.validation_failures.labels(field).inc(count)

    def exposition(self) -> bytes:
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
