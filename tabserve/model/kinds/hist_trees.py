"""scikit-learn's HistGradientBoostingClassifier as an XGBoost booster, so that an imported one
is served, explained and checked exactly as XGBoost's own models are (`fitted.BoostedTrees`).

Both are sums of regression trees per output, turned into probabilities by the sigmoid (one
output) or the softmax (one per class). The trees are copied node by node: a split's column,
threshold and branch for missing values, a node's sample count as its cover (tree SHAP's
weights), a leaf's value. Two things differ and are made equal:
- scikit-learn sends `x <= t` left, XGBoost `x < t` on float32 values: the threshold becomes
  the float32 just above t's float32 rounding (`float32_threshold`), so a value takes the
  branch it took before unless it lies above t by less than float32's rounding;
- scikit-learn starts from a baseline per output; it is added to the leaves of the first
  round's trees, so the booster starts from a margin of 0.
Leaf values are stored as float32, as XGBoost stores its own: margins agree to about 1e-6.
Natively categorical splits (bitsets of levels) have no counterpart in the served trees: a
model with them is served through its own `predict_proba` (`training.importing`).
"""

from __future__ import annotations

import numpy as np

from tabserve.model.kinds import Kind, as_xgboost, named
from tabserve.model.xgboost_trees import model_document, tree_json

FLOAT32_MAX = np.finfo(np.float32).max


def float32_threshold(threshold: np.ndarray) -> np.ndarray:
    """XGBoost's threshold for scikit-learn's t: the float32 just above t's float32 rounding.
    Rounding keeps order, so x <= t gives float32(x) < it; only an x above t that rounds to
    the same float32 as t goes the other way. (scikit-learn's thresholds are often values of
    the data: those go as they did.) An infinite t, which parts missing values from every
    number, becomes float32's largest number: XGBoost's text dumps cannot say infinity."""
    with np.errstate(over="ignore"):
        rounded = np.asarray(threshold, np.float64).astype(np.float32)
    return np.where(np.isinf(rounded), FLOAT32_MAX,
                    np.nextafter(rounded, np.float32(np.inf))).astype(np.float32)


def is_translatable(model) -> bool:
    """A fitted HistGradientBoostingClassifier without natively categorical splits."""
    return not any(predictor.nodes["is_categorical"].any()
                   for round_ in model._predictors for predictor in round_)


def booster_json(model) -> bytes:
    """The model in XGBoost's JSON format (read with `xgboost.Booster(model_file=...)`)."""
    n_classes = len(model.classes_)
    baseline = np.asarray(model._baseline_prediction, np.float64).reshape(-1)
    trees = []
    for round_, predictors in enumerate(model._predictors):
        for output, predictor in enumerate(predictors):
            start = baseline[output] if round_ == 0 else 0.0
            trees.append(_tree(predictor.nodes, len(trees), model.n_features_in_, start))
    # a margin of 0 to start from: the logit of 0.5; softmax reads it as a margin
    return model_document(trees, "binary:logistic" if n_classes == 2 else "multi:softprob",
                          [0.5] if n_classes == 2 else [0.0] * n_classes, n_classes,
                          model.n_features_in_)


def _tree(nodes: np.ndarray, tree_id: int, n_features: int, start: float) -> dict:
    """One tree in XGBoost's JSON layout; `start` is added to every leaf."""
    nodes = nodes[_breadth_first(nodes)]
    split = ~nodes["is_leaf"].astype(bool)
    left = np.full(len(nodes), -1, np.int64)
    left[split] = 1 + 2 * np.arange(int(split.sum()))  # children in pairs, in the splits' order
    return tree_json(left, nodes["feature_idx"], float32_threshold(nodes["num_threshold"]),
                     nodes["missing_go_to_left"], nodes["value"] + start, nodes["count"],
                     tree_id, n_features, gain=nodes["gain"])


def _breadth_first(nodes: np.ndarray) -> np.ndarray:
    """The nodes' order level by level, a split's two children side by side, as XGBoost
    numbers its own (its predictor relies on it)."""
    order, at = [0], 0
    while at < len(order):
        node = nodes[order[at]]
        if not node["is_leaf"]:
            order += [int(node["left"]), int(node["right"])]
        at += 1
    return np.array(order, np.intp)


def _why_not(classifier) -> str | None:
    return None if is_translatable(classifier) else \
        "the HistGradientBoostingClassifier splits levels natively (categorical_features)"


KIND = Kind("HistGradientBoosting", named("sklearn", "HistGradientBoostingClassifier"),
            lambda c, mean, k: as_xgboost(booster_json(c), k, len(mean)), _why_not,
            float64_thresholds=True)
