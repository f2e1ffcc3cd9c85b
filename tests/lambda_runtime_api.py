"""A stand-in for AWS Lambda's Runtime API (version 2018-06-01), the HTTP protocol between
Lambda and a function's runtime: the runtime asks `GET /runtime/invocation/next` for an event
(the call waits until there is one), and posts the handler's answer to
`/runtime/invocation/<request id>/response`, or its failure to `.../error`, or a failed init
to `/runtime/init/error`. AWS's Runtime Interface Emulator does the same for real but cannot
be obtained here; this double follows the documented paths, headers and status codes, and
records when each step happened, for the tests and bench/lambda.py.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/2018-06-01/runtime"
RESPONSE_LIMIT_BYTES = 6 * 1024 * 1024  # a synchronous invocation's response payload
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:tabserve"


@dataclass
class Invocation:
    """One event, and what the runtime did with it."""

    event: dict
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    delivered_at: float | None = None  # when the runtime received it (time.perf_counter)
    answered_at: float | None = None
    kind: str | None = None  # "response" or "error"
    payload: dict | None = None
    error_type: str | None = None  # the Lambda-Runtime-Function-Error-Type header
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def seconds(self) -> float:
        """From the event handed over to the answer posted: the handler's time."""
        return self.answered_at - self.delivered_at


class RuntimeApi:
    """The Runtime API on 127.0.0.1 (or `host`), on a free port; `address` is what
    AWS_LAMBDA_RUNTIME_API holds."""

    def __init__(self, host: str = "127.0.0.1", timeout_seconds: int = 30):
        self.timeout_seconds = timeout_seconds
        self.pending: queue.Queue[Invocation] = queue.Queue()
        self.invocations: dict[str, Invocation] = {}
        self.first_next_at: float | None = None  # the runtime's init is done
        self.init_error: dict | None = None
        self.init_error_type: str | None = None
        self.init_failed = threading.Event()
        self.init_done = threading.Event()
        self.server = ThreadingHTTPServer((host, 0), self._handler_class())
        self.server.daemon_threads = True  # a runtime waiting on /next never blocks shutdown
        self.address = f"{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RuntimeApi:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def invoke(self, event: dict, seconds: float = 60) -> Invocation:
        """Hand `event` to the runtime and wait for its answer."""
        invocation = Invocation(event)
        self.invocations[invocation.request_id] = invocation
        self.pending.put(invocation)
        if not invocation.done.wait(seconds):
            raise AssertionError(f"the runtime did not answer within {seconds} s")
        return invocation

    def _handler_class(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # the runtime client keeps its connection open
            # headers and body leave in separate writes: with Nagle's algorithm the second
            # waits for the client's delayed ACK, 40 ms that Lambda's own API does not add
            disable_nagle_algorithm = True

            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path != f"{PREFIX}/invocation/next":
                    return self._send(404, {"errorMessage": "not found", "errorType": "NotFound"})
                if api.first_next_at is None:
                    api.first_next_at = time.perf_counter()
                    api.init_done.set()
                invocation = api.pending.get()  # waits, as Lambda's does, for an event
                invocation.delivered_at = time.perf_counter()
                deadline = int(time.time() * 1000) + api.timeout_seconds * 1000
                self._send(200, invocation.event, {
                    "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                    "Lambda-Runtime-Deadline-Ms": str(deadline),
                    "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
                    "Lambda-Runtime-Trace-Id": f"Root=1-{uuid.uuid4().hex[:8]}-"
                                               f"{uuid.uuid4().hex[:24]};Sampled=0",
                })

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
                if self.path == f"{PREFIX}/init/error":
                    api.init_error, api.init_error_type = json.loads(raw or b"{}"), error_type
                    api.init_failed.set()
                    return self._send(202, {"status": "OK"})
                parts = self.path[len(PREFIX):].strip("/").split("/")
                if len(parts) != 3 or parts[0] != "invocation" or \
                        parts[2] not in ("response", "error"):
                    return self._send(404, {"errorMessage": "not found", "errorType": "NotFound"})
                invocation = api.invocations.get(parts[1])
                if invocation is None or invocation.done.is_set():
                    return self._send(400, {"errorMessage": "unknown or answered request id",
                                            "errorType": "InvalidRequestID"})
                if parts[2] == "response" and len(raw) > RESPONSE_LIMIT_BYTES:
                    self._send(413, {"errorMessage": "response payload too large",
                                     "errorType": "RequestEntityTooLarge"})
                    invocation.kind, invocation.payload = "error", {
                        "errorType": "Function.ResponseSizeTooLarge"}
                else:
                    self._send(202, {"status": "OK"})
                    invocation.kind, invocation.payload = parts[2], json.loads(raw or b"{}")
                    invocation.error_type = error_type
                invocation.answered_at = time.perf_counter()
                invocation.done.set()

        return Handler
