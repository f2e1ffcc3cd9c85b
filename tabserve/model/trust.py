"""Which model files a process opens (`Trust`): the signing key that training signs bundles
with and servers check them by, and whether a file that holds pickle may be read (both read
from the environment by `tabserve.settings`). Standard library only: the web settings read it
before numpy is imported."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from tabserve.settings import allows_pickle, signing_key


@dataclass(frozen=True)
class Trust:
    """Which model files a process opens. With a signing key, only files signed with it; a
    file that holds pickle only when it is signed with the key or `allow_pickle` is set."""

    signing_key: bytes | None = field(default=None, repr=False)
    allow_pickle: bool = False

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Trust:
        """`MODEL_SIGNING_KEY` (or `_FILE`) and `ALLOW_PICKLE`; `ConfigError` naming which."""
        return cls(signing_key(env), allows_pickle(env))


def key_id(key: bytes) -> str:
    """A short public name for a key, shown in headers and logs; it does not reveal the key."""
    return hashlib.sha256(b"tabserve signing key id\0" + key).hexdigest()[:8]


def signature(key: bytes, payload: bytes) -> str:
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def signature_problem(signed: dict[str, str], key: bytes, payload: bytes) -> str | None:
    """Why a file's signature fails, saying which: unsigned, signed with another key, altered
    after signing (its key id is ours, its HMAC is not); None when it is good."""
    fix = "train it again with the server's MODEL_SIGNING_KEY set"
    if "hmac-sha256" not in signed:
        return (f"is not signed, and this server accepts only models signed with its key "
                f"(id {key_id(key)}): {fix}")
    if signed.get("key") != key_id(key):
        return (f"is signed with another key (id {signed.get('key', '?')}, this server's is "
                f"{key_id(key)}): {fix}")
    if not hmac.compare_digest(signed["hmac-sha256"], signature(key, payload)):
        return f"was altered after it was signed (its signature does not match its content): {fix}"
    return None
