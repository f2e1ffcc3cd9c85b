"""The bodies every route answers with: JSON, and RFC 9457 problem+json for errors."""

from __future__ import annotations

from typing import Any

import msgspec
from flask import Response

from tabserve.model.validation import Problem

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


def is_open_inference(path: str) -> bool:
    """Whether a path is the Open Inference Protocol's, whose errors take its shape."""
    return path == "/v2" or path.startswith("/v2/")


def wants_page(environ: dict) -> bool:
    """Whether a GET of / asks for the model's page (a browser: HTML before JSON) rather than
    the JSON index (curl, clients: no Accept, `*/*` or JSON)."""
    from werkzeug.datastructures import MIMEAccept
    from werkzeug.http import parse_accept_header

    if environ.get("REQUEST_METHOD") not in ("GET", "HEAD") or environ.get("PATH_INFO") != "/":
        return False
    accept = parse_accept_header(environ.get("HTTP_ACCEPT"), MIMEAccept)
    return accept.best_match(("application/json", "text/html")) == "text/html"


def error_response(message: str, status: int = 400) -> Response:
    """An error in the Open Inference Protocol's shape, the only one its clients read."""
    return json_response({"error": message}, status)


INTERNAL_ERROR = (500, "Internal Server Error",
                  "the server failed to answer; the error is in its log")
