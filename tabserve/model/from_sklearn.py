"""Fitted scikit-learn and XGBoost steps (those after the encoder) as data (`model.fitted`):
the arrays they hold, copied, so what is served is exactly what was fitted. Training and
`import_model.py` call this; serving never builds scikit-learn objects from a file."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from tabserve.model.blend import Blend
from tabserve.model.sklearn_steps import Hinges
from tabserve.model.fitted import BlendModel, BoostedTrees, FittedModel, Forest, LinearModel
from tabserve.model.pickles import pickled_steps
from tabserve.model.xgboost_trees import trees_from_booster


def fitted_model(steps: Pipeline, width: int) -> FittedModel:
    """The steps as data when their layout is known; otherwise pickled (`PickledSteps`), which
    a server reads only when told to trust it."""
    return translated(steps) or pickled_steps(steps, width)


def translated(steps: Pipeline) -> FittedModel | None:
    """The steps as data, or None for a layout this module does not know."""
    fitted = [step for _, step in steps.steps]
    if [type(step) for step in fitted] == [Blend]:
        members = [translated(member) for member in fitted[0].members]
        if all(isinstance(m, (LinearModel, BoostedTrees)) for m in members):
            return BlendModel(members, [float(w) for w in fitted[0].weights])
        return None
    return (linear_model(fitted) or boosted_trees(fitted) or forest(fitted))


def linear_model(fitted: list) -> LinearModel | None:
    """Imputation by medians or means, optional hinges, standardisation, logistic regression."""
    kinds = [type(step) for step in fitted]
    if kinds not in ([SimpleImputer, StandardScaler, LogisticRegression],
                     [SimpleImputer, Hinges, StandardScaler, LogisticRegression]):
        return None
    imputer, *hinges, scaler, model = fitted
    if imputer.strategy not in ("median", "mean") or imputer.add_indicator:
        return None
    width = len(imputer.statistics_) + (len(hinges[0].knots_) if hinges else 0)
    return LinearModel(
        fill=imputer.statistics_.astype(np.float64),
        hinge_columns=(hinges[0].columns_ if hinges else np.zeros(0)).astype(np.int64),
        hinge_knots=(hinges[0].knots_ if hinges else np.zeros(0)).astype(np.float64),
        mean=scaler.mean_ if scaler.with_mean else np.zeros(width),
        scale=scaler.scale_ if scaler.with_std else np.ones(width),
        coef=np.asarray(model.coef_, np.float64), intercept=np.asarray(model.intercept_, np.float64))


def boosted_trees(fitted: list) -> BoostedTrees | None:
    """An XGBoost classifier alone, its trees as arrays."""
    if len(fitted) != 1 or not hasattr(fitted[0], "get_booster"):
        return None
    return trees_from_booster(fitted[0].get_booster(), len(fitted[0].classes_))


def forest(fitted: list) -> Forest | None:
    """A scikit-learn RandomForest or ExtraTrees alone: each tree's node arrays, in order; a
    DecisionTree alone is a forest of one tree."""
    if len(fitted) != 1 or type(fitted[0]) not in (RandomForestClassifier, ExtraTreesClassifier,
                                                   DecisionTreeClassifier):
        return None
    model = fitted[0]
    estimators = [model] if type(model) is DecisionTreeClassifier else model.estimators_
    trees = [estimator.tree_ for estimator in estimators]
    joined = {name: np.concatenate([getattr(tree, name) for tree in trees])
              for name in ("children_left", "children_right", "feature", "threshold",
                           "missing_go_to_left")}
    return Forest(
        n_classes=int(model.n_classes_), n_features=int(model.n_features_in_),
        node_counts=np.array([tree.node_count for tree in trees], np.int64),
        left=joined["children_left"].astype(np.int64),
        right=joined["children_right"].astype(np.int64),
        feature=joined["feature"].astype(np.int64),
        threshold=joined["threshold"].astype(np.float64),
        missing_left=joined["missing_go_to_left"].astype(np.uint8),
        value=np.concatenate([tree.value[:, 0, :model.n_classes_] for tree in trees]))
