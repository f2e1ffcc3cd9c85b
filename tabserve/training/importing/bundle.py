"""The bundle: the user's model as data (or kept whole), its reference profile and metrics,
from the sample."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from tabserve.model.bundle import ModelBundle, library_versions
from tabserve.model.encoding import Encoder
from tabserve.model.fitted import Adapted, LevelCodes, OnnxGraph, OnnxModel, OwnModel
from tabserve.model.onnx_graph import OnnxClassifier
from tabserve.model.frames import columns_from_frame
from tabserve.model.pickles import pickled
from tabserve.model.schema import BOOLEAN_VALUES, Kind, Schema
from tabserve.training.importing.columns import Column
from tabserve.model.kinds import ImportRefused, library_of, translated
from tabserve.training.importing.reading import UserModel
from tabserve.training.reference import reference_profile
from tabserve.training.schema_inference import example_record


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def adapted_model(schema: Schema, user: UserModel, features: pd.DataFrame) -> Adapted:
    """The user's columns as encoded columns, and the classifier as data."""
    from tabserve.serving.scorers.adapted import AdaptedScorer

    encoder = Encoder(schema)
    at = {name: i for i, name in enumerate(encoder.feature_names)}
    source = np.array([at[_source_name(c, schema)] for c in user.columns], np.int64)
    fill, center, scale = (np.array([getattr(c, name) for c in user.columns], np.float64)
                           for name in ("fill", "center", "scale"))
    adapted = Adapted(source=source, fill=fill, center=center, scale=scale,
                      model=None, codes=level_codes(user.columns, at))  # model: below
    # the sample's mean of each column: a linear model's reference record for explanations
    with np.errstate(invalid="ignore"):
        made = AdaptedScorer(adapted, None, len(at)).columns(
            encoder.encode(columns_from_frame(schema, features)))
    return msgspec.structs.replace(adapted, model=translated(
        user.classifier, np.nanmean(made, axis=0), len(user.classes)))


def _source_name(column: Column, schema: Schema) -> str:
    """The encoded column a model column reads (a code's: its field's first level)."""
    if column.codes is not None:
        return f"{column.field}={schema.field(column.field).categories[0]}"
    return column.field if column.level is None else f"{column.field}={column.level}"


def level_codes(columns: list[Column], at: dict[str, int]) -> LevelCodes | None:
    """Where the coded columns' levels are in the encoded record; None without any."""
    coded = [(i, c) for i, c in enumerate(columns) if c.codes is not None]
    if not coded:
        return None
    levels = [(k, at[f"{c.field}={level}"], code) for k, (_, c) in enumerate(coded)
              for level, code in c.codes.items() if f"{c.field}={level}" in at]
    return LevelCodes(
        columns=np.array([i for i, _ in coded], np.int64),
        unknown=np.array([c.unknown for _, c in coded], np.float64),
        missing=np.array([c.missing for _, c in coded], np.float64),
        missing_at=np.array([at.get(f"{c.field} is missing", -1) for _, c in coded], np.int64),
        level_of=np.array([k for k, _, _ in levels], np.int64),
        level_at=np.array([a for _, a, _ in levels], np.int64),
        code=np.array([code for _, _, code in levels], np.float64))


def own_model_data(schema: Schema, user: UserModel) -> OwnModel:
    """The whole model pickled (an ONNX graph as its bytes), and where each field it reads lies
    in the encoded record."""
    encoder = Encoder(schema)
    at = {name: i for i, name in enumerate(encoder.feature_names)}
    fields = [f for f in schema.fields]
    levels = [list(f.categories) if f.kind is Kind.CATEGORICAL else [] for f in fields]
    if isinstance(user.classifier, OnnxClassifier):
        kind, model = OnnxModel, OnnxGraph(user.classifier.data)
    else:
        kind, model = OwnModel, pickled(user.classifier)
    return kind(
        model=model, fields=[f.name for f in fields],
        columns=[at[f"{f.name}={kept[0]}" if kept else f.name] for f, kept in zip(fields, levels)],
        levels=levels, missing=[at.get(f"{f.name} is missing", -1) for f in fields],
        takes_records=user.takes_records, missing_text=user.missing_text)


def class_codes(target: pd.Series, classes: list[str]) -> tuple[pd.Series, str | None]:
    """Each row's class code (NaN where the value is not a class), and how the values were
    read when they are a flag's words for a model of classes 0 and 1: the course's model
    learns `churn == "yes"` as 1, while its table, like the Kaggle file, says yes and no."""
    codes = {label: code for code, label in enumerate(classes)}
    truth = target.map(codes)
    if not truth.isna().any() or sorted(classes) != ["0", "1"]:
        return truth, None
    flags = target.str.strip().str.lower().map(
        {text: value for text, value in BOOLEAN_VALUES.items() if isinstance(text, str)})
    if flags.isna().any():
        return truth, None
    words = {value: " or ".join(map(repr, sorted(set(target.str.strip()[flags == value]))))
             for value in (1.0, 0.0)}
    return flags.map({1.0: codes["1"], 0.0: codes["0"]}), \
        f"{words[1.0]} read as the model's class 1, {words[0.0]} as 0"


def assembled_bundle(model_path: Path, rows: pd.DataFrame, features: pd.DataFrame,
                     target: str | None, schema: Schema, user: UserModel, own: np.ndarray,
                     data_path: Path | None) -> ModelBundle:
    from tabserve.training.trainer import test_scores

    binary = len(user.classes) == 2
    threshold = 0.5 if binary else None
    metrics: dict[str, Any] = {
        "task": "binary" if binary else "multiclass", "chosen": "imported",
        "imported": {"kind": user.description, "file": model_path.name,
                     "served": "as data" if user.translated
                     else "by onnxruntime" if isinstance(user.classifier, OnnxClassifier)
                     else "its own predict_proba"},
        "rows": {"sample": len(rows)}, "test": None}
    if target is not None:
        truth, read_as_flags = class_codes(rows[target], user.classes)
        if read_as_flags:
            metrics["imported"]["target"] = read_as_flags
        if truth.isna().any():
            raise ImportRefused(f"the target {target!r} holds values that are not the model's "
                                f"classes ({', '.join(user.classes)}): "
                                f"{rows[target][truth.isna()].iloc[0]!r}")
        # XGBoost's own float32 probabilities may not add up to 1 exactly
        metrics["test"] = test_scores(truth.to_numpy(dtype=int),
                                      own / own.sum(axis=1, keepdims=True), threshold)
        metrics["test_rows"] = "the --data sample (not held out from the model's training)"
    bundle = ModelBundle(
        model=adapted_model(schema, user, features) if user.translated
        else own_model_data(schema, user), schema=schema, classes=user.classes,
        positive_class=user.classes[1] if binary else None, threshold=threshold,
        threshold_rule="fixed:0.5" if binary else None, metrics=metrics,
        example=example_record(schema, features),
        profile=reference_profile(schema, features, own, user.classes, threshold))
    bundle.check()
    bundle.metadata = {
        "model_version": bundle.content_version(),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "imported_from": {"path": str(model_path), "sha256": _sha256(model_path)},
        "data": None if data_path is None else {"path": str(data_path),
                                                "sha256": _sha256(data_path)},
        "libraries": library_versions(served_with(user)),
    }
    return bundle


def served_with(user: UserModel) -> tuple[str, ...]:
    """The distributions the served model's answers depend on besides the tracked ones: the
    graph's runtime, or the library of a model kept whole (its final step's: a Pipeline's own
    is scikit-learn's, tracked already)."""
    if isinstance(user.classifier, OnnxClassifier):
        return ("onnxruntime", "onnx")
    if user.translated:
        return ()
    final = user.classifier.steps[-1][1] if hasattr(user.classifier, "steps") else user.classifier
    return (library_of(final),)
