"""The app on AWS Lambda: `apig-wsgi` turns each event of API Gateway (REST API, payload 1.0;
HTTP API, payload 2.0), a Function URL (2.0) or an Application Load Balancer into a WSGI
request for the same Flask app gunicorn serves, and its answer back into the event's response.

What differs from gunicorn (docs/lambda.md): the request id is Lambda's own; each request's
JSON log line goes to stdout (CloudWatch), written here since there is no gunicorn; bodies and
answers stop at Lambda's 6 MB; metrics count this execution environment only.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

from apig_wsgi import make_lambda_handler

from tabserve.model.bundle import ModelLoadError
from tabserve.web.app import create_app
from tabserve.settings import ConfigError, environment, logs_debug
from tabserve.web.config import Settings
from tabserve.web.logs import access_record
from tabserve.web.middleware import REQUEST_ID
from tabserve.web.responses import problem_response

# a synchronous invocation's request and response payloads are each at most 6 MB
PAYLOAD_LIMIT_BYTES = 6 * 1024 * 1024
# room in the response payload for its status and headers, around the body
RESPONSE_ENVELOPE_BYTES = 16 * 1024


class InitError(RuntimeError):
    """The service cannot start; Lambda reports it as the init error of the function."""


def answer_fits(body: bytes) -> bool:
    """Whether a response body fits Lambda's response payload, where it travels as a JSON
    string (quotes escaped). Bodies far below the limit are not measured."""
    limit = PAYLOAD_LIMIT_BYTES - RESPONSE_ENVELOPE_BYTES
    if len(body) * 2 < limit:
        return True
    return len(json.dumps(body.decode("utf-8", "replace"))) <= limit


class LambdaRequests:
    """WSGI middleware around the app: Lambda's request id for the headers and the log, an
    answer too large for Lambda refused clearly (Lambda would fail the invocation and the
    caller get a bare 502), and one JSON log line per request on stdout."""

    def __init__(self, wsgi_app, debug: bool = False):
        self.wsgi_app = wsgi_app
        self.debug = debug

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        context = environ.get("apig_wsgi.context")
        if getattr(context, "aws_request_id", None):
            environ[REQUEST_ID] = context.aws_request_id
        answer: dict[str, Any] = {}

        def start(status: str, headers: list, exc_info=None):
            answer.update(status=status, headers=headers)
            return lambda data: None  # the app returns its body; nothing writes

        body = b"".join(self.wsgi_app(environ, start))
        if not answer_fits(body):
            problem = problem_response(
                413, "Content Too Large",
                f"the answer ({len(body)} bytes) is larger than Lambda's {PAYLOAD_LIMIT_BYTES} "
                "byte response limit: send fewer records per request")
            body = problem.get_data()
            answer.update(status=problem.status, headers=[
                (name, value) for name, value in answer["headers"]
                if name.lower() not in ("content-type", "content-length")
            ] + [("Content-Type", problem.content_type), ("Content-Length", str(len(body)))])
        start_response(answer["status"], answer["headers"])
        line = access_record(environ, int(answer["status"][:3]),
                             time.perf_counter() - started, self.debug)
        if line is not None:
            print(json.dumps(line), file=sys.stdout, flush=True)
        return [body]


def lambda_handler_from_env(env: dict[str, str] | None = None) -> Callable[[dict, Any], dict]:
    """The Lambda handler serving the model at MODEL_PATH, with the service's settings from
    the environment and MAX_BODY_BYTES at Lambda's payload limit unless set. `InitError` with
    one line when the model or a setting cannot be used."""
    env = environment() if env is None else env
    try:
        settings = Settings.from_env({"MAX_BODY_BYTES": str(PAYLOAD_LIMIT_BYTES), **env})
        app = create_app(settings=settings)
    except (ModelLoadError, ConfigError) as err:
        raise InitError(str(err)) from None
    debug = logs_debug(env)
    return make_lambda_handler(LambdaRequests(app, debug))
