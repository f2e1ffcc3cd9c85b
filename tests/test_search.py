"""The search's clock: trials cut at their share of the budget, in process (fast)."""

import math

import numpy as np
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
