"""The Open Inference Protocol v2 (KServe / Seldon MLServer) over HTTP, beside /predict: the
routes, translating tensors (`serving.codecs.tensors`) to and from the serving core.

Errors are `{"error": "..."}` with a 4xx, as the protocol specifies (invalid values are
answered by the app's `RequestError` handler in that shape too).
"""

from __future__ import annotations

import msgspec
from flask import Blueprint, Response, request

from tabserve import __version__
from tabserve.model.validation import validate_columns
from tabserve.serving.codecs import tensors
from tabserve.web.responses import json_response
from tabserve.web.service import service

v2 = Blueprint("v2", __name__, url_prefix="/v2")


def _error(message: str, status: int = 400) -> Response:
    return json_response({"error": message}, status)


def _check_model(name: str) -> None:
    served = service().model_name
    if name != served:
        raise LookupError(f"model {name!r} not found; this server serves {served!r}")


@v2.get("")
def server_metadata() -> Response:
    return json_response({"name": "tabserve", "version": __version__, "extensions": []})


@v2.get("/health/live")
def live() -> Response:
    return json_response({"live": True})


@v2.get("/health/ready")
def ready() -> Response:
    return json_response({"ready": True})


@v2.get("/models/<name>")
def model_metadata(name: str) -> Response:
    _check_model(name)
    current = service()
    bundle = current.bundle
    return json_response({
        "name": name, "versions": [bundle.version],
        "platform": f"tabserve/{bundle.metrics.get('chosen')}",
        "inputs": tensors.input_tensors(bundle.schema),
        "outputs": tensors.output_tensors(current.predictor.shape),
        "parameters": {"classes": bundle.classes},
    })


@v2.get("/models/<name>/ready")
def model_ready(name: str) -> Response:
    _check_model(name)
    return json_response({"name": name, "ready": True})


@v2.post("/models/<name>/infer")
def infer(name: str) -> Response:
    _check_model(name)
    current = service()
    schema = current.bundle.schema
    try:
        body = msgspec.json.decode(request.get_data(cache=False))
        values, count, unknown = tensors.input_values(body, schema.names,
                                                      current.settings.max_batch_records)
    except (msgspec.DecodeError, UnicodeDecodeError) as err:
        return _error(f"the body is not valid JSON: {err}")
    except RecursionError:
        return _error("the body is not valid JSON: nested too deeply")
    except ValueError as err:
        return _error(str(err))
    validated = validate_columns(schema, values)
    scored = current.predictor.score_validated(validated)
    current.count_drift(validated.columns, scored, validated.unseen)
    request.environ["tabserve.records"] = count
    current.metrics.observe_labels(scored.labels)
    answer = {"model_name": name, "model_version": scored.shape.version,
              "id": body.get("id") if isinstance(body.get("id"), str) else
              request.environ.get("tabserve.request_id"),
              "outputs": tensors.outputs(scored)}
    warnings = tensors.warnings(scored, unknown)
    if warnings:
        answer["parameters"] = {"warnings": warnings}
    return json_response(answer)


@v2.errorhandler(LookupError)
def _not_found(err: LookupError) -> Response:
    return _error(str(err.args[0]), 404)

