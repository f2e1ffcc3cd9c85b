"""Candidate pipelines, cross-validated selection, a held-out test score, and the final fit.

Procedure (the README's "How training works" says the same):
1. rows without a target value are left out; the schema is inferred from the rest;
2. a stratified split keeps `TEST_SIZE` of the rows aside;
3. every candidate is scored by stratified k-fold ROC AUC on the training split
   (one-vs-rest macro average for multiclass), and the best mean wins;
4. the winner is fit on the training split and scored once on the test split;
5. the shipped model is the winner refit on all rows with the same settings, so it learns
   from every labelled row; its quality is the test score of step 4.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from xgboost import XGBClassifier

from tabserve.data import DataError
from tabserve.encoding import FrameEncoder
from tabserve.schema import Schema

CANDIDATES = ("logistic_regression", "xgboost")
TEST_SIZE = 0.2
DEFAULT_THRESHOLD = 0.5


@dataclass
class TrainingResult:
    """What training produced; `bundle.ModelBundle.from_training` packs it."""

    pipeline: Pipeline
    schema: Schema
    classes: list[str]
    positive_class: str | None
    threshold: float | None
    threshold_rule: str | None
    metrics: dict[str, Any]
    example: dict[str, Any] = field(default_factory=dict)


def candidate_pipelines(schema: Schema, n_classes: int, seed: int) -> dict[str, Pipeline]:
    """The models compared by cross-validation, each behind the schema's encoder."""
    linear = Pipeline([
        ("encode", FrameEncoder(schema)),
        ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
        ("scale", StandardScaler()),
        ("model", LogisticRegression(C=1.0, max_iter=5000)),
    ])
    boosted = Pipeline([
        ("encode", FrameEncoder(schema)),
        ("model", XGBClassifier(
            n_estimators=300, learning_rate=0.05, max_depth=4, min_child_weight=1,
            subsample=0.8, colsample_bytree=0.8, reg_lambda=1.0, tree_method="hist",
            n_jobs=2, random_state=seed,
            objective="binary:logistic" if n_classes == 2 else "multi:softprob",
        )),
    ])
    return {"logistic_regression": linear, "xgboost": boosted}


def _order_classes(target: pd.Series, positive_class: str | None) -> tuple[list[str], str | None]:
    counts = target.value_counts()
    labels = sorted(counts.index)
    if len(labels) < 2:
        raise DataError(f"target {target.name!r} has a single class ({labels[0]!r}); "
                        "a classifier needs at least two")
    if len(labels) > 2:
        if positive_class is not None:
            raise DataError("--positive-class applies to a binary target only; "
                            f"{target.name!r} has {len(labels)} classes")
        return labels, None
    if positive_class is None:
        # the minority class; on a tie, the later label ("yes" over "no", "1" over "0")
        positive_class = min(reversed(labels), key=lambda label: counts[label])
    elif positive_class not in labels:
        raise DataError(f"--positive-class {positive_class!r} is not a class of "
                        f"{target.name!r}; its classes are {', '.join(map(repr, labels))}")
    negative = next(label for label in labels if label != positive_class)
    return [negative, positive_class], positive_class


def _check_class_sizes(target: pd.Series, folds: int) -> None:
    needed = folds + 2  # at least one row for the test split and `folds` for the CV folds
    counts = target.value_counts()
    small = counts[counts < needed]
    if len(small):
        listed = ", ".join(f"{label!r} has {n}" for label, n in small.items())
        raise DataError(f"too few rows for {folds}-fold cross-validation plus a test split: "
                        f"every class of {target.name!r} needs at least {needed} rows, "
                        f"but {listed}")


def _scores(y_true: np.ndarray, proba: np.ndarray, threshold: float | None) -> dict[str, float]:
    labels = list(range(proba.shape[1]))
    if proba.shape[1] == 2:
        auc = roc_auc_score(y_true, proba[:, 1])
        predicted = (proba[:, 1] >= threshold).astype(int)
    else:
        auc = roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=labels)
        predicted = proba.argmax(axis=1)
    return {"roc_auc": float(auc), "accuracy": float(accuracy_score(y_true, predicted)),
            "log_loss": float(log_loss(y_true, proba, labels=labels))}


def train(frame: pd.DataFrame, target: str, *, seed: int = 1, folds: int = 5,
          positive_class: str | None = None, candidates: Sequence[str] = CANDIDATES,
          log: Callable[[str], None] = lambda message: None) -> TrainingResult:
    """Select, score and fit a classifier for `target` on a frame from `data.load_csv`."""
    if target not in frame.columns:
        raise DataError(f"target column {target!r} not found; the columns are: "
                        f"{', '.join(frame.columns)}")
    labelled = frame[frame[target].notna()].reset_index(drop=True)
    unlabelled = len(frame) - len(labelled)
    if labelled.empty:
        raise DataError(f"target column {target!r} has no values")
    classes, positive_class = _order_classes(labelled[target], positive_class)
    _check_class_sizes(labelled[target], folds)

    schema = Schema.infer(labelled, target)
    for dropped in schema.dropped:
        log(f"  dropped column {dropped.name!r}: {dropped.reason}")
    if not schema.fields:
        raise DataError("no usable input columns: every column but the target was dropped")
    kinds = ", ".join(f"{sum(f.kind.value == k for f in schema.fields)} {k}"
                      for k in ("numeric", "categorical", "boolean"))
    log(f"Using {len(labelled)} rows and {len(schema.fields)} input columns ({kinds})"
        + (f"; left out {unlabelled} rows with no {target!r} value" if unlabelled else ""))

    features = labelled[schema.names]
    y = labelled[target].map({label: code for code, label in enumerate(classes)}).to_numpy()
    x_train, x_test, y_train, y_test = train_test_split(
        features, y, test_size=TEST_SIZE, stratify=y, random_state=seed)
    threshold = DEFAULT_THRESHOLD if len(classes) == 2 else None
    scoring = "roc_auc" if len(classes) == 2 else "roc_auc_ovr"

    log(f"Comparing candidates by {folds}-fold cross-validated ROC AUC on {len(x_train)} rows "
        f"(test split: {len(x_test)} rows)")
    pipelines = {name: pipeline for name, pipeline in
                 candidate_pipelines(schema, len(classes), seed).items() if name in candidates}
    cv_scores: dict[str, dict[str, Any]] = {}
    for name, pipeline in pipelines.items():
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        scores = cross_val_score(pipeline, x_train, y_train, cv=splitter, scoring=scoring,
                                 error_score="raise")
        cv_scores[name] = {"mean": float(scores.mean()), "sd": float(scores.std()),
                           "folds": [float(s) for s in scores]}
        log(f"  {name:<20} ROC AUC {scores.mean():.4f} ± {scores.std():.4f}")
    chosen = max(cv_scores, key=lambda name: cv_scores[name]["mean"])
    log(f"Chosen: {chosen}")

    pipeline = pipelines[chosen].fit(x_train, y_train)
    test = _scores(y_test, pipeline.predict_proba(x_test), threshold)
    log(f"Test split: ROC AUC {test['roc_auc']:.4f}, accuracy {test['accuracy']:.4f}, "
        f"log loss {test['log_loss']:.4f}")

    final = candidate_pipelines(schema, len(classes), seed)[chosen].fit(features, y)
    rule = "fixed: positive when its probability >= 0.5" if threshold is not None else None
    if threshold is not None:
        log(f"Decision threshold: {threshold} ({rule}); positive class {positive_class!r}")
    else:
        log("Decision: the most probable class")
    metrics = {
        "task": "binary" if len(classes) == 2 else "multiclass",
        "rows": {"used": len(labelled), "train": len(x_train), "test": len(x_test),
                 "left_out_without_target": unlabelled},
        "cv": {"folds": folds, "metric": scoring, "candidates": cv_scores},
        "chosen": chosen,
        "test": test,
        "final_fit": "the chosen candidate refit on all rows",
    }
    return TrainingResult(pipeline=final, schema=schema, classes=classes,
                          positive_class=positive_class, threshold=threshold,
                          threshold_rule=rule, metrics=metrics,
                          example=schema.example_record(features))
