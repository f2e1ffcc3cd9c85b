"""Training: schema, search, decision rule, held-out test score, and the final fit.

Procedure (docs/training.md says the same):
1. rows without a target value are left out; the schema is inferred from the rest and every
   row is encoded once with the schema's layout;
2. a stratified split keeps `TEST_SIZE` of the rows aside; a row and its exact copies stay
   on one side of it, and in one fold of the search;
3. `search` cross-validates configurations of several model families on the training split
   within the time budget, leaving what the steps below and the report need (planned from
   the trials' own fit times); the best mean ROC AUC wins;
4. binary: Platt calibration is kept if it lowers log loss on out-of-fold predictions, and the
   threshold rule picks the decision threshold on them (`decision`);
5. the winner, fit on the training split, is scored once on the test split;
6. the shipped model is the winner refit on all rows with the same settings, so it learns
   from every labelled row; its quality is the test score of step 5.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from tabserve.model.blend import MEMBERS, WEIGHTS
from tabserve.model.bundle import ModelBundle
from tabserve.model.decision import Calibration, calibrate, label_codes
from tabserve.model.sklearn_steps import FrameEncoder
from tabserve.model.from_sklearn import fitted_model
from tabserve.model.schema import Schema
from tabserve.tables import DataError
from tabserve.training.reference import reference_profile
from tabserve.training.schema_inference import example_record, infer_schema
from tabserve.training.search import (FAMILIES, REFITS, TEST_SIZE, Trial, blend_trial,
                                      copies_together, fit_model, roc_auc, scoring, search)
from tabserve.training.thresholds import choose_calibration, choose_threshold

CANDIDATES = (*FAMILIES, "blend")  # the kinds of model that may be chosen
# Below this many test rows the model card's figures are rough (a ROC AUC on 100 rows is good to
# about ±0.1): the trainer says so, and trains
FEW_TEST_ROWS = 100


def report_seconds(time_budget: float) -> float:
    """The part of the budget kept for the report's extras (bootstrap intervals, importance,
    plots), which `reports` keeps to by sampling."""
    return max(2.0, 0.05 * time_budget)


def refit_seconds(trials: list[Trial], folds: int, blend: bool) -> float:
    """What the two refits after the search will take (on the training split for the test
    score, then on all rows), planned from the trials' own fits: a fold fits (folds-1)/folds
    of the training split, and all rows are 1/(1-TEST_SIZE) of it. For the leader, or the
    blend of the best members when it may be chosen (complete trials only: a trial screened
    out on its first fold is never chosen)."""
    trials = [t for t in trials if t.complete]
    if not trials:
        return 0.0

    def refits(trial: Trial) -> float:  # its fits were each on (folds-1)/folds of the rows
        return trial.seconds / len(trial.folds) * folds / (folds - 1) * REFITS
    best: dict[str, Trial] = {}
    for trial in trials:
        if trial.family not in best or trial.score > best[trial.family].score:
            best[trial.family] = trial
    costs = [refits(max(trials, key=lambda t: t.score))]
    if blend and all(member in best for member in MEMBERS):
        costs.append(sum(refits(best[member]) for member in MEMBERS))
    return max(costs)


@dataclass
class TrainingResult:
    """What training produced: the bundle (its metadata still to be stamped by
    `ModelBundle.stamp`), and what the report needs besides."""

    bundle: ModelBundle
    trials: list[Trial]
    # the test split, the model fit on the training split alone (encoder included), and the
    # probabilities it gave the test split
    test_frame: pd.DataFrame
    test_y: np.ndarray
    test_proba: np.ndarray
    split_model: Pipeline


def copy_ids(rows: pd.DataFrame) -> np.ndarray | None:
    """One id per distinct row of what the model sees (the schema's fields and the target),
    shared by a row's exact copies; None when no row repeats. Copies split apart would put
    a row the model learned in the rows that score it, and flatter the model."""
    ids, distinct = pd.factorize(pd.util.hash_pandas_object(rows, index=False))
    return ids if len(distinct) < len(rows) else None


def _enough_distinct_rows(copies: np.ndarray, y: np.ndarray, folds: int) -> bool:
    """Whether each class has enough distinct rows for a test split and the folds (a table of
    a few categorical fields may have only a handful: its copies are its data)."""
    _, first = np.unique(copies, return_index=True)
    return bool(np.bincount(y[first], minlength=y.max() + 1).min() >= folds + 2)


@dataclass
class Split:
    """The training and test rows, and the copy ids that keep a row with its exact copies
    (None when there are none, or too few distinct rows to keep them together)."""

    train: np.ndarray
    test: np.ndarray
    copies: np.ndarray | None
    copied: int  # rows that are exact copies of an earlier one


def split_rows(rows: pd.DataFrame, y: np.ndarray, seed: int, folds: int,
               log: Callable[[str], None] = lambda line: None) -> Split:
    """The stratified test split of `rows` (the input fields and the target; `y` the class
    codes), each row on the same side as its exact copies."""
    copies = copy_ids(rows)
    copied = 0 if copies is None else len(y) - len(np.unique(copies))
    if copies is not None and not _enough_distinct_rows(copies, y, folds):
        log(f"  {copied} rows are exact copies of another row, and too few rows are distinct "
            "to keep copies together: the split and folds treat each row on its own")
        copies = None
    elif copies is not None:
        log(f"  {copied} rows are exact copies of another row: each stays with its copies in "
            "the test split and in one fold")
    first, spread = copies_together(np.arange(len(y)), copies)
    train_first, test_first = train_test_split(first, test_size=TEST_SIZE, stratify=y[first],
                                               random_state=seed)
    split = Split(spread(train_first), spread(test_first), copies, copied)
    if len(split.test) < FEW_TEST_ROWS:
        log(f"  warning: {len(y)} rows, so the test split holds {len(split.test)}: the model "
            f"card's figures are rough (about {FEW_TEST_ROWS / TEST_SIZE:,.0f} rows or more "
            "make them trustworthy)")
    return split


def _within(copies: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return None if copies is None else copies[rows]


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


def test_scores(y_true: np.ndarray, proba: np.ndarray, threshold: float | None) -> dict[str, float]:
    return {"roc_auc": roc_auc(y_true, proba),
            "accuracy": float(accuracy_score(y_true, label_codes(proba, threshold))),
            "log_loss": float(log_loss(y_true, proba, labels=list(range(proba.shape[1]))))}


@dataclass
class Labelled:
    """The rows that have a target value, their classes in order, and how many were left out."""

    rows: pd.DataFrame
    classes: list[str]
    positive_class: str | None
    unlabelled: int

    @property
    def binary(self) -> bool:
        return len(self.classes) == 2


@dataclass
class Encoded:
    """Every labelled row encoded once with the schema's layout (folds and fits share it), the
    class codes, and the test split."""

    features: pd.DataFrame
    encoder: FrameEncoder
    x: np.ndarray
    y: np.ndarray
    split: Split


@dataclass
class Choice:
    """The search's trials, the best of each family (and the blend), and the one chosen among
    the families that could be (`eligible`: a blend's members may be searched for it alone)."""

    trials: list[Trial]
    best: dict[str, Trial]
    chosen: Trial
    eligible: tuple[str, ...] = ()


@dataclass
class Decision:
    """How a model's probabilities become a label: calibration and threshold (binary), and
    the out-of-fold probabilities they were chosen on, calibrated."""

    calibration: Calibration | None
    threshold: float | None
    rule: str | None
    report: dict[str, float] | None
    out_of_fold: np.ndarray


@dataclass
class TestScore:
    """The chosen configuration fit on the training split, and its score on the test split."""

    steps: Pipeline
    proba: np.ndarray
    scores: dict[str, float]


def label_rows(frame: pd.DataFrame, target: str, positive_class: str | None,
               folds: int) -> Labelled:
    """Stage 1: the rows with a target value; `DataError` when they cannot be trained on."""
    if target not in frame.columns:
        raise DataError(f"target column {target!r} not found; the columns are: "
                        f"{', '.join(frame.columns)}")
    rows = frame[frame[target].notna()].reset_index(drop=True)
    if rows.empty:
        raise DataError(f"target column {target!r} has no values")
    classes, positive_class = _order_classes(rows[target], positive_class)
    _check_class_sizes(rows[target], folds)
    return Labelled(rows, classes, positive_class, len(frame) - len(rows))


def schema_of(labelled: Labelled, target: str, ordinal: dict[str, Sequence[str]] | None,
              log: Callable[[str], None]) -> Schema:
    """Stage 2: the schema inferred from the labelled rows, each choice logged."""
    try:
        schema = infer_schema(labelled.rows, target, ordinal)
    except ValueError as err:
        raise DataError(str(err)) from None
    for dropped in schema.dropped:
        log(f"  dropped column {dropped.name!r}: {dropped.reason}")
    if not schema.fields:
        raise DataError("no usable input columns: every column but the target was dropped")
    for f in schema.fields:
        if f.order:
            log(f"  {f.name!r} is ordered: {' < '.join(f.order)} (a rank column joins its levels)")
    kinds = ", ".join(f"{sum(f.kind.value == k for f in schema.fields)} {k}"
                      for k in ("numeric", "categorical", "boolean"))
    log(f"Using {len(labelled.rows)} rows and {len(schema.fields)} input columns ({kinds})"
        + (f"; left out {labelled.unlabelled} rows with no {target!r} value"
           if labelled.unlabelled else ""))
    return schema


def encode_rows(labelled: Labelled, schema: Schema, seed: int, folds: int,
                log: Callable[[str], None]) -> Encoded:
    """Stage 3: every row encoded once, and the test split kept aside."""
    rows, target = labelled.rows, schema.target
    features = rows[schema.names]
    encoder = FrameEncoder(schema).fit(features)
    y = rows[target].map({label: code for code, label in enumerate(labelled.classes)}).to_numpy()
    split = split_rows(rows[[*schema.names, target]], y, seed, folds, log)
    return Encoded(features, encoder, encoder.transform(features), y, split)


def choose_model(encoded: Encoded, n_classes: int, candidates: Sequence[str], *, seed: int,
                 folds: int, time_budget: float, started: float, max_trials: int | None,
                 log: Callable[[str], None], progress: Callable[[str], None]) -> Choice:
    """Stage 4: the search on the training split within the budget (leaving the refits' and
    the report's time), the blend of its best members, and the best of those allowed."""
    train_rows, test_rows = encoded.split.train, encoded.split.test
    x, y = encoded.x[train_rows], encoded.y[train_rows]
    copies = _within(encoded.split.copies, train_rows)
    how = {"folds": f"{folds}-fold cross-validated ROC AUC",
           "screened": f"{folds}-fold cross-validated ROC AUC (later trials screened on the "
                       "first fold)",
           "holdout": f"ROC AUC on a holdout of 1/{folds} of the rows"}[scoring(len(train_rows))]
    log(f"Searching {', '.join(candidates)} by {how} on "
        f"{len(train_rows)} rows (test split: {len(test_rows)} rows), budget "
        f"{f'{max_trials} trials' if max_trials else f'{time_budget:g} s for the whole run'}")
    # a blend needs its members searched, whether or not they may be chosen alone
    searched = [f for f in FAMILIES if f in candidates or ("blend" in candidates and f in MEMBERS)]
    blend_allowed = "blend" in candidates
    trials = search(x, y, n_classes, folds=folds, seed=seed, budget_seconds=time_budget,
                    started=started, max_trials=max_trials, families=searched,
                    progress=progress, copies=copies,
                    reserve=lambda so_far: refit_seconds(so_far, folds, blend_allowed)
                    + report_seconds(time_budget))
    best: dict[str, Trial] = {}
    for trial in (t for t in trials if t.complete):
        if trial.family not in best or trial.score > best[trial.family].score:
            best[trial.family] = trial
    blend = blend_trial(trials, y, folds, seed, copies) if blend_allowed else None
    if blend is not None:
        best["blend"] = blend
    for family, trial in best.items():
        tried = sum(t.family == family for t in trials) if family != "blend" else len(WEIGHTS)
        screened = sum(t.family == family and t.screened_out for t in trials)
        tried_words = f"{tried} tried" + (f", {screened} screened out on the first fold"
                                          if screened else "")
        log(f"  best {family:<19} {trial.shown()} "
            f"({tried_words}) {trial.params if family != 'blend' else trial.params['weights']}")
    eligible = [t for t in best.values() if t.family in candidates]
    if not eligible:  # only a blend was asked for, and too few trials ran to form one
        log("  no blend: it needs a linear and an XGBoost trial; choosing among those that ran")
        eligible = list(best.values())
    chosen = max(eligible, key=lambda t: t.score)
    choice = Choice(trials, best, chosen, tuple(t.family for t in eligible))
    log(f"Chosen: {chosen.family} {chosen.params}: {why_chosen(choice)}")
    return choice


def decide(chosen: Trial, y_train: np.ndarray, labelled: Labelled, threshold_rule: str,
           seed: int, log: Callable[[str], None]) -> Decision:
    """Stage 5: a binary model's calibration and threshold, chosen on its out-of-fold
    probabilities; the most probable class otherwise."""
    scored = chosen.scored_rows()  # every training row, or the holdout's (a large table)
    return decision_on(chosen.out_of_fold[scored], y_train[scored], labelled.positive_class,
                       threshold_rule, seed, log)


def decision_on(proba: np.ndarray, y: np.ndarray, positive_class: str | None,
                threshold_rule: str, seed: int, log: Callable[[str], None],
                source: str = "out-of-fold") -> Decision:
    """Calibration and threshold chosen on probabilities (rows x classes) the model gave rows
    it never learned (`source` says which), for a binary model (`positive_class` set)."""
    if positive_class is None:
        log("Decision: the most probable class")
        return Decision(None, None, None, None, proba)
    calibration, report = choose_calibration(proba[:, 1], y, seed)
    log(f"Calibration: {'Platt scaling' if calibration else 'none'} ({source} log loss "
        f"{report['log_loss_raw']:.4f} raw, "
        f"{report['log_loss_platt']:.4f} with Platt scaling)")
    calibrated = calibrate(proba, calibration)
    threshold, rule = choose_threshold(threshold_rule, calibrated[:, 1], y)
    rule = rule.replace("out-of-fold", source)
    log(f"Decision threshold: {threshold:.4g} ({rule}); positive class {positive_class!r}")
    return Decision(calibration, threshold, rule, report, calibrated)


def score_on_test(chosen: Trial, encoded: Encoded, n_classes: int, decision: Decision,
                  seed: int, log: Callable[[str], None]) -> TestScore:
    """Stage 6: the chosen configuration fit on the training split, scored once on the test
    split."""
    train_rows, test_rows = encoded.split.train, encoded.split.test
    steps, _ = fit_model(chosen.family, chosen.params, encoded.x[train_rows],
                         encoded.y[train_rows], n_classes, seed)
    proba = calibrate(steps.predict_proba(encoded.x[test_rows]), decision.calibration)
    scores = test_scores(encoded.y[test_rows], proba, decision.threshold)
    log(f"Test split: ROC AUC {scores['roc_auc']:.4f}, accuracy {scores['accuracy']:.4f}, "
        f"log loss {scores['log_loss']:.4f}")
    return TestScore(steps, proba, scores)


def training_metrics(labelled: Labelled, encoded: Encoded, choice: Choice, decision: Decision,
                     test: TestScore, folds: int, time_budget: float) -> dict[str, Any]:
    """The bundle's metrics: the rows used, the search, the choice, the test score."""
    split = encoded.split
    return {
        "task": "binary" if labelled.binary else "multiclass",
        "rows": {"used": len(labelled.rows), "train": len(split.train), "test": len(split.test),
                 "left_out_without_target": labelled.unlabelled,
                 "copies": split.copied, "copies_kept_together": split.copies is not None},
        "cv": {"folds": folds, "scoring": scoring(len(split.train)),
               "metric": "roc_auc" if labelled.binary else "roc_auc_ovr",
               "trials": len(choice.trials), "time_budget_seconds": time_budget,
               "best_by_family": {f: t.describe() for f, t in choice.best.items()},
               "families": families_run(choice),
               "all_trials": [t.describe() for t in choice.trials]},
        "chosen": choice.chosen.family,
        "why_chosen": why_chosen(choice),
        "chosen_params": choice.chosen.params,
        "calibration": None if decision.report is None else {
            "method": "Platt scaling" if decision.calibration else "none", **decision.report},
        "test": test.scores,
        "final_fit": "the chosen configuration refit on all rows",
    }


def families_run(choice: Choice) -> dict[str, dict[str, Any]]:
    """Each family the search ran: its trials, how many were screened out on the first fold or
    cut by the budget, the seconds they took together, and its best score (None: no trial of
    it completed)."""
    families: dict[str, dict[str, Any]] = {}
    for trial in choice.trials:
        ran = families.setdefault(trial.family, {"trials": 0, "screened_out": 0,
                                                 "cut_by_budget": 0, "seconds": 0.0})
        ran["trials"] += 1
        ran["screened_out"] += int(trial.screened_out)
        ran["cut_by_budget"] += int(trial.cut)
        ran["seconds"] += trial.seconds
    for family, ran in families.items():
        ran["seconds"] = round(ran["seconds"], 2)
        ran["best_score"] = choice.best[family].score if family in choice.best else None
    return families


def why_chosen(choice: Choice) -> str:
    """Why the chosen model won, in one sentence: its score against the next best that could be
    chosen, and whether the gap is within the spread of its folds (a near tie)."""
    chosen = choice.chosen
    how = "ROC AUC on the holdout" if len(chosen.folds) == 1 else "cross-validated ROC AUC"
    rivals = sorted((t for t in choice.best.values() if t is not chosen and t.family in
                     choice.eligible), key=lambda t: -t.score)
    if not rivals:
        return f"{chosen.family} was the only family that could be chosen ({how} {chosen.score:.4f})"
    rival = rivals[0]
    gap = chosen.score - rival.score
    tie = (f"; its folds spread ± {chosen.sd:.4f}: a near tie, decided by the mean"
           if len(chosen.folds) > 1 and gap <= chosen.sd else "")
    return (f"{chosen.family} had the highest {how}, {chosen.score:.4f}; the next best, "
            f"{rival.family}, had {rival.score:.4f} ({gap:.4f} lower{tie})")


def train(frame: pd.DataFrame, target: str, *, seed: int = 1, folds: int = 5,
          positive_class: str | None = None, candidates: Sequence[str] = CANDIDATES,
          time_budget: float = 60.0, max_trials: int | None = None,
          threshold_rule: str = "fixed:0.5", ordinal: dict[str, Sequence[str]] | None = None,
          log: Callable[[str], None] = lambda message: None,
          progress: Callable[[str], None] | None = None,
          started: float | None = None) -> TrainingResult:
    """Search, score and fit a classifier for `target` on a frame from `tables.load_csv`,
    within `time_budget` seconds from `started` (a `time.perf_counter()`; default: now),
    together with a report given `report_seconds(time_budget)`. The stages are the
    procedure's steps (see the module's docstring)."""
    started = time.perf_counter() if started is None else started
    labelled = label_rows(frame, target, positive_class, folds)
    schema = schema_of(labelled, target, ordinal, log)
    encoded = encode_rows(labelled, schema, seed, folds, log)
    n_classes, train_rows = len(labelled.classes), encoded.split.train
    choice = choose_model(encoded, n_classes, candidates, seed=seed, folds=folds,
                          time_budget=time_budget, started=started, max_trials=max_trials,
                          log=log, progress=progress or log)
    decision = decide(choice.chosen, encoded.y[train_rows], labelled, threshold_rule, seed, log)
    profile = reference_profile(schema, encoded.features.iloc[train_rows], decision.out_of_fold,
                                labelled.classes, decision.threshold)
    test = score_on_test(choice.chosen, encoded, n_classes, decision, seed, log)
    final_steps, _ = fit_model(choice.chosen.family, choice.chosen.params, encoded.x,
                               encoded.y, n_classes, seed)
    bundle = ModelBundle(
        model=fitted_model(final_steps, encoded.x.shape[1]), schema=schema,
        classes=labelled.classes, positive_class=labelled.positive_class,
        threshold=decision.threshold, threshold_rule=decision.rule,
        metrics=training_metrics(labelled, encoded, choice, decision, test, folds, time_budget),
        example=example_record(schema, encoded.features), calibration=decision.calibration,
        profile=profile)
    bundle.pipeline = Pipeline([("encode", encoded.encoder), *final_steps.steps])
    test_rows = encoded.split.test
    return TrainingResult(
        bundle=bundle, trials=choice.trials, test_frame=labelled.rows.iloc[test_rows],
        test_y=encoded.y[test_rows], test_proba=test.proba,
        split_model=Pipeline([("encode", encoded.encoder), *test.steps.steps]))
