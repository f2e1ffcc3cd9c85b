"""The model bundle (`model.bin`): the fitted pipeline, its schema, classes, threshold, metrics
and metadata, written atomically and checked before it is unpickled.

File layout: one header line `tabserve-bundle 1 sha256=<hex digest of the payload>`, then the
pickled bundle. Loading verifies the header and the digest before unpickling, so a
truncated, corrupted or foreign file is refused with a clear message instead of half-loading.

Unpickling runs code, so a model file is as trusted as whoever could write it. A signed
bundle (trained with `MODEL_SIGNING_KEY` set) adds ` key=<key id> hmac-sha256=<hex>` to the
header: an HMAC of the payload with the key. A server given the key refuses, before
unpickling, a file that is unsigned, signed with another key, or altered after signing (the
checksum alone can be recomputed by anyone; the HMAC only with the key). Files written before the
package had wings name their classes by the old flat modules (`tabserve.schema`, ...); the
loader finds them where they live now (`MOVED_MODULES`).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
import pickle
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from tabserve.model.decision import Calibration, calibrate
from tabserve.model.digest import value_digest
from tabserve.model.profile import Profile
from tabserve.model.schema import Schema
from tabserve.model.secrets import read_secret

log = logging.getLogger(__name__)

MAGIC = b"tabserve-bundle 1 sha256="
MIN_KEY_BYTES = 16
TRACKED_PACKAGES = ("scikit-learn", "xgboost-cpu", "numpy", "pandas")
# where the classes of bundles written by the flat layout (up to commit 0db92fe) live now
MOVED_MODULES = {
    "tabserve.bundle": "tabserve.model.bundle",
    "tabserve.schema": "tabserve.model.schema",
    "tabserve.encoding": "tabserve.model.encoding",
    "tabserve.blend": "tabserve.model.blend",
    "tabserve.decision": "tabserve.model.decision",
}


class ModelLoadError(RuntimeError):
    """A model file that cannot be served; the message names the path and the fix."""


class SigningKeyError(ValueError):
    """The signing key's settings cannot be used; the message says which and why."""


def signing_key(env: dict[str, str]) -> bytes | None:
    """The key that signs bundles (training) and checks them (serving): `MODEL_SIGNING_KEY`,
    or the content of the file `MODEL_SIGNING_KEY_FILE` (a mounted secret); None without."""
    secret = read_secret(env, "MODEL_SIGNING_KEY", SigningKeyError)
    if secret is None or not secret.strip():
        return None
    key = secret.strip().encode()
    if len(key) < MIN_KEY_BYTES:
        raise SigningKeyError(f"the model signing key has {len(key)} bytes; use at least "
                              f"{MIN_KEY_BYTES} (for example: openssl rand -hex 32)")
    return key


def key_id(key: bytes) -> str:
    """A short public name for a key, shown in headers and logs; it does not reveal the key."""
    return hashlib.sha256(b"tabserve signing key id\0" + key).hexdigest()[:8]


def _signature(key: bytes, payload: bytes) -> str:
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries whose pickles the bundle holds."""
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = package_version(name)
        except Exception:  # noqa: BLE001 - an absent distribution is simply not recorded
            continue
    return versions


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


@dataclass
class ModelBundle:
    """Everything `predict.py` needs to serve, and everything a user needs to trust it."""

    pipeline: Pipeline
    schema: Schema
    classes: list[str]
    positive_class: str | None
    threshold: float | None
    threshold_rule: str | None
    metrics: dict[str, Any]
    example: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    calibration: Calibration | None = None  # binary: Platt scaling of the positive class
    # the training rows' distributions, for drift; None in bundles written before it existed
    # (a field missing from an old pickle reads this class default)
    profile: Profile | None = None

    def stamp(self, *, data_path: Path, data_sha256: str, seed: int) -> ModelBundle:
        """Itself, with its metadata and its content-derived version id set."""
        self.metadata = {
            "model_version": self.content_version(),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "data": {"path": str(data_path), "sha256": data_sha256},
            "seed": seed,
            "libraries": library_versions(),
        }
        return self

    def content_version(self) -> str:
        """A short hash of what decides the answers, read as values (`digest`): same data and
        seed give the same id, whichever Python build trained the model."""
        return value_digest((self.pipeline, self.schema, self.classes, self.positive_class,
                             self.threshold, self.calibration))[:12]

    def predict_proba(self, frame) -> np.ndarray:
        """Class probabilities for training-style rows (a frame of strings), calibrated: the
        reference that the served fast paths are tested against."""
        return calibrate(np.asarray(self.pipeline.predict_proba(frame), dtype=np.float64),
                         self.calibration)

    @property
    def version(self) -> str:
        return self.metadata["model_version"]

    @property
    def task(self) -> str:
        return "binary" if len(self.classes) == 2 else "multiclass"

    def save(self, path: Path | str, signing_key: bytes | None = None) -> None:
        """Write atomically: a crash or a full disk never leaves half a model at `path`.
        With `signing_key`, the header carries the payload's HMAC."""
        path = Path(path)
        payload = pickle.dumps(self, protocol=5)
        header = MAGIC + hashlib.sha256(payload).hexdigest().encode()
        if signing_key is not None:
            header += (f" key={key_id(signing_key)} "
                       f"hmac-sha256={_signature(signing_key, payload)}").encode()
        header += b"\n"
        partial = path.with_name(path.name + ".partial")
        try:
            with partial.open("wb") as f:
                f.write(header)
                f.write(payload)
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path | str, signing_key: bytes | None = None) -> ModelBundle:
        """Read, verify and unpickle a bundle; `ModelLoadError` says why a file is refused.
        With `signing_key`, only a file signed with that key and unaltered is unpickled."""
        path = Path(path)
        fix = "train one with `python train.py` (or set MODEL_PATH to a model file)"
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise ModelLoadError(f"model file {path} not found: {fix}") from None
        except OSError as err:
            raise ModelLoadError(f"model file {path} cannot be read ({err.strerror}): {fix}") from None
        header, _, payload = raw.partition(b"\n")
        if not header.startswith(MAGIC):
            raise ModelLoadError(f"model file {path} is not a tabserve model bundle: {fix}")
        checksum, *signature = header[len(MAGIC):].decode("ascii", "replace").split(" ")
        if hashlib.sha256(payload).hexdigest() != checksum:
            raise ModelLoadError(f"model file {path} is corrupted or truncated "
                                 f"(its checksum does not match): {fix}")
        if signing_key is not None:
            _check_signature(path, dict(part.partition("=")[::2] for part in signature),
                             signing_key, payload)
        try:
            bundle = _Unpickler(io.BytesIO(payload)).load()
        except Exception as err:  # noqa: BLE001 - any unpickling failure means "incompatible"
            raise ModelLoadError(
                f"model file {path} cannot be loaded with the libraries installed here "
                f"({', '.join(f'{k} {v}' for k, v in library_versions().items())}): "
                f"{type(err).__name__}: {err}; retrain with `python train.py`") from err
        if not isinstance(bundle, cls):
            raise ModelLoadError(f"model file {path} holds a {type(bundle).__name__}, "
                                 f"not a model bundle: {fix}")
        for message in bundle.version_mismatches():
            log.warning("%s: %s", path, message)
        return bundle

    def version_mismatches(self) -> list[str]:
        """Libraries whose major.minor version differs from the one at training time."""
        trained = self.metadata.get("libraries", {})
        here = library_versions()
        return [f"{name} {trained[name]} at training time, {here[name]} here; "
                "answers may differ: retrain with `python train.py`"
                for name in trained if name in here and _minor(trained[name]) != _minor(here[name])]

    def describe(self) -> dict[str, Any]:
        """The bundle as plain JSON for `GET /model`."""
        return {
            "model_version": self.version,
            "target": self.schema.target,
            "task": self.task,
            "classes": self.classes,
            "positive_class": self.positive_class,
            "threshold": self.threshold,
            "threshold_rule": self.threshold_rule,
            "calibration": None if self.calibration is None else {
                "method": "Platt scaling", "slope": self.calibration.slope,
                "intercept": self.calibration.intercept},
            "model": self.metrics.get("chosen"),
            "schema": {"fields": [f.describe() for f in self.schema.fields],
                       "dropped": [{"name": d.name, "reason": d.reason}
                                   for d in self.schema.dropped]},
            "example": self.example,
            "metrics": self.metrics,
            "metadata": self.metadata,
            "library_mismatches": self.version_mismatches(),
            "profile": None if self.profile is None else self.profile.describe(),
        }


def _check_signature(path: Path, signed: dict[str, str], key: bytes, payload: bytes) -> None:
    """Refuse, saying which: an unsigned file, a file signed with another key, a file altered
    after signing (its key id is ours, its HMAC is not)."""
    fix = "train it again with the server's MODEL_SIGNING_KEY set"
    if "hmac-sha256" not in signed:
        raise ModelLoadError(f"model file {path} is not signed, and this server accepts only "
                             f"models signed with its key (id {key_id(key)}): {fix}")
    if signed.get("key") != key_id(key):
        raise ModelLoadError(f"model file {path} is signed with another key (id "
                             f"{signed.get('key', '?')}, this server's is {key_id(key)}): {fix}")
    if not hmac.compare_digest(signed["hmac-sha256"], _signature(key, payload)):
        raise ModelLoadError(f"model file {path} was altered after it was signed (its "
                             f"signature does not match its content): {fix}")


class _Unpickler(pickle.Unpickler):
    """Finds the classes of bundles written by the flat layout where they live now."""

    def find_class(self, module: str, name: str):
        return super().find_class(MOVED_MODULES.get(module, module), name)
