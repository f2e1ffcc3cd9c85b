"""Model search within a time budget: diverse candidates, tuned, compared by cross-validation.

No single family wins on every tabular data set, so the search tries three, in a fixed order
that the seed decides: the defaults of each first, then a small grid of LogisticRegression
strengths (with piecewise-linear hinge terms for continuous columns, and two without), then random configurations of XGBoost (3 in 4) and RandomForest (1 in 4) until the
budget is spent. Every trial is scored by stratified k-fold ROC AUC on the same folds (a row
and its exact copies in one fold, so a copy never scores the model that learned it); XGBoost
stops adding trees when a validation part of each training fold stops improving.
The budget decides how many trials run, so `trials` in the report (and `--trials N`)
reproduces a run on any machine: exactly, unless a trial was cut short by the budget.

How a trial is scored depends on the table's size (`scoring`):
- below `SCREENED_ROWS` training rows, on every fold;
- from `SCREENED_ROWS`, a trial past each family's first is scored on the first fold before the
  others: it goes on to the other folds only if that fold's ROC AUC is within `SCREEN_MARGIN` of
  the best complete trial's on the same fold (the same rows, so the comparison is paired), and
  otherwise stops there, screened out (successive halving, the folds as rungs). Most random
  configurations are worse than the best so far, so the budget buys more of them; the chosen
  trial and the blend's members are complete trials;
- from `HOLDOUT_ROWS`, every trial is scored on the first fold alone, a holdout of 1/folds of
  the rows (2,000 or more): five fits per trial would leave a large table one trial per
  family. Out-of-fold predictions, and so calibration, threshold and the profile's scores,
  come from the holdout's rows (`Trial.scored`).

The budget covers what comes after the search too: a trial starts only if it, and then the
refits of the best model so far and the report (`reserve`), still fit. A first trial of a
family that would not fit whole (a large table) gets a share of what is left, and XGBoost
and RandomForest stop adding trees when that share is spent: the trial scores the trees it grew (its report
entry says it was cut), so one family cannot eat the others' time.
"""

from __future__ import annotations

import math
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
from xgboost.callback import TrainingCallback

from tabserve.model.blend import MEMBERS, WEIGHTS, Blend, combine
from tabserve.model.sklearn_steps import Hinges

FAMILIES = ("logistic_regression", "xgboost", "random_forest")
EARLY_STOPPING_ROUNDS = 50
MAX_TREES = 2000
HINGE_KNOTS = 4  # bends per continuous column for LogisticRegression (see Hinges)
TEST_SIZE = 0.2  # the share of rows `trainer.train` keeps aside for the test score
# the refits after the search, in training-split fits: one, then one on all rows
REFITS = 1 + 1 / (1 - TEST_SIZE)
FOREST_CHUNK = 50  # trees a RandomForest on a deadline grows between looks at the clock
SCREENED_ROWS = 4_000   # training rows from which later trials are screened on the first fold
SCREEN_MARGIN = 0.002   # ROC AUC a screened trial's first fold may trail the best's by
HOLDOUT_ROWS = 10_000   # training rows from which every trial is scored on one holdout


class StopAt(TrainingCallback):
    """Ends an XGBoost fit when its time is up, keeping the trees grown so far."""

    def __init__(self, deadline: float):
        super().__init__()
        self.deadline = deadline
        self.cut = False

    def after_iteration(self, model, epoch, evals_log) -> bool:
        # never at the first round: early stopping has then seen no round to call the best
        self.cut = epoch > 0 and time.perf_counter() > self.deadline
        return self.cut


@dataclass
class Trial:
    """One configuration, scored by cross-validation."""

    family: str
    params: dict[str, Any]
    folds: list[float]
    seconds: float
    out_of_fold: np.ndarray = field(repr=False)  # rows × classes, from the fold models
    cut: bool = False  # XGBoost stopped adding trees when its share of the budget was spent
    screened_out: bool = False  # stopped after the first fold (`folds` holds its score only)
    scored: np.ndarray | None = field(default=None, repr=False)  # rows `out_of_fold` holds
    #                                                              (None: every row)

    @property
    def complete(self) -> bool:
        return not self.screened_out

    @property
    def score(self) -> float:
        return float(np.mean(self.folds))

    @property
    def sd(self) -> float:
        return float(np.std(self.folds))

    def shown(self) -> str:
        """Its score as the progress lines say it: a mean and spread over its folds, or what
        its one score stands for (a spread of 0.0000 said nothing)."""
        if self.screened_out:
            return f"ROC AUC {self.score:.4f} (first fold only: screened out)"
        if len(self.folds) == 1:
            return f"ROC AUC {self.score:.4f} (one held-out split)"
        return f"ROC AUC {self.score:.4f} ± {self.sd:.4f} over {len(self.folds)} folds"

    def scored_rows(self) -> np.ndarray:
        """The rows with out-of-fold predictions: all, or a holdout's."""
        return np.arange(len(self.out_of_fold)) if self.scored is None else self.scored

    def describe(self) -> dict[str, Any]:
        return {"family": self.family, "params": self.params, "cv_roc_auc": self.score,
                "cv_sd": self.sd, "seconds": round(self.seconds, 2),
                **({"cut_by_budget": True} if self.cut else {}),
                **({"screened_out": True, "first_fold_roc_auc": self.folds[0]}
                   if self.screened_out else {})}


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
              n_classes: int, seed: int, deadline: float | None = None
              ) -> tuple[Pipeline, dict[str, Any]]:
    """Fit one configuration; XGBoost holds out 15% to decide its number of trees, and
    stops at `deadline` if one is given.

    Returns the fitted steps and the parameters to refit with (XGBoost's tree count fixed;
    `"cut": True` among them when the deadline stopped it). A blend fits each member with
    its own parameters.
    """
    if family == "blend":
        members = [fit_model(m["family"], m["params"], x, y, n_classes, seed)[0]
                   for m in params["members"]]
        return Pipeline([("model", Blend(members, params["weights"]))]), params
    if family == "random_forest" and deadline is not None:
        return _grow_forest(build_model(family, params, n_classes, seed), x, y, params,
                            deadline)
    if family != "xgboost" or "n_estimators" in params:
        return build_model(family, params, n_classes, seed).fit(x, y), params
    x_fit, x_stop, y_fit, y_stop = train_test_split(x, y, test_size=0.15, stratify=y,
                                                    random_state=seed)
    stop = StopAt(math.inf if deadline is None else deadline)
    model = build_model(family, {**params, "n_estimators": MAX_TREES,
                                 "early_stopping_rounds": EARLY_STOPPING_ROUNDS,
                                 "callbacks": [stop]}, n_classes, seed)
    model.fit(x_fit, y_fit, model__eval_set=[(x_stop, y_stop)], model__verbose=False)
    model[-1].set_params(callbacks=None)  # a fold model is never shipped, but keep it plain
    fitted = {**params, "n_estimators": int(model[-1].best_iteration) + 1}
    return model, ({**fitted, "cut": True} if stop.cut else fitted)


def _grow_forest(model: Pipeline, x: np.ndarray, y: np.ndarray, params: dict[str, Any],
                 deadline: float) -> tuple[Pipeline, dict[str, Any]]:
    """A RandomForest grown `FOREST_CHUNK` trees at a time until it is whole or `deadline`
    has passed. Trees grown on are seeded as in one fit, so a forest left whole is the
    forest of one fit (a test checks it): `--trials N` scores it alike."""
    forest = model[-1]
    trees = forest.n_estimators
    forest.set_params(warm_start=True, n_estimators=0)
    while forest.n_estimators < trees:
        forest.set_params(n_estimators=min(trees, forest.n_estimators + FOREST_CHUNK))
        model.fit(x, y)
        if time.perf_counter() > deadline and forest.n_estimators < trees:
            forest.set_params(warm_start=False)
            return model, {**params, "n_estimators": forest.n_estimators, "cut": True}
    forest.set_params(warm_start=False)
    return model, params


def copies_together(rows: np.ndarray, copies: np.ndarray | None) -> tuple[np.ndarray, list]:
    """The first row of each set of exact copies (`copies`: one id per distinct row; None
    when no row repeats), and a function from chosen first rows to all their rows, in order.
    A split made on first rows keeps each row and its copies on one side; without copies it
    is the split of the rows themselves."""
    if copies is None:
        return rows, lambda chosen: chosen
    _, first = np.unique(copies[rows], return_index=True)
    first = rows[np.sort(first)]
    members: dict[int, list[int]] = {}
    for row in rows:
        members.setdefault(copies[row], []).append(row)
    return first, lambda chosen: np.array([r for c in chosen for r in members[copies[c]]],
                                          dtype=np.intp)


def fold_rows(y: np.ndarray, folds: int, seed: int, copies: np.ndarray | None = None
              ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds (rows to fit, rows to score), a row and its copies in one fold."""
    first, spread = copies_together(np.arange(len(y)), copies)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(np.sort(spread(first[fit])), np.sort(spread(first[score])))
            for fit, score in splitter.split(first, y[first])]


def cross_validate(family: str, params: dict[str, Any], x: np.ndarray, y: np.ndarray,
                   n_classes: int, folds: int, seed: int, seconds: float = math.inf,
                   copies: np.ndarray | None = None,
                   go_on: Callable[[float], bool] | None = None, holdout: bool = False
                   ) -> Trial:
    """Score one configuration on the folds; an XGBoost fold stops adding trees once its
    share of `seconds` is spent. With `go_on`, the first fold's ROC AUC decides whether the
    other folds run (a trial stopped there is `screened_out`); with `holdout`, only the first
    fold runs."""
    started = time.perf_counter()
    out_of_fold = np.zeros((len(y), n_classes))
    scores, trees, cut = [], [], False
    splits = fold_rows(y, folds, seed, copies)[:1 if holdout else folds]
    for fold, (fit_rows, score_rows) in enumerate(splits, start=1):
        model, fitted = fit_model(family, params, x[fit_rows], y[fit_rows], n_classes, seed,
                                  deadline=started + seconds * fold / len(splits))
        out_of_fold[score_rows] = model.predict_proba(x[score_rows])
        scores.append(roc_auc(y[score_rows], out_of_fold[score_rows]))
        # a fold of a forest left whole has its tree count in the model, not in `fitted`
        trees.append(fitted.get("n_estimators", getattr(model[-1], "n_estimators", None)))
        cut = cut or fitted.get("cut", False)
        if fold == 1 and go_on is not None and not go_on(scores[0]):
            return Trial(family, params, scores, time.perf_counter() - started, out_of_fold,
                         cut, screened_out=True)
    if family == "xgboost" and "n_estimators" not in params or cut:
        # the refit on more rows gets the folds' median tree count
        params = {**params, "n_estimators": int(np.median(trees))}
    return Trial(family, params, scores, time.perf_counter() - started, out_of_fold, cut,
                 scored=splits[0][1] if holdout else None)


def blend_trial(trials: list[Trial], y: np.ndarray, folds: int, seed: int,
                copies: np.ndarray | None = None) -> Trial | None:
    """The best blend of the best linear and the best XGBoost trial (see `blend`), scored on
    their out-of-fold predictions over the same folds (or holdout); None without both."""
    members = []
    for family in MEMBERS:
        tried = [t for t in trials if t.family == family and t.complete]
        if not tried:
            return None
        members.append(max(tried, key=lambda t: t.score))
    scored_rows = [rows for _, rows in fold_rows(y, folds, seed, copies)]
    holdout = members[0].scored
    if holdout is not None:
        scored_rows = [holdout]
    blends = []
    for share in WEIGHTS:
        weights = [share, 1.0 - share]
        out_of_fold = combine([m.out_of_fold for m in members], weights)
        blends.append(Trial(
            "blend", {"members": [{"family": m.family, "params": m.params} for m in members],
                      "weights": weights},
            [roc_auc(y[rows], out_of_fold[rows]) for rows in scored_rows],
            sum(m.seconds for m in members), out_of_fold, scored=holdout))
    return max(blends, key=lambda t: t.score)


def scoring(rows: int) -> str:
    """How trials are scored on this many training rows: "folds" (every trial on every fold),
    "screened" (later trials first on the first fold) or "holdout" (the first fold alone)."""
    if rows >= HOLDOUT_ROWS:
        return "holdout"
    return "screened" if rows >= SCREENED_ROWS else "folds"


def screen(trials: list[Trial]) -> Callable[[float], bool]:
    """Whether a trial's first fold is good enough to score it on the others: within
    `SCREEN_MARGIN` of the best first fold among complete trials."""
    best_first = max(t.folds[0] for t in trials if t.complete)
    return lambda first_fold: first_fold >= best_first - SCREEN_MARGIN


def search(x: np.ndarray, y: np.ndarray, n_classes: int, *, folds: int, seed: int,
           budget_seconds: float, started: float | None = None, max_trials: int | None = None,
           families=FAMILIES, reserve: Callable[[list[Trial]], float] = lambda trials: 0.0,
           progress: Callable[[str], None] = lambda line: None,
           copies: np.ndarray | None = None) -> list[Trial]:
    """Cross-validate configurations in order until the budget (or `max_trials`) is spent.

    The budget runs from `started` (a `time.perf_counter()`; default: now), which may be
    before the search: `reserve(trials)` is what the steps after it will need, planned from
    the trials so far, and the search leaves it. The first configuration of each family always
    runs, on an even share of what is left among the families not yet tried (XGBoost and
    RandomForest are cut at their share; LogisticRegression is not). Later, a trial starts only
    if a trial of its family as slow as the last complete one still fits (its first fold, when
    trials are screened).
    """
    started = time.perf_counter() if started is None else started
    trials: list[Trial] = []
    last_seconds: dict[str, float] = {}
    firsts = set()
    holdout, screening = scoring(len(y)) == "holdout", scoring(len(y)) == "screened"
    for family, params in configurations(seed):
        if family not in families:
            continue
        if max_trials is not None and len(trials) >= max_trials:
            break
        left = budget_seconds - (time.perf_counter() - started) - reserve(trials)
        first = family not in firsts
        # a screened trial needs its first fold to fit; should it go on, its share cuts it
        needed = {f: seconds / (folds if screening else 1) for f, seconds in last_seconds.items()}
        if max_trials is None and not first and needed.get(family, 0.0) > left:
            if all(needed[f] > left for f in needed):
                break
            continue
        share = math.inf
        if max_trials is None:  # what is left, shared with the untried families' firsts and
            # with this trial's own refits should it win (see `run.refit_seconds`)
            fits = 1 if holdout else folds  # the trial's; a refit is one on more rows
            share = max(left, 0.0) / (len(set(families) - firsts) if first else 1) \
                / (1 + REFITS * folds / ((folds - 1) * fits))
        firsts.add(family)
        trial = cross_validate(family, params, x, y, n_classes, folds, seed, share, copies,
                               go_on=screen(trials) if screening and not first else None,
                               holdout=holdout)
        trials.append(trial)
        if trial.complete:  # a screened trial's time says nothing of a whole one's
            last_seconds[family] = trial.seconds
        best = max((t for t in trials if t.complete), key=lambda t: t.score)
        progress(f"trial {len(trials):>3} {family:<19} {trial.shown()} | "
                 f"{time.perf_counter() - started:5.1f} s of "
                 f"{budget_seconds:g} s | best {best.score:.4f} ({best.family})")
    return trials
