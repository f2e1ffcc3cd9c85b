"""Reference for batches: a bare WSGI app that only parses the body with the stdlib's json."""

import json

ANSWER = b'{"parsed": true}'


def app(environ, start_response):
    if environ["PATH_INFO"] == "/predict":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        json.loads(environ["wsgi.input"].read(length))
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(ANSWER)))])
    return [ANSWER]
