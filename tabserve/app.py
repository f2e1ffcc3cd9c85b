"""The Flask app: routes, request parsing, and errors as RFC 9457 problem+json."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from tabserve.bundle import ModelBundle
from tabserve.config import Settings
from tabserve.decoding import BodyDecoder
from tabserve.predicting import Predictor
from tabserve.schema import Problem, RequestError

log = logging.getLogger(__name__)
api = Blueprint("api", __name__)

MAX_LISTED_PROBLEMS = 100  # a whole batch of bad records would otherwise answer megabytes


def json_response(body: Any, status: int = 200, mimetype: str = "application/json") -> Response:
    return Response(msgspec.json.encode(body), status=status, mimetype=mimetype)


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


def _json_body() -> bytes:
    """The raw body of a JSON request; 415 for another content type, 413 when too large."""
    content_type = request.environ.get("CONTENT_TYPE", "")
    if content_type != "application/json" and request.mimetype != "application/json" \
            and not request.mimetype.endswith("+json"):
        raise RequestError([Problem(None, "send the body as JSON with "
                                          "'Content-Type: application/json', got "
                                          f"{request.mimetype or 'no content type'!r}")],
                           status=415, title="Unsupported Media Type")
    # read the WSGI stream directly: werkzeug's get_data() costs more than a prediction
    limit = _settings().max_body_bytes
    length = request.content_length
    if length is not None and length > limit:
        raise RequestEntityTooLarge()
    body = request.environ["wsgi.input"].read(limit + 1 if length is None else length)
    if len(body) > limit:  # a chunked body, which declares no length
        raise RequestEntityTooLarge()
    return body


@api.post("/predict")
def predict() -> Response:
    body = current_app.extensions["decoder"].decode(_json_body())
    answers = _predictor().predict_body(body)
    return json_response(answers if body.is_batch else answers[0])


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
    app.extensions["decoder"] = BodyDecoder(bundle.schema, settings.max_batch_records)
    app.register_blueprint(api)
    app.register_error_handler(RequestError, _request_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    return app
