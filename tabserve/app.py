"""The Flask app: routes, request parsing, and errors as RFC 9457 problem+json."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from tabserve.bundle import ModelBundle
from tabserve.config import Settings
from tabserve.predicting import Predictor
from tabserve.schema import Problem, RequestError

log = logging.getLogger(__name__)
api = Blueprint("api", __name__)

MAX_LISTED_PROBLEMS = 100  # a whole batch of bad records would otherwise answer megabytes
_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number",
               bool: "boolean", type(None): "null"}


def json_response(body: Any, status: int = 200, mimetype: str = "application/json") -> Response:
    return Response(orjson.dumps(body), status=status, mimetype=mimetype)


def problem_response(status: int, title: str, detail: str,
                     problems: list[Problem] | None = None) -> Response:
    """An RFC 9457 problem document; `errors` names each field at fault."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status,
                            "detail": detail}
    if problems is not None:
        body["errors"] = [p.as_json() for p in problems[:MAX_LISTED_PROBLEMS]]
        if len(problems) > MAX_LISTED_PROBLEMS:
            body["errors_total"] = len(problems)
    return json_response(body, status, "application/problem+json")


def _predictor() -> Predictor:
    return current_app.extensions["predictor"]


def _settings() -> Settings:
    return current_app.extensions["settings"]


def parse_records() -> tuple[list[dict[str, Any]], bool]:
    """The request's records, and whether the body was a list (a batch) or one object."""
    if request.mimetype != "application/json" and not request.mimetype.endswith("+json"):
        raise RequestError([Problem(None, "send the body as JSON with "
                                          "'Content-Type: application/json', got "
                                          f"{request.mimetype or 'no content type'!r}")],
                           status=415, title="Unsupported Media Type")
    try:
        body = orjson.loads(request.get_data(cache=False))
    except orjson.JSONDecodeError as err:
        raise RequestError([Problem(None, f"the body is not valid JSON: {err}")],
                           status=400, title="Bad Request") from None
    if isinstance(body, dict):
        return [body], False
    if not isinstance(body, list):
        raise RequestError([Problem(None, "expected a JSON object (one record) or a list of "
                                          f"objects (a batch), got {_JSON_TYPES[type(body)]}")],
                           status=400, title="Bad Request")
    if not body:
        raise RequestError([Problem(None, "the batch is empty: send at least one record")],
                           status=400, title="Bad Request")
    limit = _settings().max_batch_records
    if len(body) > limit:
        raise RequestError([Problem(None, f"the batch has {len(body)} records, more than the "
                                          f"limit of {limit} (MAX_BATCH_RECORDS)")],
                           status=413, title="Content Too Large")
    not_objects = [Problem(None, f"expected a JSON object, got {_JSON_TYPES[type(item)]}", i)
                   for i, item in enumerate(body) if not isinstance(item, dict)]
    if not_objects:
        raise RequestError(not_objects, status=400, title="Bad Request")
    return body, True


@api.post("/predict")
def predict() -> Response:
    records, is_batch = parse_records()
    answers = _predictor().predict(records, indexed=is_batch)
    return json_response(answers if is_batch else answers[0])


@api.get("/")
def index() -> Response:
    bundle = _predictor().bundle
    return json_response({
        "service": "tabserve: a tabular classifier behind a JSON API",
        "model_version": bundle.version,
        "target": bundle.schema.target,
        "endpoints": {"POST /predict": "one record (object) or a batch (list of objects)",
                      "GET /model": "schema, classes, threshold, metrics, metadata",
                      "GET /health": "alive", "GET /ready": "model loaded and answering"},
        "example": {"POST /predict": bundle.example},
    })


@api.get("/health")
def health() -> Response:
    return json_response({"status": "ok"})


@api.get("/ready")
def ready() -> Response:
    predictor = _predictor()
    predictor.predict([predictor.bundle.example], indexed=False)  # answers, or raises to a 500
    return json_response({"status": "ready", "model_version": predictor.bundle.version})


@api.get("/model")
def model() -> Response:
    return json_response(_predictor().bundle.describe())


def _request_error(err: RequestError) -> Response:
    title = err.title or "Unprocessable Content"
    shown = "; ".join(str(p) for p in err.problems[:3])
    more = len(err.problems) - 3
    detail = shown if more <= 0 else f"{shown}; and {more} more problems (see 'errors')"
    return problem_response(err.status, title, detail, err.problems)


def _http_error(err: HTTPException) -> Response:
    detail = err.description or err.name
    if err.code == 413:
        detail = (f"the body is larger than the limit of {_settings().max_body_bytes} bytes "
                  "(MAX_BODY_BYTES)")
    response = problem_response(err.code or 500, err.name, detail)
    if err.code == 405 and err.valid_methods:
        response.headers["Allow"] = ", ".join(err.valid_methods)
    return response


def _unexpected_error(err: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=err)
    return problem_response(500, "Internal Server Error",
                            "the server failed to answer; the error is in its log")


def create_app(bundle: ModelBundle | None = None, settings: Settings | None = None) -> Flask:
    """The app for one bundle: loaded from `settings.model_path` unless given."""
    settings = settings or Settings.from_env()
    bundle = bundle or ModelBundle.load(settings.model_path)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["settings"] = settings
    app.extensions["predictor"] = Predictor(bundle)
    app.register_blueprint(api)
    app.register_error_handler(RequestError, _request_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    return app
