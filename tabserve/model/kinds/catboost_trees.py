"""CatBoost's trees as XGBoost's, so that an imported CatBoost model is served, explained and
checked exactly as XGBoost's own models are (`fitted.BoostedTrees`), and neither the server nor
its image needs CatBoost.

CatBoost grows symmetric (oblivious) trees: every node of a level splits on the same column
and border, and a record's leaf is the number whose bit i says whether it went right at split
i. Such a tree of depth d is written out as the complete binary tree of 2^d leaves, the last
split at its root, so its leaves fall in CatBoost's order. The copy is exact: CatBoost reads
values as float32 and sends `x > border` right, so XGBoost's `x < t` left takes t as the
float32 just above the border; a missing value goes where CatBoost's `nan_value_treatment`
sends it ("AsTrue": right, else left); a leaf's training weight is its cover (CatBoost's own
SHAP weighs by them); `scale_and_bias` go into the leaves (the bias into the first tree's).
Multiclass leaves hold a value per class: each tree becomes one tree per class, in XGBoost's
order. Leaves are float32, as XGBoost keeps them. Categorical features (CatBoost's statistics
of levels, one-hot splits), text and non-symmetric trees have no counterpart: `untranslatable`
says so, and such a model is served through its own `predict_proba` (`training.importing`).
Its `KIND`: a `CatBoostClassifier`, pickled or saved in CatBoost's format (`model.cbm`); kept
whole, its categorical features are never given a missing level (NaN is an error there).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from tabserve.model.kinds import Kind, as_xgboost, named, read_by_library
from tabserve.model.xgboost_trees import model_document, tree_json

LOSSES = ("Logloss", "CrossEntropy", "MultiClass")


def untranslatable(document: dict) -> str | None:
    """Why the model (CatBoost's JSON document of it) cannot be served as XGBoost's trees, in
    a few words; None when it can."""
    loss = document["model_info"].get("params", {}).get("loss_function", {}).get("type")
    if loss not in LOSSES:
        return f"the CatBoost loss is {loss!r} (Logloss and MultiClass are served as data)"
    features = document["features_info"]
    if any(features.get(kind) for kind in ("categorical_features", "text_features",
                                           "embedding_features")):
        return "the CatBoost model reads categorical or text features (cat_features)"
    if "oblivious_trees" not in document or any(
            split.get("split_type") != "FloatFeature"
            for tree in document["oblivious_trees"] for split in tree["splits"]):
        return "the CatBoost model's trees are not symmetric splits of numbers (grow_policy)"
    return None


def booster_json(document: dict, n_classes: int, n_features: int) -> bytes:
    """The model in XGBoost's JSON format, read with `xgboost.Booster(model_file=...)`;
    `untranslatable` must have said None."""
    reason = untranslatable(document)
    if reason:
        raise ValueError(reason)
    outputs = 1 if n_classes == 2 else n_classes
    scale, bias = document.get("scale_and_bias", [1.0, [0.0]])
    bias = np.broadcast_to(np.asarray(bias, np.float64), (outputs,))
    features = {f["feature_index"]: f for f in document["features_info"]["float_features"]}
    trees = []
    for at, tree in enumerate(document["oblivious_trees"]):
        values = np.asarray(tree["leaf_values"], np.float64).reshape(-1, outputs) * scale
        if at == 0:
            values = values + bias
        for output in range(outputs):
            trees.append(_tree(tree, values[:, output], features, len(trees), n_features))
    # a margin of 0 to start from (the logit of 0.5; softmax reads it as a margin)
    return model_document(trees, "binary:logistic" if n_classes == 2 else "multi:softprob",
                          [0.5] if n_classes == 2 else [0.0] * n_classes, n_classes, n_features)


def _tree(tree: dict, leaves: np.ndarray, features: dict, tree_id: int,
          n_features: int) -> dict:
    """One symmetric tree as a complete binary tree, breadth-first (node k's children are
    2k + 1 and 2k + 2): level l splits on the tree's split d - 1 - l, so the leaves, left to
    right, are CatBoost's leaves in its order."""
    splits = tree["splits"]
    depth = len(splits)
    inner = 2 ** depth - 1
    count = 2 * inner + 1
    level = np.floor(np.log2(np.arange(1, inner + 1))).astype(np.int64)  # of each split
    chosen = [splits[depth - 1 - lv] for lv in level.tolist()]
    used = [features[split["float_feature_index"]] for split in chosen]
    left = np.full(count, -1, np.int64)
    left[:inner] = 1 + 2 * np.arange(inner)
    # `x > border` goes right: everything at or below the border goes left (a border at
    # float32's largest, which nan_mode "Max" may set, stays there: only +inf goes right)
    borders = np.array([split["border"] for split in chosen], np.float32)
    with np.errstate(over="ignore"):
        threshold = np.nextafter(borders, np.float32(np.inf))
    threshold = np.minimum(threshold, np.finfo(np.float32).max)
    value = np.zeros(count)
    value[inner:] = leaves
    cover = np.zeros(count)
    # a leaf no training row reached weighs nearly nothing, not 0 (tree SHAP divides by
    # covers): explanations stay CatBoost's own to ~1e-6
    cover[inner:] = np.maximum(np.asarray(tree["leaf_weights"], np.float64), 1e-6)
    for node in range(inner - 1, -1, -1):  # a node's cover is its leaves' weight
        cover[node] = cover[2 * node + 1] + cover[2 * node + 2]
    zeros_at_leaves = [0] * (count - inner)
    return tree_json(left, [f["flat_feature_index"] for f in used] + zeros_at_leaves,
                     np.concatenate([threshold, zeros_at_leaves]),
                     [f["nan_value_treatment"] != "AsTrue" for f in used] + zeros_at_leaves,
                     value, cover, tree_id, n_features)


def _document(classifier) -> dict:
    with tempfile.TemporaryDirectory() as folder:  # CatBoost writes its JSON only to a file
        classifier.save_model(f"{folder}/model.json", format="json")
        return json.loads(Path(f"{folder}/model.json").read_text())


def _trees(classifier, mean, n_classes: int):
    return as_xgboost(booster_json(_document(classifier), n_classes, len(mean)), n_classes,
                      len(mean))


def levels_never_missing(model) -> list[str]:
    """Its categorical features: an integer or a text, never NaN."""
    return [model.feature_names_[i] for i in model.get_cat_feature_indices()]


KIND = Kind("CatBoost", named("catboost", "CatBoostClassifier"), _trees,
            lambda classifier: untranslatable(_document(classifier)), suffixes=(".cbm",),
            # a classifier saved in CatBoost's format: `save_model("model.cbm")`
            read=lambda path: read_by_library(
                path, "catboost", lambda cb, file: cb.CatBoostClassifier().load_model(file),
                lambda cb: cb.CatBoostError),
            feature_names=lambda model: model.feature_names_,
            levels_never_missing=levels_never_missing)
