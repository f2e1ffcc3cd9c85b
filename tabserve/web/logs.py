"""One JSON line per request, written by gunicorn's access logger (`logger_class` in
gunicorn.conf.py) or, on AWS Lambda, by `aws_lambda`, with what the app left in the WSGI
environ: records, model version and request id. A probe that succeeds (`/health`, `/ready`,
the v2 health paths and their gRPC calls) is logged only at LOG_LEVEL=debug: Docker's health check and
Kubernetes' probes would otherwise write a line every few seconds each."""

from __future__ import annotations

import json
import logging
import traceback
from datetime import datetime, timezone

from gunicorn.glogging import Logger

PROBES = frozenset({"/health", "/ready", "/v2/health/live", "/v2/health/ready",
                    "/inference.GRPCInferenceService/ServerLive",
                    "/inference.GRPCInferenceService/ServerReady"})


def access_record(environ: dict, status: int, seconds: float, debug: bool) -> dict | None:
    """The log line of one request, from what the app left in the WSGI environ; None for a
    probe that succeeded, unless at debug level. Written by gunicorn's access logger, and by
    `aws_lambda` where there is no gunicorn."""
    path = environ.get("PATH_INFO")
    if path in PROBES and status == 200 and not debug:
        return None
    return {
        "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "method": environ.get("REQUEST_METHOD"),
        "path": path,
        "status": status,
        "duration_ms": round(seconds * 1000, 3),
        "records": environ.get("tabserve.records"),
        "model_version": environ.get("tabserve.model_version"),
        "request_id": environ.get("tabserve.request_id"),
        "key_id": environ.get("tabserve.key_id"),  # which API key, never the key
        "remote_addr": environ.get("REMOTE_ADDR"),
    }


def status_of(resp) -> int:
    """The status gunicorn answered with: its response's `status_code`, which gunicorn's own
    error answers (a request it could not parse) never set, else read from `status`."""
    code = getattr(resp, "status_code", None)
    if isinstance(code, int):
        return code
    text = str(getattr(resp, "status", "") or "")[:3]
    return int(text) if text.isdigit() else 0


class JsonAccessLogger(Logger):
    """gunicorn's logger, with access lines as JSON objects instead of Apache's format. It
    takes whatever gunicorn hands it: an exception here would kill the worker."""

    def access(self, resp, req, environ, request_time) -> None:
        if not self.access_log_enabled:
            return
        try:
            line = access_record(environ or {}, status_of(resp),
                                 request_time.total_seconds(),
                                 self.error_log.isEnabledFor(logging.DEBUG))
            if line is not None:
                self.access_log.info(json.dumps(line, default=str))
        except Exception:  # noqa: BLE001 - a log line must never fail a request
            self.error(traceback.format_exc())
