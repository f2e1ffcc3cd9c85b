"""The Flask app: the service's parts, its routes, and errors as RFC 9457 problem+json."""

from __future__ import annotations

import logging

from flask import Blueprint, Flask, Response, render_template, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from tabserve.batch.csv_text import CSV_TYPES, score_file
from tabserve.model.bundle import ModelBundle, ModelLoadError, load_trusted
from tabserve.model.fitted import ModelFileError
from tabserve.model.validation import Problem, RequestError
from tabserve.serving.drift import drift_report
from tabserve.serving.explaining import ExplanationsUnavailable
from tabserve.settings import environment
from tabserve.web.auth import ApiKeys, KeyGate
from tabserve.web.config import Settings
from tabserve.web.open_inference import PlainInference, v2
from tabserve.web.openapi import endpoint_index
from tabserve.web.middleware import (PLAIN_REFUSED, EndpointRequest, PlainPredictions,
                                     RequestAccounting, predictions)
from tabserve.web.responses import (INTERNAL_ERROR, error_response, is_open_inference,
                                    json_response, problem_response, wants_page)
from tabserve.web.service import Service, service

log = logging.getLogger(__name__)
api = Blueprint("api", __name__)


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
    return _limited_body()


def _limited_body() -> bytes:
    """The raw body; 413 past MAX_BODY_BYTES, whether or not it declares its length."""
    environ = request.environ
    limit = service().settings.max_body_bytes
    length = request.content_length if "CONTENT_LENGTH" in environ else None
    if length is not None and length > limit:
        raise RequestEntityTooLarge()
    body = environ["wsgi.input"].read(limit + 1 if length is None else length)
    if len(body) > limit:  # a chunked body, which declares no length
        raise RequestEntityTooLarge()
    return body


@api.post("/predict")
def predict() -> Response:
    """Bodies the plain path did not take, and errors (see `middleware.PlainPredictions`)."""
    body = service().decoder.decode(_json_body(), request.environ.get(PLAIN_REFUSED, False))
    return Response(predictions(service(), body, request.environ), mimetype="application/json")


@api.post("/explain")
def explain() -> Response:
    current = service()
    body = current.decoder.decode(_json_body())
    columns, warnings = current.answers.columns(body)
    try:
        explanations = current.explainer.explain(columns, warnings)
    except ExplanationsUnavailable as err:
        return problem_response(501, "Not Implemented", str(err))
    request.environ["tabserve.records"] = body.count
    current.metrics.observe_labels([e["label"] for e in explanations])
    return json_response(explanations if body.is_batch else explanations[0])


@api.post("/score")
def score() -> Response:
    """A small CSV file scored as score.py scores one (see `batch.csv_text`)."""
    if request.mimetype not in CSV_TYPES:
        raise RequestError([Problem(None, "send the file as CSV with 'Content-Type: text/csv', "
                                          f"got {request.mimetype or 'no content type'!r}")],
                           status=415, title="Unsupported Media Type")
    current = service()
    scored = score_file(current.file_scorer(), _limited_body(), current.settings.max_batch_records)
    request.environ["tabserve.records"] = scored.rows
    return json_response({"model_version": current.bundle.version, **vars(scored)})


@api.get("/openapi.json")
def openapi() -> Response:
    return json_response(service().openapi)


@api.get("/docs")
def docs() -> Response:
    current = service()
    # with keys on the page is open to all: it names the model only once the key is given
    title = "tabserve" if current.keys is not None else current.openapi["info"]["title"]
    return Response(render_template("docs.html", title=title), mimetype="text/html")


@api.get("/metrics")
def metrics() -> Response:
    exposition = service().metrics
    # content_type, not mimetype: the exposition's type already names its charset
    return Response(exposition.exposition(), content_type=exposition.content_type)


@api.get("/drift")
def drift() -> Response:
    """How far the records served since the start (or the last reset) are from the training
    data, over every worker (see `serving.drift`)."""
    current = service()
    unavailable = current.drift_unavailable()
    if unavailable:
        return problem_response(501, "Not Implemented", unavailable)
    store = current.drift.store
    report = drift_report(current.bundle.profile, store.totals() - store.baseline(),
                          current.settings.drift_min_records, store.unseen_since_reset())
    return json_response({"model_version": current.bundle.version, **report})


@api.post("/drift/reset")
def drift_reset() -> Response:
    """Start the drift report afresh (SIGHUP does too); Prometheus' counters keep counting."""
    current = service()
    unavailable = current.drift_unavailable()
    if unavailable:
        return problem_response(501, "Not Implemented", unavailable)
    return json_response({"status": "reset", "records_before": current.drift.store.reset()})


@api.get("/")
def index() -> Response:
    """The model's page for a browser (`templates/page.html`), the JSON index for clients."""
    current = service()
    if wants_page(request.environ):
        # with keys on the page is open to all: it names the model only once the key is given
        title = "tabserve" if current.keys is not None else current.openapi["info"]["title"]
        return Response(render_template("page.html", title=title), mimetype="text/html",
                        headers={"Vary": "Accept"})
    bundle = current.bundle
    response = json_response({
        "service": "tabserve: a tabular classifier behind a JSON API",
        "model_version": bundle.version,
        "target": bundle.schema.target,
        "endpoints": endpoint_index(current.model_name, bundle.version),
        "example": {"POST /predict": bundle.example},
    })
    response.headers["Vary"] = "Accept"  # the same URL answers a browser with the page
    return response


@api.get("/health")
def health() -> Response:
    return json_response({"status": "ok"})


@api.get("/ready")
def ready() -> Response:
    current = service()
    current.answers.for_records([current.bundle.example], indexed=False)  # answers, or a 500
    return json_response({"status": "ready", "model_version": current.bundle.version})


@api.get("/model")
def model() -> Response:
    return json_response(service().bundle.describe())


def _request_error(err: RequestError) -> Response:
    """A client mistake, counted by field, in the shape of the protocol it came by: the Open
    Inference Protocol's `{"error": ...}` with 400, problem+json elsewhere."""
    service().metrics.observe_problems([p.field for p in err.problems])
    if is_open_inference(request.path):
        return error_response("; ".join(str(p) for p in err.problems[:20]))
    title = err.title or "Unprocessable Content"
    shown = "; ".join(str(p) for p in err.problems[:3])
    more = len(err.problems) - 3
    detail = shown if more <= 0 else f"{shown}; and {more} more problems (see 'errors')"
    return problem_response(err.status, title, detail, err.problems)


def _http_error(err: HTTPException) -> Response:
    detail = err.description or err.name
    if err.code == 413:
        detail = (f"the body is larger than the limit of {service().settings.max_body_bytes} "
                  "bytes (MAX_BODY_BYTES)")
        if request.path == "/score":
            detail += ": score larger files with score.py"
    if err.code == 405 and err.valid_methods:
        allowed = " or ".join(m for m in err.valid_methods if m not in ("HEAD", "OPTIONS"))
        detail = f"{request.method} is not allowed on {request.path}: use {allowed}" + \
            (" with a JSON body" if allowed == "POST" else "")
    if is_open_inference(request.path):
        response = error_response(detail, err.code or 500)
    else:
        response = problem_response(err.code or 500, err.name, detail)
    if err.code == 405 and err.valid_methods:
        response.headers["Allow"] = ", ".join(err.valid_methods)
    return response


def _unreadable_body(err: Exception) -> bool:
    """Whether `err` is the server's refusal of a body's framing, met while the app reads it
    (a chunked body whose chunk sizes lie): the client's fault, not a bug."""
    return type(err).__module__.startswith("gunicorn.http")


def _unexpected_error(err: Exception) -> Response:
    if _unreadable_body(err):
        detail = f"the body cannot be read: {str(err)[:200] or type(err).__name__}"
        if is_open_inference(request.path):
            return error_response(detail, 400)
        return problem_response(400, "Bad Request", detail)
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=err)
    if is_open_inference(request.path):
        return error_response(INTERNAL_ERROR[2], 500)
    return problem_response(*INTERNAL_ERROR)


def _install(current: Service, bundle: ModelBundle | None) -> str:
    """Serve `bundle`, or the model file's; its version. `ModelLoadError`, in one line, for a
    file that cannot be loaded or whose model cannot be made ready (the current model, if any,
    stays)."""
    path = current.settings.model_path
    bundle = bundle or load_trusted(path, current.settings.trust)
    try:
        current.install(bundle)
    except ModelFileError as err:
        raise ModelLoadError(f"model file {path} cannot be served: {err}") from None
    return bundle.version


def create_app(bundle: ModelBundle | None = None, settings: Settings | None = None) -> Flask:
    """The app for one bundle: loaded from `settings.model_path` unless given."""
    settings = settings or Settings.from_env()
    current = Service(settings)
    _install(current, bundle)
    app = Flask(__name__)
    app.request_class = EndpointRequest
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["tabserve"] = current
    answered = app.wsgi_app
    if "inference_before_flask" not in settings.speedups_off:
        answered = PlainInference(answered, current)
    app.wsgi_app = RequestAccounting(KeyGate(PlainPredictions(answered, current), current),
                                     current)
    app.register_blueprint(api)
    app.register_blueprint(v2)
    app.register_error_handler(RequestError, _request_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    return app


def reload_model(app: Flask) -> str:
    """Load the model file again (gunicorn's SIGHUP); its version. On `ModelLoadError` the
    current model stays: a bad file never stops a running service."""
    return _install(app.extensions["tabserve"], None)


def reset_drift(app: Flask) -> int | None:
    """Start the drift report afresh (gunicorn's SIGHUP); the records it had counted, None
    when drift is not counted."""
    current: Service = app.extensions["tabserve"]
    return None if current.drift is None else current.drift.store.reset()


def reload_keys(app: Flask) -> int | None:
    """Read the API keys again (gunicorn's SIGHUP: a rotated key file); how many there are,
    None when keys are off. `ApiKeyError` keeps the current keys."""
    current: Service = app.extensions["tabserve"]
    if current.keys is None:
        return None  # keys are turned on at start only: the OpenAPI document declares them
    current.keys = ApiKeys.from_env(environment())  # the file named at start, read again
    return None if current.keys is None else len(current.keys.digests)
