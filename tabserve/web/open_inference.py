"""The Open Inference Protocol v2 (KServe, Triton, Seldon MLServer) over HTTP, beside /predict:
the routes, and the body in JSON or in the binary tensor extension (a JSON header, then the
tensors' bytes; `Inference-Header-Content-Length` says where the JSON ends), in both
directions. The inference itself is `web.inference`'s, shared with gRPC.

Every answer under /v2 that is an error is `{"error": "..."}`, as the protocol specifies: the
routes' own here, and the app's handlers for invalid values, unknown routes and methods.
"""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import msgspec
from flask import Blueprint, Response, request

from tabserve import __version__
from tabserve.serving.codecs import tensors
from tabserve.web.inference import Inference, check_model, infer
from tabserve.web.middleware import REQUEST_ID
from tabserve.web.responses import INTERNAL_ERROR, error_response, json_response
from tabserve.web.service import Service, service

log = logging.getLogger(__name__)
v2 = Blueprint("v2", __name__, url_prefix="/v2")

HEADER_LENGTH = "Inference-Header-Content-Length"
EXTENSIONS = ["binary_tensor_data"]


@v2.get("")
def server_metadata() -> Response:
    return json_response({"name": "tabserve", "version": __version__,
                          "extensions": EXTENSIONS})


@v2.get("/health/live")
def live() -> Response:
    return json_response({"live": True})


@v2.get("/health/ready")
def ready() -> Response:
    return json_response({"ready": True})


@v2.get("/models/<name>")
@v2.get("/models/<name>/versions/<version>")
def model_metadata(name: str, version: str | None = None) -> Response:
    current = service()
    check_model(current, name, version)
    bundle = current.bundle
    return json_response({
        "name": name, "versions": [bundle.version],
        "platform": f"tabserve/{bundle.metrics.get('chosen')}",
        "inputs": tensors.input_tensors(bundle.schema),
        "outputs": tensors.output_tensors(current.predictor.shape),
        "parameters": {"classes": bundle.classes},
    })


@v2.get("/models/<name>/ready")
@v2.get("/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None = None) -> Response:
    check_model(service(), name, version)
    return json_response({"name": name, "ready": True})


@v2.post("/models/<name>/infer")
@v2.post("/models/<name>/versions/<version>/infer")
def infer_route(name: str, version: str | None = None) -> Response:
    current = service()
    check_model(current, name, version)
    raw = request.get_data(cache=False)
    header_length = request.headers.get(HEADER_LENGTH)
    too_many = current.decoder.too_many_values(_json_part(raw, header_length))
    if too_many:
        return error_response(too_many, 413)
    try:
        answer, headers, records = inference(current, name, raw, header_length,
                                             request.environ.get(REQUEST_ID))
    except ValueError as err:
        return error_response(str(err))
    request.environ["tabserve.records"] = records
    return Response(answer, headers=headers)


def inference(current: Service, name: str, raw: bytes, header_length: str | None,
              request_id: str | None) -> tuple[bytes, list[tuple[str, str]], int]:
    """The answer to an inference request's body, for model `name` (the served one): its
    bytes, its headers and the records scored; `ValueError` saying what is wrong with the
    request (`RequestError` for invalid values), before any scoring."""
    body, inputs = _request_body(raw, header_length, current)
    wanted = body.get("outputs")
    if wanted is not None and (not isinstance(wanted, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in wanted)):
        raise ValueError("'outputs' must be a list of objects with a 'name'")
    answer = infer(current, inputs, [o["name"] for o in wanted or []])
    given_id = body.get("id")
    head = {"model_name": name, "model_version": answer.model_version,
            "id": given_id if isinstance(given_id, str) else request_id}
    if answer.warnings:
        head["parameters"] = {"warnings": answer.warnings}
    encoded, headers = _answer(head, answer, _binary_outputs(body))
    return encoded, headers, answer.records


class PlainInference:
    """Answers POST /v2/models/<served model>/infer itself when the request succeeds, as
    `PlainPredictions` does /predict: Flask's request context, routing and response objects
    cost more than scoring one record. A request that fails (any 4xx) goes on to the Flask
    route with its body put back, which answers it in the protocol's error shape."""

    def __init__(self, wsgi_app, service: Service):
        self.wsgi_app = wsgi_app
        self.service = service

    def __call__(self, environ, start_response):
        current = self.service
        length = environ.get("CONTENT_LENGTH", "")
        if (environ["REQUEST_METHOD"] != "POST" or not length.isdigit()
                or environ["PATH_INFO"] != f"/v2/models/{current.model_name}/infer"
                or int(length) > current.settings.max_body_bytes):
            return self.wsgi_app(environ, start_response)
        raw = environ["wsgi.input"].read(int(length))
        try:
            header_length = environ.get("HTTP_INFERENCE_HEADER_CONTENT_LENGTH")
            if current.decoder.too_many_values(_json_part(raw, header_length)):
                raise ValueError("too many values")
            answer, headers, records = inference(current, current.model_name, raw,
                                                 header_length, environ.get(REQUEST_ID))
        except ValueError:  # the route answers it, in the protocol's shape
            environ["wsgi.input"] = io.BytesIO(raw)
            return self.wsgi_app(environ, start_response)
        except Exception:  # a bug: logged with its cause, answered as the route answers one
            log.exception("unhandled error on POST %s", environ["PATH_INFO"])
            return error_response(INTERNAL_ERROR[2], 500)(environ, start_response)
        environ["tabserve.endpoint"] = "/v2/models/<name>/infer"
        environ["tabserve.records"] = records
        start_response("200 OK", headers)
        return [answer]


def _json_part(raw: bytes, header_length: str | None) -> bytes:
    """The JSON of a body (binary data after it is not JSON, whatever bytes it holds)."""
    return raw[:int(header_length)] if header_length and header_length.isdigit() else raw


def _request_body(raw: bytes, header_length: str | None, current: Service
                  ) -> tuple[dict[str, Any], list[tensors.Tensor]]:
    """The request's JSON, and its input tensors (those sent as binary data with their
    bytes, a JSON request's levels read into codes where it can be)."""
    if header_length is None:
        if tensors.TENSOR_LEVELS not in current.settings.speedups_off:
            typed = tensors.typed_json_request(raw, current.bundle.schema)
            if typed is not None:
                return typed
        body = _json_object(raw)
        return body, tensors.json_inputs(body)
    if not header_length.isdigit() or int(header_length) > len(raw):
        raise ValueError(f"{HEADER_LENGTH} must be the length of the JSON at the start of the "
                         f"body (at most {len(raw)} bytes), got {header_length!r}")
    split = int(header_length)
    body, binary = _json_object(raw[:split]), memoryview(raw)[split:]
    offset, data = 0, {}
    for i, tensor in enumerate(body.get("inputs") if isinstance(body.get("inputs"), list)
                               else []):
        parameters = tensor.get("parameters") if isinstance(tensor, dict) else None
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is None:
            continue
        if type(size) is not int or size < 0 or offset + size > len(binary):
            raise ValueError(f"input {tensors.shown(str(tensor.get('name')))}: binary_data_size "
                             f"{tensors.shown(str(size))} does not fit the "
                             f"{len(binary) - offset} bytes left in the body")
        data[i] = bytes(binary[offset:offset + size])
        offset += size
    if offset != len(binary):
        raise ValueError(f"the body has {len(binary) - offset} bytes after the binary data "
                         "its inputs declare (binary_data_size)")
    return body, tensors.json_inputs(body, data)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as err:
        # Python's reader takes what msgspec refuses and some clients write: NaN, Infinity
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise ValueError(f"the body is not valid JSON: {err}") from None
    except RecursionError:
        raise ValueError("the body is not valid JSON: nested too deeply") from None
    if not isinstance(body, dict):
        raise ValueError("expected an object with a list of 'inputs'")
    return body


def _binary_outputs(body: dict[str, Any]) -> set[str] | bool:
    """The outputs asked for as binary data: all (`binary_data_output` on the request), or
    those named with `binary_data` in their own parameters."""
    parameters = body.get("parameters")
    if isinstance(parameters, dict) and parameters.get("binary_data_output") is True:
        return True
    return {o["name"] for o in body.get("outputs") or []
            if isinstance(o.get("parameters"), dict) and o["parameters"].get("binary_data")}


def _answer(head: dict[str, Any], answer: Inference,
            binary: set[str] | bool) -> tuple[bytes, list[tuple[str, str]]]:
    chunks = []
    outputs = []
    for tensor in answer.outputs:
        if binary is True or tensor.name in binary:
            raw = tensor.raw()
            chunks.append(raw)
            outputs.append({**tensor.metadata(), "parameters": {"binary_data_size": len(raw)}})
        else:
            outputs.append({**tensor.metadata(), "data": tensor.data()})
    encoded = msgspec.json.encode({**head, "outputs": outputs})
    if not chunks:
        return encoded, [("Content-Type", "application/json"),
                         ("Content-Length", str(len(encoded)))]
    whole = b"".join([encoded, *chunks])
    return whole, [("Content-Type", "application/octet-stream"),
                   ("Content-Length", str(len(whole))), (HEADER_LENGTH, str(len(encoded)))]


@v2.errorhandler(LookupError)
def _not_found(err: LookupError) -> Response:
    return error_response(str(err.args[0]), 404)
