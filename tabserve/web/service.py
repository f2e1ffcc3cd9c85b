"""The service's parts, held by the Flask app (`service()` from a route) and its middleware."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import current_app

import numpy as np

from tabserve.model.bundle import ModelBundle
from tabserve.serving.codecs.json_answers import JsonAnswers
from tabserve.serving.core import Predictor, Scored
from tabserve.serving.decoding import BodyDecoder
from tabserve.serving.drift import DriftCounter, count_store
from tabserve.serving.explaining import Explainer
from tabserve.web.auth import ApiKeys
from tabserve.web.config import Settings
from tabserve.web.metrics import Metrics
from tabserve.web.openapi import openapi_document


@dataclass
class Service:
    """What the routes answer with: the process's settings and metrics, and the loaded model
    made ready to serve (replaced together by `install`, as SIGHUP does)."""

    settings: Settings
    metrics: Metrics = field(init=False)
    bundle: ModelBundle = field(init=False)
    predictor: Predictor = field(init=False)
    answers: JsonAnswers = field(init=False)
    decoder: BodyDecoder = field(init=False)
    explainer: Explainer = field(init=False)
    _file_scorer: Any = field(init=False, default=None, repr=False)
    openapi: dict[str, Any] = field(init=False)
    model_name: str = field(init=False)
    keys: ApiKeys | None = field(init=False, repr=False)  # re-read on SIGHUP
    drift: DriftCounter | None = field(init=False)  # None: monitoring off, or an old bundle

    def __post_init__(self) -> None:
        self.keys = self.settings.api_keys
        self.metrics = Metrics(self.settings.metrics_dir)

    def install(self, bundle: ModelBundle) -> None:
        """Make `bundle` the model every route answers with."""
        settings = self.settings
        predictor = Predictor(bundle, settings.speedups_off)
        drift = None
        if settings.monitoring and bundle.profile is not None:
            drift = DriftCounter(bundle, count_store(bundle, self.metrics.directory))
        self.metrics.drift = drift  # its counts are part of /metrics
        self.metrics.fields = frozenset(f.name for f in bundle.schema.fields)
        self.model_name = settings.served_model_name(bundle.schema.target)
        self.decoder = BodyDecoder(bundle.schema, settings.max_batch_records,
                                   settings.speedups_off)
        self.explainer = Explainer(predictor)
        self.openapi = openapi_document(bundle, max_batch=settings.max_batch_records,
                                        model_name=self.model_name,
                                        keys=settings.api_keys)
        self.answers = JsonAnswers(predictor)
        self.bundle, self.predictor, self.drift = bundle, predictor, drift

    def file_scorer(self):
        """This model's scorer of files (`batch.scoring.ChunkScorer`), made on first use: the
        batch wing imports pandas and pyarrow, which no other request needs."""
        if self._file_scorer is None or self._file_scorer.predictor is not self.predictor:
            from tabserve.batch.scoring import ChunkScorer

            self._file_scorer = ChunkScorer(self.bundle, self.predictor)
        return self._file_scorer

    def count_drift(self, columns: dict[str, np.ndarray], scored: Scored,
                    unseen: list[tuple[int, str, str]] = ()) -> None:
        """Count served records for /drift and /metrics, when drift is monitored."""
        if self.drift is not None:
            self.drift.count_columns(columns, scored.probabilities, unseen)

    def drift_unavailable(self) -> str | None:
        """Why `/drift` cannot answer, or None when it can."""
        if not self.settings.monitoring:
            return "drift monitoring is off (MONITORING=off)"
        if self.bundle.profile is None:
            return ("drift is unavailable for this model: it was trained before models "
                    "carried a profile of their training data; retrain it with "
                    "`.venv/bin/python train.py` to monitor drift")
        return None


def service() -> Service:
    """The service of the app handling the current request."""
    return current_app.extensions["tabserve"]
