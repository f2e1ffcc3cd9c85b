"""LightGBM's trees as XGBoost's, so that an imported LightGBM model is served, explained and
checked exactly as XGBoost's own models are (`fitted.BoostedTrees`), and neither the server nor
its image needs LightGBM.

Both are sums of regression trees per output (one tree per class a round when multiclass),
read through the sigmoid or the softmax. The trees are copied node by node from LightGBM's own
model document (`Booster.dump_model()`): a split's column, threshold and side for missing
values, a node's count of training rows as its cover (LightGBM's tree SHAP weighs by counts),
a leaf's value. What differs is made equal:
- LightGBM sends `x <= t` left, comparing doubles; XGBoost `x < t` on float32 values: the
  threshold becomes the float32 just above t's float32 rounding (`hist_trees.float32_threshold`),
  so a value takes LightGBM's branch unless it lies above t by less than float32's rounding
  (the import checks the sample's answers, and keeps the model whole if one does);
- a missing value: LightGBM's missing type "NaN" sends it to the default side, "None" reads it
  as 0 (so it goes where 0 goes), "Zero" sends zeros and missing values to the default side,
  which the served trees can say only where 0 goes there anyway;
- `binary sigmoid:s` reads s × the margin, and a random forest (`average_output`) the mean of
  its trees: both go into the leaves.
Leaves are float32, as XGBoost keeps them: margins agree to about 1e-7. Categorical splits
(bitsets of levels) and linear trees have no counterpart: `untranslatable` says so, and such a
model is served through its own `predict_proba` (`training.importing`). Its `KIND`: an
`LGBMClassifier` or a booster of `lightgbm.train`, pickled or saved as text (`model.txt`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tabserve.model.kinds import (Booster, ImportRefused, Kind, as_xgboost, library_of,
                                  read_by_library)
from tabserve.model.kinds.hist_trees import float32_threshold
from tabserve.model.xgboost_trees import model_document, tree_json


def objective(document: dict) -> tuple[str, dict[str, str]]:
    """LightGBM's objective ("binary", "multiclass", ...) and its parameters."""
    name, *params = str(document.get("objective", "")).split()
    return name, dict(param.split(":", 1) for param in params if ":" in param)


def untranslatable(document: dict) -> str | None:
    """Why the model cannot be served as XGBoost's trees, in a few words; None when it can."""
    name, _ = objective(document)
    if name not in ("binary", "multiclass"):
        return f"the LightGBM objective is {name!r} (binary and multiclass are served as data)"
    for info in document["tree_info"]:
        if info.get("num_cat", 0) or info.get("is_linear"):
            return "the LightGBM model splits levels natively (categorical_feature)" \
                if info.get("num_cat", 0) else "the LightGBM model has linear trees"
        for node in _nodes(info["tree_structure"]):
            if "split_feature" not in node:
                continue
            if node["decision_type"] != "<=":
                return "the LightGBM model splits levels natively (categorical_feature)"
            if node["missing_type"] == "Zero" and node["default_left"] != (0.0 <= node["threshold"]):
                return "the LightGBM model reads zeros as missing values (zero_as_missing)"
    return None


def booster_json(document: dict, n_classes: int, n_features: int) -> bytes:
    """The model (its `dump_model()` document) in XGBoost's JSON format, read with
    `xgboost.Booster(model_file=...)`; `untranslatable` must have said None."""
    reason = untranslatable(document)
    if reason:
        raise ValueError(reason)
    _, params = objective(document)
    trees = document["tree_info"]
    outputs = 1 if n_classes == 2 else n_classes
    if int(document["num_tree_per_iteration"]) != outputs or len(trees) % outputs:
        raise ValueError(f"the LightGBM model has {document['num_tree_per_iteration']} trees a "
                         f"round for {n_classes} classes")
    scale = float(params.get("sigmoid", 1.0)) if n_classes == 2 else 1.0
    if document.get("average_output"):
        scale /= len(trees) // outputs
    written = [_tree(info["tree_structure"], at, n_features, scale)
               for at, info in enumerate(trees)]
    # a margin of 0 to start from (the logit of 0.5; softmax reads it as a margin): LightGBM
    # keeps its starting score in the first round's leaves
    return model_document(written, "binary:logistic" if n_classes == 2 else "multi:softprob",
                          [0.5] if n_classes == 2 else [0.0] * n_classes, n_classes, n_features)


def _nodes(root: dict):
    """Every node of a tree, parents first (without recursion: trees grown leaf-wise can be
    thousands of levels deep)."""
    waiting = [root]
    while waiting:
        node = waiting.pop()
        yield node
        if "split_feature" in node:
            waiting += [node["right_child"], node["left_child"]]


def _tree(root: dict, tree_id: int, n_features: int, scale: float) -> dict:
    """One tree in XGBoost's JSON layout: breadth-first, a split's two children side by side
    (XGBoost's predictor relies on it)."""
    order, at = [root], 0
    while at < len(order):
        if "split_feature" in order[at]:
            order += [order[at]["left_child"], order[at]["right_child"]]
        at += 1
    split = np.array(["split_feature" in node for node in order])
    left = np.full(len(order), -1, np.int64)
    left[split] = 1 + 2 * np.arange(int(split.sum()))
    threshold = np.array([node.get("threshold", 0.0) for node in order], np.float64)
    value = np.array([node.get("internal_value", 0.0) if "split_feature" in node
                      else node["leaf_value"] for node in order], np.float64) * scale
    return tree_json(
        left, [node.get("split_feature", 0) for node in order], float32_threshold(threshold),
        [_default_left(node) for node in order], value,
        [node.get("internal_count", node.get("leaf_count", 0)) for node in order],
        tree_id, n_features, gain=[node.get("split_gain", 0.0) for node in order])


def _default_left(node: dict[str, Any]) -> bool:
    """Where a missing value goes: the default side, or where LightGBM's 0 goes when it reads
    a missing value as 0 (missing type "None")."""
    if "split_feature" not in node:
        return False
    if node["missing_type"] == "None":
        return 0.0 <= node["threshold"]
    return bool(node["default_left"])


def lightgbm_booster(classifier: Any):
    """LightGBM's booster of an `LGBMClassifier` (or a booster itself); None for anything
    else."""
    if library_of(classifier) != "lightgbm":
        return None
    import lightgbm

    if isinstance(classifier, lightgbm.Booster):
        return classifier
    return classifier.booster_ if isinstance(classifier, lightgbm.LGBMClassifier) else None


def _why_not(classifier) -> str | None:
    document = lightgbm_booster(classifier).dump_model()
    if document.get("pandas_categorical"):
        raise ImportRefused(
            f"the {type(classifier).__name__} was fitted on pandas category columns, which it "
            "reads only as such: fit it after an OrdinalEncoder in a Pipeline")
    return untranslatable(document)


def _trees(classifier, mean, n_classes: int):
    return as_xgboost(booster_json(lightgbm_booster(classifier).dump_model(), n_classes,
                                   len(mean)), n_classes, len(mean))


def booster(model, sample_columns: list[str]) -> Booster | None:
    """A LightGBM booster (from `lightgbm.train`): its columns by name, or the sample's in
    order when it was trained on an array (LightGBM then names them Column_0, ...); None for
    an LGBMClassifier (it has predict_proba)."""
    if lightgbm_booster(model) is not model:
        return None
    document = model.dump_model()
    name, _ = objective(document)
    if name not in ("binary", "multiclass"):
        raise ImportRefused(f"the LightGBM booster's objective is {name}: import supports "
                            "classifiers (binary, multiclass)")
    reason = untranslatable(document)
    if reason:  # a booster has no predict_proba to be served through
        raise ImportRefused(f"{reason}: a LightGBM booster is imported as data only; import an "
                            "LGBMClassifier fitted on a DataFrame to serve it as it is")
    names = model.feature_name()
    if names == [f"Column_{i}" for i in range(len(names))] and names[0] not in sample_columns:
        names = sample_columns
    if len(names) != model.num_feature():
        raise ImportRefused(f"the LightGBM booster reads {model.num_feature()} columns; the "
                            f"sample has {len(names)} besides the target")
    return Booster(list(names), max(2, int(document["num_class"])), model.predict,
                   "a LightGBM booster")


KIND = Kind("LightGBM", lambda c: lightgbm_booster(c) is not None, _trees, _why_not,
            float64_thresholds=True, suffixes=(".txt",), booster=booster,
            # a booster saved as text: `save_model("model.txt")`
            read=lambda path: read_by_library(path, "lightgbm",
                                              lambda lgb, file: lgb.Booster(model_file=file),
                                              lambda lgb: lgb.basic.LightGBMError))
