"""The search's clock and accounting: trials cut at their share of the budget, screened on
the first fold, scored on a holdout; in process (fast)."""

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification

from tabserve.training import search


@pytest.fixture(scope="module")
def table():
    return make_classification(n_samples=600, n_features=6, random_state=0)


def test_a_forest_that_beats_its_deadline_is_the_forest_grown_without_one(table):
    """What `--trials N` (no clock) scores is what a timed run scored, when nothing was cut."""
    x, y = table
    params = {"min_samples_leaf": 3, "max_features": "sqrt"}
    timed, fitted = search.fit_model("random_forest", params, x, y, 2, seed=1,
                                     deadline=10**9)
    untimed, _ = search.fit_model("random_forest", params, x, y, 2, seed=1)  # one fit
    assert fitted == params and len(timed[-1].estimators_) == 300
    for a, b in zip(timed[-1].estimators_, untimed[-1].estimators_, strict=True):  # same trees
        assert np.array_equal(a.tree_.threshold, b.tree_.threshold)
        assert np.array_equal(a.tree_.value, b.tree_.value)


@pytest.mark.parametrize("family", ["random_forest", "xgboost"])
def test_a_fit_past_its_deadline_stops_growing_and_says_so(table, family):
    x, y = table
    params = {"min_samples_leaf": 3, "max_features": "sqrt"} if family == "random_forest" \
        else {"max_depth": 3, "learning_rate": 0.01}
    model, fitted = search.fit_model(family, params, x, y, 2, seed=1, deadline=-math.inf)
    assert fitted["cut"] is True
    assert fitted["n_estimators"] == (search.FOREST_CHUNK if family == "random_forest" else 1)
    assert model[-1].get_params().get("callbacks") is None  # nothing of the clock is kept


def test_a_trial_with_some_folds_cut_refits_with_their_median_tree_count(table, monkeypatch):
    """Only the first fold runs out of time: the others' whole forests count 300 trees."""
    x, y = table
    fit_model = search.fit_model
    folds_seen = []

    def first_fold_late(*args, deadline):
        folds_seen.append(deadline)
        return fit_model(*args, deadline=-math.inf if len(folds_seen) == 1 else math.inf)
    monkeypatch.setattr(search, "fit_model", first_fold_late)
    trial = search.cross_validate("random_forest", {"min_samples_leaf": 3,
                                                    "max_features": "sqrt"}, x, y, 2, folds=5,
                                  seed=1, seconds=100.0)
    assert trial.cut and trial.params["n_estimators"] == 300  # median of 50 and four 300s
    assert trial.describe()["cut_by_budget"] is True


def test_without_copies_the_folds_are_stratified_k_fold_itself(table):
    from sklearn.model_selection import StratifiedKFold
    _, y = table
    expected = StratifiedKFold(n_splits=5, shuffle=True, random_state=3).split(y, y)
    for (fit, score), (fit0, score0) in zip(search.fold_rows(y, 5, 3), expected, strict=True):
        assert np.array_equal(fit, fit0) and np.array_equal(score, score0)


def test_a_row_and_its_copies_share_one_fold(table):
    _, y = table
    copies = np.arange(len(y)) % 200  # every row three times
    seen = np.zeros(len(y), dtype=int)
    for fit, score in search.fold_rows(y, 5, 3, copies):
        assert not set(copies[fit]) & set(copies[score])
        seen[score] += 1
    assert (seen == 1).all()


# --- screening on the first fold (large tables) ----------------------------------------------

def test_on_a_large_table_later_trials_are_screened_on_the_first_fold(table, monkeypatch):
    """Each family's first trial is complete; a later one whose first fold trails the best
    complete trial's first fold by more than the margin stops there, and is never the best."""
    monkeypatch.setattr(search, "SCREENED_ROWS", 500)  # the fixture's 600 rows: screened
    x, y = table
    lines = []
    trials = search.search(x, y, 2, folds=5, seed=1, budget_seconds=math.inf, max_trials=14,
                           families=("logistic_regression", "xgboost"), progress=lines.append)
    assert len(trials) == 14
    # the progress line says what a screened trial's one score is, not a spread of 0.0000
    for line, trial in zip(lines, trials):
        assert ("(first fold only: screened out)" in line) == trial.screened_out, line
        assert ("± " in line and "over 5 folds" in line) == trial.complete, line
    firsts = {}
    for trial in trials:
        firsts.setdefault(trial.family, trial)
    assert all(t.complete and len(t.folds) == 5 for t in firsts.values())
    screened = [t for t in trials if t.screened_out]
    assert screened, "some configurations trail the best on the first fold"
    for at, trial in enumerate(trials):
        complete_before = [t for t in trials[:at] if t.complete]
        if trial in firsts.values() or not complete_before:
            continue
        best_first = max(t.folds[0] for t in complete_before)
        assert trial.screened_out == (trial.folds[0] < best_first - search.SCREEN_MARGIN)
        assert len(trial.folds) == (1 if trial.screened_out else 5)
        assert trial.describe().get("screened_out", False) == trial.screened_out
    blend = search.blend_trial(trials, y, 5, 1)
    assert all(not t.screened_out for t in trials if t.params in
               [m["params"] for m in blend.params["members"]])


def test_below_the_large_table_size_every_trial_is_complete(table):
    x, y = table
    trials = search.search(x, y, 2, folds=5, seed=1, budget_seconds=math.inf, max_trials=10,
                           families=("logistic_regression", "xgboost"))
    assert all(t.complete and len(t.folds) == 5 for t in trials)


def test_the_refit_reserve_and_the_choice_ignore_screened_trials(table):
    """A screened trial's one lucky fold must not plan the refits or be chosen."""
    from tabserve.training.trainer import refit_seconds

    x, y = table
    whole = search.cross_validate("logistic_regression", {"C": 1.0, "knots": 0}, x, y, 2, 5, 1)
    lucky = search.Trial("xgboost", {}, [1.0], 0.001, whole.out_of_fold, screened_out=True)
    assert refit_seconds([whole, lucky], 5, blend=False) == \
        refit_seconds([whole], 5, blend=False)


def test_on_a_very_large_table_every_trial_is_scored_on_one_holdout(table, monkeypatch):
    """One fit per trial, on the first fold's split: the blend, calibration and profile use
    the holdout's rows, and the refit reserve counts one fit, not five."""
    from tabserve.training.trainer import refit_seconds

    monkeypatch.setattr(search, "HOLDOUT_ROWS", 500)
    x, y = table
    trials = search.search(x, y, 2, folds=5, seed=1, budget_seconds=math.inf, max_trials=6,
                           families=("logistic_regression", "xgboost"))
    holdout = search.fold_rows(y, 5, 1)[0][1]
    assert all(len(t.folds) == 1 and t.complete and np.array_equal(t.scored, holdout)
               for t in trials)
    assert trials[0].folds[0] == pytest.approx(
        search.roc_auc(y[holdout], trials[0].out_of_fold[holdout]))
    blend = search.blend_trial(trials, y, 5, 1)
    assert np.array_equal(blend.scored, holdout) and len(blend.folds) == 1
    one_fit = trials[0].seconds * 5 / 4 * search.REFITS  # a fit on 4/5 of the rows, scaled
    assert refit_seconds(trials[:1], 5, blend=False) == pytest.approx(one_fit)


def test_a_model_trained_on_a_holdout_is_calibrated_and_profiled_on_its_rows(monkeypatch):
    from tabserve.training.trainer import train

    monkeypatch.setattr(search, "HOLDOUT_ROWS", 500)
    x, y = make_classification(n_samples=900, n_features=4, random_state=3)
    frame = pd.DataFrame(x, columns=list("abcd")).astype(str)
    frame["outcome"] = np.where(y == 1, "yes", "no")
    result = train(frame, "outcome", max_trials=4)
    cv = result.bundle.metrics["cv"]
    assert cv["scoring"] == "holdout" and all(len(t.folds) == 1 for t in result.trials)
    train_rows = result.bundle.metrics["rows"]["train"]
    assert result.bundle.profile.rows == train_rows  # the fields: every training row
    assert sum(result.bundle.profile.score.shares) == pytest.approx(1.0)
    assert result.bundle.metrics["calibration"]["method"] in ("none", "Platt scaling")


def test_a_small_table_is_said_to_give_rough_figures():
    """32 rows (a first try with a tiny CSV) leave 7 test rows: training goes on, and says
    what that means for the model card; 600 rows leave 120 and say nothing."""
    from tabserve.training.trainer import split_rows

    for rows, warned in ((32, True), (600, False)):
        frame = pd.DataFrame({"x": np.arange(rows, dtype=float), "y": ["a", "b"] * (rows // 2)})
        lines = []
        split = split_rows(frame, np.arange(rows) % 2, seed=1, folds=5, log=lines.append)
        said = [line for line in lines if "warning" in line]
        assert bool(said) == warned, lines
        if warned:
            assert said == [f"  warning: 32 rows, so the test split holds {len(split.test)}: the "
                            "model card's figures are rough (about 500 rows or more make them "
                            "trustworthy)"]
