"""The Open Inference Protocol v2 (KServe / Seldon MLServer), beside /predict.

Tabular input is one tensor per field (BYTES for text, FP64/INT64 for numbers, BOOL or
INT64 for booleans), validated by the same schema as /predict; the outputs are the predicted
label, the class probabilities, and for a binary model the positive class's probability.
Errors are `{"error": "..."}` with a 4xx, as the protocol specifies (invalid values are
answered by the app's `RequestError` handler in that shape too).
"""

from __future__ import annotations

from typing import Any

import msgspec
from flask import Blueprint, Response, request

from tabserve import __version__
from tabserve.model.validation import validate_columns
from tabserve.web.responses import json_response
from tabserve.web.service import service

v2 = Blueprint("v2", __name__, url_prefix="/v2")
_DATATYPES = {"numeric": "FP64", "categorical": "BYTES", "boolean": "INT64"}


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
    bundle = service().bundle
    outputs = [{"name": "label", "datatype": "BYTES", "shape": [-1]},
               {"name": "probabilities", "datatype": "FP64", "shape": [-1, len(bundle.classes)]}]
    if bundle.task == "binary":
        outputs.append({"name": f"{bundle.schema.target}_probability", "datatype": "FP64",
                        "shape": [-1]})
    return json_response({
        "name": name, "versions": [bundle.version],
        "platform": f"tabserve/{bundle.metrics.get('chosen')}",
        "inputs": [{"name": f.name, "datatype": _DATATYPES[f.kind.value], "shape": [-1]}
                   for f in bundle.schema.fields],
        "outputs": outputs,
        "parameters": {"classes": bundle.classes},
    })


@v2.get("/models/<name>/ready")
def model_ready(name: str) -> Response:
    _check_model(name)
    return json_response({"name": name, "ready": True})


def _values(body: Any, names: list[str], limit: int) -> tuple[dict[str, list], int, list[str]]:
    """Each field's values from the request's input tensors, and unknown inputs' names."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise ValueError("expected an object with a list of 'inputs'")
    tensors: dict[str, list] = {}
    for i, tensor in enumerate(body["inputs"]):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str) \
                or not isinstance(tensor.get("data"), list):
            raise ValueError(f"inputs[{i}]: expected an object with a 'name' and a 'data' list")
        data = tensor["data"]
        if data and all(isinstance(item, list) and len(item) == 1 for item in data):
            data = [item[0] for item in data]  # shape [n, 1]
        tensors[tensor["name"]] = data
    missing = [name for name in names if name not in tensors]
    if missing:
        raise ValueError(f"missing input tensors: {', '.join(missing)}")
    lengths = {len(tensors[name]) for name in names}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError("every input tensor must hold the same number (at least 1) of values")
    count = lengths.pop()
    if count > limit:
        raise ValueError(f"{count} records exceed the limit of {limit} (MAX_BATCH_RECORDS)")
    return {name: tensors[name] for name in names}, count, sorted(set(tensors) - set(names))


@v2.post("/models/<name>/infer")
def infer(name: str) -> Response:
    _check_model(name)
    current = service()
    predictor, bundle = current.predictor, current.bundle
    schema = bundle.schema
    try:
        body = msgspec.json.decode(request.get_data(cache=False))
        values, count, unknown = _values(body, schema.names, current.settings.max_batch_records)
    except (msgspec.DecodeError, UnicodeDecodeError) as err:
        return _error(f"the body is not valid JSON: {err}")
    except RecursionError:
        return _error("the body is not valid JSON: nested too deeply")
    except ValueError as err:
        return _error(str(err))
    validated = validate_columns(schema, values)
    answers = predictor.answer(validated)
    request.environ["tabserve.records"] = count
    current.metrics.observe_labels([a.label for a in answers])
    outputs = [
        {"name": "label", "datatype": "BYTES", "shape": [count],
         "data": [a.label for a in answers]},
        {"name": "probabilities", "datatype": "FP64", "shape": [count, len(bundle.classes)],
         "data": [p for a in answers for p in msgspec.structs.astuple(a.probabilities)]},
    ]
    if bundle.task == "binary":
        outputs.append({"name": f"{schema.target}_probability", "datatype": "FP64",
                        "shape": [count], "data": [a.probabilities.p1 for a in answers]})
    warnings = [f"unknown input {name!r} ignored" for name in unknown] + \
        [f"records[{i}]: {w}" for i, ws in sorted(validated.warnings.items()) for w in ws]
    answer = {"model_name": name, "model_version": bundle.version,
              "id": body.get("id") if isinstance(body.get("id"), str) else
              request.environ.get("tabserve.request_id"),
              "outputs": outputs}
    if warnings:
        answer["parameters"] = {"warnings": warnings}
    return json_response(answer)


@v2.errorhandler(LookupError)
def _not_found(err: LookupError) -> Response:
    return _error(str(err.args[0]), 404)

