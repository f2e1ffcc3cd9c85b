"""The model bundle (`model.bin`): the fitted model as data, its schema, classes, threshold,
metrics and metadata, written atomically and checked before any of it is read.

File layout: one header line, `tabserve-bundle 2 sha256=<hex digest of the payload>`, then the
payload: a stored ZIP archive (`model.archive`) of `bundle.json` (everything but the large
numbers) and the model's arrays as `.npy` files, XGBoost's trees among them. Nothing in it is
pickle, so opening a file runs no code from it (`model.fitted` says what each kind of model is
made of). Loading checks the header and the digest, then reads every part as hostile input:
typed JSON, plain dtypes, shapes against sizes, trees that are trees, numbers finite and in
range; no other library parses the file's bytes (older bundles' XGBoost boosters, in
XGBoost's UBJSON, are read by `model.ubjson`'s bounded reader and become arrays).

An imported ONNX graph (`fitted.OnnxModel`) is a member of its own, parsed by `onnx` under
`model.onnx_graph`'s rules, and declared in the header (` onnx`) so that the Dockerfile installs
onnxruntime for it alone.

What still needs pickle says so in its header (` pickle`): a model whose steps could not be
translated to data (`PickledSteps`), and every format-1 file (the header, then the pickled
bundle, written before this format). Such a file is refused before its payload is read unless
the server trusts it (`Trust`): `ALLOW_PICKLE=1`, or a valid signature from the server's key.
`import_model.py --model old.bin --output new.bin` converts a format-1 file.

A signed bundle (trained with `MODEL_SIGNING_KEY` set) adds ` key=<key id> hmac-sha256=<hex>`
to the header: an HMAC of the payload with the key. A server given the key refuses, before
reading the payload, a file that is unsigned, signed with another key, or altered after signing
(the checksum alone can be recomputed by anyone; the HMAC only with the key). Format-1 files
written before the package had wings name their classes by the old flat modules
(`tabserve.schema`, ...); the loader finds them where they live now (`model.pickles`).
"""

from __future__ import annotations

import hashlib
import logging
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from tabserve.model import archive
from tabserve.model.decision import Calibration, calibrate
from tabserve.model.digest import value_digest
from tabserve.model.encoding import Encoder
from tabserve.model.fitted import (Blob, FittedModel, ModelFileError, OnnxGraph, OnnxModel,
                                   OwnModel, Pickled, PickledSteps)
from tabserve.model.pickles import unpickled
from tabserve.model.profile import Profile
from tabserve.model.schema import Schema
from tabserve.model.trust import Trust, key_id, signature, signature_problem
from tabserve.model.xgboost_trees import upgraded
from tabserve.settings import ConfigError, environment

log = logging.getLogger(__name__)

MAGIC = b"tabserve-bundle "
FORMAT = "2"          # data only
PICKLE_FORMAT = "1"   # the header, then the pickled bundle: read only when trusted
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
TRACKED_PACKAGES = ("scikit-learn", "xgboost-cpu", "numpy", "pandas")


class ModelLoadError(RuntimeError):
    """A model file that cannot be served; the message names the path and the fix."""


def library_versions(served_with: tuple[str, ...] = ()) -> dict[str, str]:
    """Versions of Python and the libraries that trained the model, and of those an imported
    model is served with besides (`served_with`: onnxruntime for a graph, a model kept whole's
    own library), each where installed."""
    versions = {"python": platform.python_version()}
    for name in (*TRACKED_PACKAGES, *served_with):
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

    model: FittedModel   # the steps after the encoder (which the schema defines)
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
    profile: Profile | None = None
    # the model card's figures as data (`training.reports.card_figures`), for the service's
    # page; None in bundles written before it existed
    card: dict[str, Any] | None = None

    # training side only, never written: the fitted scikit-learn pipeline (encoder first),
    # the reference that the served paths are tested against; None in a loaded bundle
    pipeline = None

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
        return value_digest((self.model, self.schema, self.classes, self.positive_class,
                             self.threshold, self.calibration))[:12]

    def predict_proba(self, frame) -> np.ndarray:
        """Class probabilities for training-style rows (a frame of strings) from the fitted
        scikit-learn pipeline, calibrated: the reference that the served paths are tested
        against (a freshly trained bundle only: files hold data, not the pipeline)."""
        if self.pipeline is None:
            raise ValueError("a loaded bundle holds its model as data: score it with "
                             "tabserve.serving.core.Predictor")
        return calibrate(np.asarray(self.pipeline.predict_proba(frame), dtype=np.float64),
                         self.calibration)

    @property
    def version(self) -> str:
        return self.metadata["model_version"]

    @property
    def task(self) -> str:
        return "binary" if len(self.classes) == 2 else "multiclass"

    @property
    def holds_pickle(self) -> bool:
        return isinstance(self.model, PickledSteps) or \
            isinstance(self.model, OwnModel) and isinstance(self.model.model, Pickled)

    @property
    def holds_onnx(self) -> bool:
        """An ONNX graph, which onnxruntime serves (the image installs it for such a model)."""
        return isinstance(self.model, OnnxModel)

    def save(self, path: Path | str, signing_key: bytes | None = None) -> None:
        """Write atomically: a crash or a full disk never leaves half a model at `path`.
        With `signing_key`, the header carries the payload's HMAC."""
        path = Path(path)
        payload = self._payload()
        header = MAGIC + f"{FORMAT} sha256={hashlib.sha256(payload).hexdigest()}".encode()
        if self.holds_pickle:
            header += b" pickle"
        if self.holds_onnx:
            header += b" onnx"
        if signing_key is not None:
            header += (f" key={key_id(signing_key)} "
                       f"hmac-sha256={signature(signing_key, payload)}").encode()
        header += b"\n"
        partial = path.with_name(path.name + ".partial")
        try:
            with partial.open("wb") as f:
                f.write(header)
                f.write(payload)
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)

    def _payload(self) -> bytes:
        """The archive: the bundle as JSON, each array and blob in a member of its own."""
        members: dict[str, bytes] = {}

        def member(value: Any) -> str:
            if isinstance(value, np.ndarray):
                name, data = f"arrays/{len(members)}.npy", archive.npy_bytes(value)
            elif isinstance(value, Blob):
                name, data = f"blobs/{len(members)}{value.suffix}", value.data
            else:
                raise TypeError(f"a bundle cannot hold a {type(value).__name__}")
            members[name] = data
            return name

        document = msgspec.json.encode(self, enc_hook=member)
        return archive.write(document, members)

    @classmethod
    def load(cls, path: Path | str, trust: Trust = Trust()) -> ModelBundle:
        """Read and verify a bundle; `ModelLoadError` says in one line why a file is refused.
        `trust` decides whether a signature is required and whether pickle may be read."""
        path = Path(path)
        fix = "train one with `.venv/bin/python train.py` (or set MODEL_PATH to a model file)"
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise ModelLoadError(f"model file {path} not found: {fix}") from None
        except OSError as err:
            raise ModelLoadError(f"model file {path} cannot be read ({err.strerror}): {fix}") from None
        header, _, payload = raw.partition(b"\n")
        if not header.startswith(MAGIC):
            raise ModelLoadError(f"model file {path} is not a tabserve model bundle: {fix}")
        version, *parts = header[len(MAGIC):].decode("ascii", "replace").split(" ")
        if version not in (FORMAT, PICKLE_FORMAT):
            raise ModelLoadError(f"model file {path} is in bundle format {version[:20]!r}; this "
                                 f"tabserve reads formats {PICKLE_FORMAT} and {FORMAT}: "
                                 "upgrade tabserve, or train the model again with this one")
        fields = dict(part.partition("=")[::2] for part in parts)
        holds_pickle = version == PICKLE_FORMAT or "pickle" in fields
        signed = trust.signing_key is not None
        if holds_pickle and not (trust.allow_pickle or signed):
            raise ModelLoadError(_pickle_refusal(path, version))
        if hashlib.sha256(payload).hexdigest() != fields.get("sha256"):
            raise ModelLoadError(f"model file {path} is corrupted or truncated "
                                 f"(its checksum does not match): {fix}")
        problem = signed and signature_problem(fields, trust.signing_key, payload)
        if problem:
            raise ModelLoadError(f"model file {path} {problem}")
        if version == PICKLE_FORMAT:
            bundle = _unpickled_bundle(path, payload)
        else:
            bundle = _decoded_bundle(path, payload, holds_pickle, "onnx" in fields)
        mismatches = bundle.version_mismatches()
        if mismatches and bundle.holds_pickle:  # a data bundle answers alike under any of them
            log.warning("%s holds pickled steps, fitted under other versions (%s): their answers "
                        "may differ; fit and import the model again under these versions "
                        "(.venv/bin/python import_model.py)", path, "; ".join(mismatches))
        return bundle

    def check(self) -> None:
        """Refuse (`ModelFileError`) a bundle whose parts do not fit together."""
        problems = self.schema.problems()
        if problems:
            raise ModelFileError(f"its schema is unusable: {problems[0]}")
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ModelFileError(f"a model needs two or more distinct classes; it has "
                                 f"{self.classes}")
        if self.task == "binary" and (self.positive_class not in self.classes
                                      or self.threshold is None):
            raise ModelFileError("a binary model needs its positive class and threshold")
        self.model.check(len(Encoder(self.schema).feature_names), len(self.classes))

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A format-1 bundle (the pickled object) holds its fitted pipeline: read as data."""
        if "model" not in state:
            from tabserve.model.from_sklearn import fitted_model

            self.pipeline = state.pop("pipeline")
            state["model"] = fitted_model(self.pipeline[1:],
                                          len(Encoder(state["schema"]).feature_names))
        self.__dict__.update(state)

    def version_mismatches(self) -> list[str]:
        """Python and the libraries whose major.minor version differs from training time's
        (shown by `GET /model`). They matter only to a bundle that holds pickled steps: the
        rest is data, read alike by any version (answers were identical on 3.13 and 3.11)."""
        trained = self.metadata.get("libraries", {})
        here = library_versions()
        return [f"{name} {trained[name]} at training time, {here[name]} here"
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
            "card": self.card,
        }


def load_trusted(path: Path | str, trust: Trust | None = None) -> ModelBundle:
    """The one way each door (the server and its SIGHUP, Lambda, score.py, Spark, monitor.py)
    opens its model file: with `trust`, else the environment's (`MODEL_SIGNING_KEY`,
    `ALLOW_PICKLE`). Every refusal, a setting's too, is a `ModelLoadError` of one line."""
    try:
        trust = Trust.from_env(environment()) if trust is None else trust
    except ConfigError as err:
        raise ModelLoadError(str(err)) from None
    return ModelBundle.load(path, trust)


def _pickle_refusal(path: Path, version: str) -> str:
    what = ("is an older bundle, a pickle" if version == PICKLE_FORMAT
            else "holds a model part that is pickled")
    return (f"model file {path} {what}, and pickle runs code as it loads: convert it with "
            f"`.venv/bin/python import_model.py --model {path} --output new.bin`, or trust it "
            "explicitly with ALLOW_PICKLE=1 (or sign it with the server's MODEL_SIGNING_KEY)")


def _decoded_bundle(path: Path, payload: bytes, pickle_declared: bool,
                    onnx_declared: bool) -> ModelBundle:
    """A format-2 payload, read as hostile input: one line for anything wrong in it."""
    def refuse(problem: str) -> ModelLoadError:
        return ModelLoadError(f"model file {path} cannot be read: {problem}")

    try:
        parts = archive.Archive(payload)
        document = parts.read(archive.DOCUMENT)
        if len(document) > MAX_DOCUMENT_BYTES:
            raise refuse(f"its {archive.DOCUMENT} has {len(document)} bytes "
                         f"(at most {MAX_DOCUMENT_BYTES})")

        def member(kind: type, name: Any) -> Any:
            if not isinstance(name, str):
                raise TypeError("expected the name of a member")
            if kind is np.ndarray:
                return parts.array(name)
            if issubclass(kind, Blob):
                if kind is Pickled and not pickle_declared:
                    raise TypeError("it holds pickle that its header does not declare")
                if kind is OnnxGraph and not onnx_declared:
                    raise TypeError("it holds an ONNX graph that its header does not declare")
                return kind(parts.read(name))
            raise NotImplementedError

        bundle = msgspec.json.decode(document, type=ModelBundle, dec_hook=member)
        if parts.unread():
            raise refuse(f"it holds members nothing reads: {', '.join(parts.unread()[:3])}")
        bundle.model = upgraded(bundle.model)
        bundle.check()
    except (archive.ArchiveError, ModelFileError) as err:
        raise refuse(str(err)) from None
    except (msgspec.DecodeError, msgspec.ValidationError) as err:
        raise refuse(f"{archive.DOCUMENT}: {err}") from None
    except RecursionError:
        raise refuse(f"{archive.DOCUMENT} is nested too deeply") from None
    except UnicodeDecodeError:
        raise refuse(f"{archive.DOCUMENT} is not UTF-8") from None
    return bundle


def _unpickled_bundle(path: Path, payload: bytes) -> ModelBundle:
    """A format-1 payload (a trusted file: `ModelBundle.load` checked)."""
    try:
        bundle = unpickled(payload)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "incompatible"
        raise ModelLoadError(
            f"model file {path} cannot be loaded with the libraries installed here "
            f"({', '.join(f'{k} {v}' for k, v in library_versions().items())}): "
            f"{type(err).__name__}: {err}; retrain with `.venv/bin/python train.py`") from err
    if not isinstance(bundle, ModelBundle):
        raise ModelLoadError(f"model file {path} holds a {type(bundle).__name__}, "
                             "not a model bundle")
    return bundle

