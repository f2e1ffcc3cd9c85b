"""WSGI middleware around the Flask app: request accounting, and the plain path of /predict."""

from __future__ import annotations

import io
import logging
import os
import re
import time

import msgspec
from flask import Request
from werkzeug.routing import Rule

from tabserve.serving.decoding import Body
from tabserve.web.responses import INTERNAL_ERROR, problem_response

log = logging.getLogger(__name__)

PLAIN_REFUSED = "tabserve.plain_refused"  # environ key: the plain path has tried this body
REQUEST_ID = "tabserve.request_id"  # environ key: the request's id, for headers and logs
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


def valid_request_id(given: str) -> bool:
    """Whether a client's request id is sane enough to echo and log."""
    return _REQUEST_ID.fullmatch(given) is not None


def predictions(service, body: Body, environ: dict) -> bytes:
    """The /predict answer for a parsed body (JSON), counted for the metrics and the log."""
    answers = service.answers.for_body(body, service.drift)
    environ["tabserve.records"] = body.count
    service.metrics.observe_labels([a.label for a in answers])
    return msgspec.json.encode(answers if body.is_batch else answers[0])


class RequestAccounting:
    """A request id (set by the host, as on AWS Lambda; else from `X-Request-ID` when it is
    sane; else generated) and the model
    version in every response's headers and in the environ for the access log; request counts
    and latency for /metrics. As middleware it costs a fraction of Flask's before/after-request
    hooks."""

    def __init__(self, wsgi_app, service):
        self.wsgi_app = wsgi_app
        self.service = service

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        request_id = environ.get(REQUEST_ID)
        if request_id is None:
            given = environ.get("HTTP_X_REQUEST_ID", "")
            request_id = given if valid_request_id(given) else os.urandom(16).hex()
        model_version = self.service.bundle.version
        environ[REQUEST_ID] = request_id
        environ["tabserve.model_version"] = model_version
        extra = [("X-Request-ID", request_id), ("X-Model-Version", model_version),
                 *SECURITY_HEADERS]
        status_code = 500

        def start(status: str, headers: list, exc_info=None):
            nonlocal status_code
            status_code = int(status[:3])
            return start_response(status, headers + extra, exc_info)

        try:
            return self.wsgi_app(environ, start)
        finally:
            self.service.metrics.observe_request(
                environ.get("tabserve.endpoint", "(unmatched)"), environ.get("REQUEST_METHOD", ""),
                status_code, time.perf_counter() - started)


class PlainPredictions:
    """Answers POST /predict itself when the body takes the plain path
    (`BodyDecoder.decode_plain`: every record valid as it stands). Such a request cannot fail
    in a way the Flask error handlers would format, and skipping Flask's request context,
    routing and response objects saves more than the prediction of one record costs. Any other
    request goes on to the Flask app; a refused body goes with a mark, so the route parses it
    only the general way."""

    def __init__(self, wsgi_app, service):
        self.wsgi_app = wsgi_app
        self.service = service

    def __call__(self, environ, start_response):
        length = environ.get("CONTENT_LENGTH", "")
        if (environ["PATH_INFO"] != "/predict" or environ["REQUEST_METHOD"] != "POST"
                or environ.get("CONTENT_TYPE") != "application/json" or not length.isdigit()
                or int(length) > self.service.settings.max_body_bytes):
            return self.wsgi_app(environ, start_response)
        raw = environ["wsgi.input"].read(int(length))
        body = self.service.decoder.decode_plain(raw)
        if body is None:
            environ["wsgi.input"] = io.BytesIO(raw)
            environ[PLAIN_REFUSED] = True
            return self.wsgi_app(environ, start_response)
        environ["tabserve.endpoint"] = "/predict"
        try:
            answer = predictions(self.service, body, environ)
        except Exception:  # a bug: logged with its cause, answered as Flask answers one
            log.exception("unhandled error on POST /predict")
            return problem_response(*INTERNAL_ERROR)(environ, start_response)
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
