"""One inference of the Open Inference Protocol, whichever transport carried it (HTTP in
`open_inference`, gRPC in `grpc_inference`): input tensors in, read into typed columns once
(binary data straight into numpy arrays); output tensors and warnings out. Validated, scored, and counted for drift and the metrics as
/predict is."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tabserve.model.validation import validate_columns
from tabserve.serving.codecs import tensors
from tabserve.web.service import Service


@dataclass(frozen=True)
class Inference:
    """An answer's parts: the output tensors asked for, its warnings as one string, the model
    version that answered."""
    records: int
    outputs: list[tensors.Output]
    warnings: str | None
    model_version: str


def check_model(current: Service, name: str, version: str | None = None) -> None:
    """`LookupError` (a 404) unless `name` is the served model and `version`, when given, is
    its version."""
    if name != current.model_name:
        raise LookupError(f"model {tensors.shown(name)} not found; this server serves "
                          f"{current.model_name!r}")
    served = current.bundle.version
    if version and version != served:
        raise LookupError(f"version {tensors.shown(version)} of model {tensors.shown(name)} "
                          f"not found; this server serves version {served!r}")


def infer(current: Service, inputs: list[tensors.Tensor],
          output_names: list[str] | None) -> Inference:
    """Score a request's input tensors; `ValueError` for tensors that do not fit the model
    (`RequestError` for invalid values), both before any scoring."""
    predictor = current.predictor  # one model for the whole request, even across a reload
    schema = predictor.bundle.schema
    columns, count, unknown = tensors.input_columns(inputs, schema,
                                                    current.settings.max_batch_records)
    wanted = tensors.requested_outputs(predictor.shape, output_names)
    row = current.decoder.row_of(tensors.first_record(columns, schema)) if count == 1 else None
    if row is not None:  # one record valid as it stands: lists, no numpy, as /predict
        probabilities = predictor.score_row(row)
        if current.drift is not None:
            current.drift.count_row(row, probabilities)
        scored = predictor.scored(np.array([probabilities]), {})
    else:
        validated = validate_columns(schema, columns)
        scored = predictor.score_validated(validated)
        current.count_drift(validated.columns, scored, validated.unseen)
    current.metrics.observe_labels(scored.labels)
    return Inference(count, tensors.outputs(scored, wanted), tensors.warnings(scored, unknown),
                     scored.shape.version)
