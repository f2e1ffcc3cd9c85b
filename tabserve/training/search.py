"""Model search within a time budget: diverse candidates, tuned, compared by cross-validation.

No single family wins on every tabular data set, so the search tries three, in a fixed order
that the seed decides: the defaults of each first, then a small grid of LogisticRegression
strengths (with piecewise-linear hinge terms for continuous columns, and two without), then random configurations of XGBoost (3 in 4) and RandomForest (1 in 4) until the
budget is spent. Every trial is scored by stratified k-fold ROC AUC on the same folds; XGBoost
stops adding trees when a validation part of each training fold stops improving.
The budget decides how many trials run, so `trials` in the report (and `--trials N`)
reproduces a run exactly on any machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from xgboost import XGBClassifier

from tabserve.model.blend import MEMBERS, WEIGHTS, Blend, combine
from tabserve.model.encoding import Hinges

FAMILIES = ("logistic_regression", "xgboost", "random_forest")
EARLY_STOPPING_ROUNDS = 50
MAX_TREES = 2000
HINGE_KNOTS = 4  # bends per continuous column for LogisticRegression (see Hinges)


@dataclass
class Trial:
    """One configuration, scored by cross-validation."""

    family: str
    params: dict[str, Any]
    folds: list[float]
    seconds: float
    out_of_fold: np.ndarray = field(repr=False)  # rows × classes, from the fold models

    @property
    def score(self) -> float:
        return float(np.mean(self.folds))

    @property
    def sd(self) -> float:
        return float(np.std(self.folds))

    def describe(self) -> dict[str, Any]:
        return {"family": self.family, "params": self.params, "cv_roc_auc": self.score,
                "cv_sd": self.sd, "seconds": round(self.seconds, 2)}


def build_model(family: str, params: dict[str, Any], n_classes: int, seed: int) -> Pipeline:
    """The steps after the encoder for one configuration."""
    if family == "logistic_regression":
        return Pipeline([
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("hinges", Hinges(params.get("knots", 0))),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(C=params["C"], max_iter=5000)),
        ])
    if family == "random_forest":
        return Pipeline([("model", RandomForestClassifier(
            n_estimators=params.get("n_estimators", 300),
            min_samples_leaf=params["min_samples_leaf"], max_features=params["max_features"],
            n_jobs=2, random_state=seed))])
    return Pipeline([("model", XGBClassifier(
        **params, tree_method="hist", n_jobs=2, random_state=seed,
        objective="binary:logistic" if n_classes == 2 else "multi:softprob"))])


def configurations(seed: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every configuration the search may try, in the order it tries them."""
    rng = np.random.default_rng(seed)
    yield "logistic_regression", {"C": 1.0, "knots": HINGE_KNOTS}
    yield "xgboost", {"max_depth": 4, "learning_rate": 0.05, "min_child_weight": 1.0,
                      "subsample": 0.8, "colsample_bytree": 0.8, "reg_lambda": 1.0,
                      "reg_alpha": 0.0}
    yield "random_forest", {"min_samples_leaf": 3, "max_features": "sqrt"}
    for c in (0.01, 0.03, 0.1, 0.3, 3.0):
        yield "logistic_regression", {"C": c, "knots": HINGE_KNOTS}
    for c in (0.1, 1.0):  # straight lines, for data where bends only add noise
        yield "logistic_regression", {"C": c, "knots": 0}
    for i in range(10_000):
        if i % 4 == 3:
            yield "random_forest", {
                "min_samples_leaf": int(rng.choice([1, 2, 5, 10, 20])),
                "max_features": ["sqrt", "log2", 0.3, 0.5][int(rng.integers(4))]}
        else:
            yield "xgboost", {
                "max_depth": int(rng.integers(2, 8)),
                "learning_rate": float(10 ** rng.uniform(-2.0, -0.7)),
                "min_child_weight": float(10 ** rng.uniform(0, 1.5)),
                "subsample": float(rng.uniform(0.5, 1.0)),
                "colsample_bytree": float(rng.uniform(0.3, 1.0)),
                "reg_lambda": float(10 ** rng.uniform(-1, 1.5)),
                "reg_alpha": float(rng.choice([0.0, 0.1, 1.0]))}


def roc_auc(y: np.ndarray, proba: np.ndarray) -> float:
    """Binary ROC AUC, or one-vs-rest macro ROC AUC for multiclass."""
    if proba.shape[1] == 2:
        return float(roc_auc_score(y, proba[:, 1]))
    return float(roc_auc_score(y, proba, multi_class="ovr", average="macro",
                               labels=list(range(proba.shape[1]))))


def fit_model(family: str, params: dict[str, Any], x: np.ndarray, y: np.ndarray,
              n_classes: int, seed: int) -> tuple[Pipeline, dict[str, Any]]:
    """Fit one configuration; XGBoost holds out 15% to decide its number of trees.

    Returns the fitted steps and the parameters to refit with (XGBoost's tree count fixed).
    A blend fits each member with its own parameters.
    """
    if family == "blend":
        members = [fit_model(m["family"], m["params"], x, y, n_classes, seed)[0]
                   for m in params["members"]]
        return Pipeline([("model", Blend(members, params["weights"]))]), params
    if family != "xgboost" or "n_estimators" in params:
        return build_model(family, params, n_classes, seed).fit(x, y), params
    x_fit, x_stop, y_fit, y_stop = train_test_split(x, y, test_size=0.15, stratify=y,
                                                    random_state=seed)
    model = build_model(family, {**params, "n_estimators": MAX_TREES,
                                 "early_stopping_rounds": EARLY_STOPPING_ROUNDS}, n_classes, seed)
    model.fit(x_fit, y_fit, model__eval_set=[(x_stop, y_stop)], model__verbose=False)
    return model, {**params, "n_estimators": int(model[-1].best_iteration) + 1}


def cross_validate(family: str, params: dict[str, Any], x: np.ndarray, y: np.ndarray,
                   n_classes: int, folds: int, seed: int) -> Trial:
    started = time.perf_counter()
    out_of_fold = np.zeros((len(y), n_classes))
    scores, trees = [], []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fit_rows, score_rows in splitter.split(x, y):
        model, fitted = fit_model(family, params, x[fit_rows], y[fit_rows], n_classes, seed)
        out_of_fold[score_rows] = model.predict_proba(x[score_rows])
        scores.append(roc_auc(y[score_rows], out_of_fold[score_rows]))
        trees.append(fitted.get("n_estimators"))
    if family == "xgboost" and "n_estimators" not in params:
        # the refit on more rows gets the folds' median tree count
        params = {**params, "n_estimators": int(np.median(trees))}
    return Trial(family, params, scores, time.perf_counter() - started, out_of_fold)


def blend_trial(trials: list[Trial], y: np.ndarray, folds: int, seed: int) -> Trial | None:
    """The best blend of the best linear and the best XGBoost trial (see `blend`), scored on
    their out-of-fold predictions over the same folds; None without both."""
    members = []
    for family in MEMBERS:
        tried = [t for t in trials if t.family == family]
        if not tried:
            return None
        members.append(max(tried, key=lambda t: t.score))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    fold_rows = [rows for _, rows in splitter.split(np.zeros(len(y)), y)]
    blends = []
    for share in WEIGHTS:
        weights = [share, 1.0 - share]
        out_of_fold = combine([m.out_of_fold for m in members], weights)
        blends.append(Trial(
            "blend", {"members": [{"family": m.family, "params": m.params} for m in members],
                      "weights": weights},
            [roc_auc(y[rows], out_of_fold[rows]) for rows in fold_rows],
            sum(m.seconds for m in members), out_of_fold))
    return max(blends, key=lambda t: t.score)


def search(x: np.ndarray, y: np.ndarray, n_classes: int, *, folds: int, seed: int,
           budget_seconds: float, max_trials: int | None = None, families=FAMILIES,
           progress: Callable[[str], None] = lambda line: None) -> list[Trial]:
    """Cross-validate configurations in order until the budget (or `max_trials`) is spent.

    The first configuration of each family always runs. A trial starts only if a trial of
    its family, as slow as the last one, still fits in the budget.
    """
    started = time.perf_counter()
    trials: list[Trial] = []
    last_seconds: dict[str, float] = {}
    firsts = set()
    for family, params in configurations(seed):
        if family not in families:
            continue
        if max_trials is not None and len(trials) >= max_trials:
            break
        elapsed = time.perf_counter() - started
        first = family not in firsts
        if max_trials is None and not first and \
                elapsed + last_seconds.get(family, 0.0) > budget_seconds:
            if all(elapsed + last_seconds[f] > budget_seconds for f in last_seconds):
                break
            continue
        firsts.add(family)
        trial = cross_validate(family, params, x, y, n_classes, folds, seed)
        trials.append(trial)
        last_seconds[family] = trial.seconds
        best = max(trials, key=lambda t: t.score)
        progress(f"trial {len(trials):>3} {family:<19} ROC AUC {trial.score:.4f} ± "
                 f"{trial.sd:.4f} | {time.perf_counter() - started:5.1f} s of "
                 f"{budget_seconds:g} s | best {best.score:.4f} ({best.family})")
    return trials
