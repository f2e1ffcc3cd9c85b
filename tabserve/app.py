"""The Flask app: routes, request parsing, and errors as RFC 9457 problem+json."""

from __future__ import annotations

import io
import logging
import os
import re
import time
from typing import Any

import msgspec
from flask import Blueprint, Flask, Request, Response, current_app, render_template, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.routing import Rule

from tabserve.bundle import ModelBundle
from tabserve.config import Settings
from tabserve.decoding import Body, BodyDecoder
from tabserve.explaining import Explainer, ExplanationsUnavailable
from tabserve.inference_protocol import v2
from tabserve.metrics import Metrics
from tabserve.openapi import openapi_document
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
    """The raw body of a JSON request; 415 for another content type, 413 when too large.

    Read from the WSGI environ directly: werkzeug's parsed headers and `get_data()` cost more
    than a prediction of one record."""
    environ = request.environ
    if environ.get("CONTENT_TYPE") != "application/json" and request.mimetype != \
            "application/json" and not request.mimetype.endswith("+json"):
        raise RequestError([Problem(None, "send the body as JSON with "
                                          "'Content-Type: application/json', got "
                                          f"{request.mimetype or 'no content type'!r}")],
                           status=415, title="Unsupported Media Type")
    limit = _settings().max_body_bytes
    length = request.content_length if "CONTENT_LENGTH" in environ else None
    if length is not None and length > limit:
        raise RequestEntityTooLarge()
    body = environ["wsgi.input"].read(limit + 1 if length is None else length)
    if len(body) > limit:  # a chunked body, which declares no length
        raise RequestEntityTooLarge()
    return body


def _predictions(extensions: dict, body: Body, environ: dict) -> bytes:
    """The /predict answer for a parsed body (JSON), counted for the metrics and the log."""
    answers = extensions["predictor"].predict_body(body)
    environ["tabserve.records"] = body.count
    extensions["metrics"].observe_labels([a.label for a in answers])
    return msgspec.json.encode(answers if body.is_batch else answers[0])


@api.post("/predict")
def predict() -> Response:
    """Bodies the plain path does not take, and errors (see `PlainPredictions`)."""
    extensions = current_app.extensions
    body = extensions["decoder"].decode(_json_body())
    return Response(_predictions(extensions, body, request.environ), mimetype="application/json")


@api.post("/explain")
def explain() -> Response:
    body = current_app.extensions["decoder"].decode(_json_body())
    columns, warnings = _predictor().columns(body)
    try:
        explanations = current_app.extensions["explainer"].explain(columns, warnings)
    except ExplanationsUnavailable as err:
        return problem_response(501, "Not Implemented", str(err))
    request.environ["tabserve.records"] = body.count
    current_app.extensions["metrics"].observe_labels([e["label"] for e in explanations])
    return json_response(explanations if body.is_batch else explanations[0])


@api.get("/openapi.json")
def openapi() -> Response:
    return json_response(current_app.extensions["openapi"])


@api.get("/docs")
def docs() -> Response:
    return Response(render_template("docs.html", title=current_app.extensions["openapi"]["info"]
                                    ["title"]), mimetype="text/html")


@api.get("/metrics")
def metrics() -> Response:
    exposition = current_app.extensions["metrics"]
    return Response(exposition.exposition(), mimetype=exposition.content_type)


@api.get("/")
def index() -> Response:
    bundle = _predictor().bundle
    return json_response({
        "service": "tabserve: a tabular classifier behind a JSON API",
        "model_version": bundle.version,
        "target": bundle.schema.target,
        "endpoints": {"POST /predict": "one record (object) or a batch (list of objects)",
                      "POST /explain": "each field's contribution to each prediction",
                      "GET /docs": "a page to try the model in a browser",
                      "GET /openapi.json": "the OpenAPI 3.1 document of this API",
                      "GET /model": "schema, classes, threshold, metrics, metadata",
                      "GET /metrics": "Prometheus metrics",
                      "GET /v2/models/" + _model_name(): "Open Inference Protocol v2",
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


def _model_name() -> str:
    return _settings().model_name or _predictor().bundle.schema.target


def _request_error(err: RequestError) -> Response:
    current_app.extensions["metrics"].observe_problems([p.field for p in err.problems])
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


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# answers are per request and never for framing; the /docs page runs only its own inline code
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
    ("Content-Security-Policy", "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                                "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"),
)


class RequestAccounting:
    """WSGI middleware around the Flask app: a request id (from `X-Request-ID` when it is
    sane, generated otherwise) and the model version in every response's headers and in the
    environ for the access log; request counts and latency for /metrics. As middleware it
    costs a fraction of Flask's before/after-request hooks."""

    def __init__(self, wsgi_app, metrics: Metrics, model_version: str):
        self.wsgi_app = wsgi_app
        self.metrics = metrics
        self.model_version = model_version

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        given = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = given if _REQUEST_ID.fullmatch(given) else os.urandom(16).hex()
        environ["tabserve.request_id"] = request_id
        environ["tabserve.model_version"] = self.model_version
        extra = [("X-Request-ID", request_id), ("X-Model-Version", self.model_version),
                 *SECURITY_HEADERS]
        status_code = 500

        def start(status: str, headers: list, exc_info=None):
            nonlocal status_code
            status_code = int(status[:3])
            return start_response(status, headers + extra, exc_info)

        try:
            return self.wsgi_app(environ, start)
        finally:
            self.metrics.observe_request(environ.get("tabserve.endpoint", "(unmatched)"),
                                         environ.get("REQUEST_METHOD", ""), status_code,
                                         time.perf_counter() - started)


class PlainPredictions:
    """WSGI middleware that answers POST /predict itself when the body takes the plain path
    (`BodyDecoder.decode_plain`: every record valid as it stands). Such a request cannot fail
    in a way the Flask error handlers would format, and skipping Flask's request context,
    routing and response objects saves more than the prediction of one record costs. Anything
    else (another content type, no length, a body the plain path refuses, an unexpected error)
    goes on to the Flask route, with the body put back to be read again."""

    def __init__(self, wsgi_app, extensions: dict):
        self.wsgi_app = wsgi_app
        self.extensions = extensions  # the Flask app's: `install_bundle` swaps the model there

    def __call__(self, environ, start_response):
        length = environ.get("CONTENT_LENGTH", "")
        if (environ["PATH_INFO"] != "/predict" or environ["REQUEST_METHOD"] != "POST"
                or environ.get("CONTENT_TYPE") != "application/json" or not length.isdigit()
                or int(length) > self.extensions["settings"].max_body_bytes):
            return self.wsgi_app(environ, start_response)
        raw = environ["wsgi.input"].read(int(length))
        try:
            body = self.extensions["decoder"].decode_plain(raw)
            answer = None if body is None else _predictions(self.extensions, body, environ)
        except Exception:  # noqa: BLE001 - the Flask route meets it again and answers a 500
            answer = None
        if answer is None:
            environ["wsgi.input"] = io.BytesIO(raw)
            return self.wsgi_app(environ, start_response)
        environ["tabserve.endpoint"] = "/predict"
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(answer)))])
        return [answer]


class EndpointRequest(Request):
    """Flask's request, leaving the matched route's pattern in the environ for the metrics
    (a label per route, not per path: /v2/models/<name> stays one series)."""

    @property
    def url_rule(self) -> Rule | None:
        return self.__dict__.get("_url_rule")

    @url_rule.setter
    def url_rule(self, rule: Rule | None) -> None:
        self.__dict__["_url_rule"] = rule
        if rule is not None:
            self.environ["tabserve.endpoint"] = rule.rule


def create_app(bundle: ModelBundle | None = None, settings: Settings | None = None) -> Flask:
    """The app for one bundle: loaded from `settings.model_path` unless given."""
    settings = settings or Settings.from_env()
    bundle = bundle or ModelBundle.load(settings.model_path)
    app = Flask(__name__)
    app.request_class = EndpointRequest
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["settings"] = settings
    app.extensions["metrics"] = Metrics()
    app.wsgi_app = RequestAccounting(PlainPredictions(app.wsgi_app, app.extensions),
                                     app.extensions["metrics"], bundle.version)
    install_bundle(app, bundle)
    app.register_blueprint(api)
    app.register_blueprint(v2)
    app.register_error_handler(RequestError, _request_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    return app


def install_bundle(app: Flask, bundle: ModelBundle) -> None:
    """Make `bundle` the model every route answers with."""
    settings: Settings = app.extensions["settings"]
    predictor = Predictor(bundle)
    app.extensions.update(
        predictor=predictor,
        decoder=BodyDecoder(bundle.schema, settings.max_batch_records),
        explainer=Explainer(predictor),
        openapi=openapi_document(bundle, max_batch=settings.max_batch_records,
                                 model_name=settings.model_name or bundle.schema.target))
    app.wsgi_app.model_version = bundle.version


def reload_model(app: Flask) -> str:
    """Load the model file again (gunicorn's SIGHUP); its version. On `ModelLoadError` the
    current model stays: a bad file never stops a running service."""
    bundle = ModelBundle.load(app.extensions["settings"].model_path)
    install_bundle(app, bundle)
    return bundle.version
