"""API keys: optional, off by default. With `API_KEYS_FILE` or `API_KEYS` set, every request but
the probes and the pages (/docs, and / in a browser) must carry a key (`Authorization: Bearer <key>` or
`X-API-Key: <key>`); `KeyGate` answers any other with 401 before the body is read.

A key file has one key per line, or `sha256:<hex>` of a key so the file need not hold the
secret; blank lines and `#` comments are skipped. Keys are kept as SHA-256 digests only and
compared in constant time, against every digest (no early exit). A key's id, for the access
log, is the first 8 hex digits of its digest: it names a key without revealing it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from tabserve.settings import ConfigError, api_key_entries, metrics_without_key
from tabserve.web.responses import (error_response, is_open_inference, problem_response,
                                    wants_page)

# the probes (an orchestrator has no key) and the page that asks the user for one
OPEN_PATHS = frozenset({"/health", "/ready", "/v2/health/live", "/v2/health/ready", "/docs"})
MIN_KEY_CHARS = 16
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")


class ApiKeyError(ConfigError):
    """The key settings cannot be used; the message names the setting and the line."""


@dataclass(frozen=True)
class ApiKeys:
    """The accepted keys, as digests; `metrics_open`: /metrics needs no key."""

    digests: tuple[bytes, ...]
    metrics_open: bool = False

    @classmethod
    def from_env(cls, env: dict[str, str]) -> ApiKeys | None:
        """From `API_KEYS_FILE` (a line each) or `API_KEYS` (comma-separated); None when
        neither is set."""
        try:
            given = api_key_entries(env)
        except ConfigError as err:
            raise ApiKeyError(str(err)) from None
        if given is None:
            return None
        where, entries = given
        digests = tuple(_digest(entry, where, number)
                        for number, entry in enumerate(entries, start=1) if entry)
        if not digests:
            raise ApiKeyError(f"{where} holds no key")
        return cls(digests, metrics_open=metrics_without_key(env))

    def match(self, presented: str) -> str | None:
        """The id of the key presented, or None; as long whichever key, if any, matches."""
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for accepted in self.digests:
            if hmac.compare_digest(digest, accepted):
                found = accepted
        return None if found is None else found.hex()[:8]

    def needed(self, path: str) -> bool:
        return path not in OPEN_PATHS and not (self.metrics_open and path == "/metrics")


def _digest(entry: str, where: str, number: int) -> bytes:
    given = _DIGEST.fullmatch(entry)
    if given:
        return bytes.fromhex(given[1])
    if entry.startswith("sha256:"):
        raise ApiKeyError(f"{where}, entry {number}: sha256: needs 64 lowercase hex digits")
    if len(entry) < MIN_KEY_CHARS:
        raise ApiKeyError(f"{where}, entry {number}: a key needs at least {MIN_KEY_CHARS} "
                          "characters (for example: openssl rand -hex 32)")
    return hashlib.sha256(entry.encode()).digest()


def presented_key(authorization: str, api_key: str) -> str | None:
    """The key a request carries, from `Authorization: Bearer` or `X-API-Key` (HTTP headers,
    or gRPC metadata of those names)."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return api_key.strip() or None


class KeyGate:
    """With keys on, a request that needs a key and has no valid one is answered 401 here,
    from its headers: no body is read and no model work is done. The body size limit is
    checked first, from `Content-Length`, so an oversized body is a 413 with or without a key."""

    def __init__(self, wsgi_app, service):
        self.wsgi_app = wsgi_app
        self.service = service

    def __call__(self, environ, start_response):
        keys = self.service.keys
        # the page is open as /docs is: it shows nothing of the model until given a key
        if keys is None or not keys.needed(environ["PATH_INFO"]) or wants_page(environ):
            return self.wsgi_app(environ, start_response)
        length = environ.get("CONTENT_LENGTH", "")
        if length.isdigit() and int(length) > self.service.settings.max_body_bytes:
            return self.wsgi_app(environ, start_response)  # the app answers 413, unread
        presented = presented_key(environ.get("HTTP_AUTHORIZATION", ""),
                                  environ.get("HTTP_X_API_KEY", ""))
        key = None if presented is None else keys.match(presented)
        if key is None:
            environ["tabserve.endpoint"] = "(unauthenticated)"
            return _unauthorized(presented is not None, environ["PATH_INFO"])(environ,
                                                                               start_response)
        environ["tabserve.key_id"] = key
        return self.wsgi_app(environ, start_response)


def _unauthorized(wrong: bool, path: str):
    detail = ("the API key is not valid" if wrong else "this endpoint needs an API key") + \
        ": send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
    # the Open Inference Protocol's clients read its error shape only
    response = error_response(detail, 401) if is_open_inference(path) else \
        problem_response(401, "Unauthorized", detail)
    response.headers["WWW-Authenticate"] = 'Bearer realm="tabserve"' + \
        (', error="invalid_token"' if wrong else "")
    return response
