"""One JSON line per request, written by gunicorn's access logger (`logger_class` in
gunicorn.conf.py), with what the app left in the WSGI environ: records, model version and
request id. A probe that succeeds (`/health`, `/ready`, the v2 health paths) is logged only at
LOG_LEVEL=debug: Docker's health check and Kubernetes' probes would otherwise write a line
every few seconds each."""

from __future__ import annotations

import json
import logging
import traceback
from datetime import datetime, timezone

from gunicorn.glogging import Logger

PROBES = frozenset({"/health", "/ready", "/v2/health/live", "/v2/health/ready"})


class JsonAccessLogger(Logger):
    """gunicorn's logger, with access lines as JSON objects instead of Apache's format."""

    def access(self, resp, req, environ, request_time) -> None:
        if not self.access_log_enabled:
            return
        if environ.get("PATH_INFO") in PROBES and resp.status_code == 200 and \
                not self.error_log.isEnabledFor(logging.DEBUG):
            return
        line = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "status": resp.status_code,
            "duration_ms": round(request_time.total_seconds() * 1000, 3),
            "records": environ.get("tabserve.records"),
            "model_version": environ.get("tabserve.model_version"),
            "request_id": environ.get("tabserve.request_id"),
            "key_id": environ.get("tabserve.key_id"),  # which API key, never the key
            "remote_addr": environ.get("REMOTE_ADDR"),
        }
        try:
            self.access_log.info(json.dumps(line))
        except Exception:  # noqa: BLE001 - a log line must never fail a request
            self.error(traceback.format_exc())
