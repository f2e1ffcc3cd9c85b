"""XGBoost's trees as data, both ways: a booster's document (its JSON, or the UBJSON of older
bundles read by `model.ubjson`) into `fitted.BoostedTrees`' checked arrays, and those arrays
back into the document XGBoost reads. So XGBoost parses only what this module wrote from
arrays that passed their checks, never a file's own bytes.

Trees are renumbered breadth-first with a split's children side by side, as XGBoost numbers
its own (its predictor relies on it); nodes a pruning left unreachable are dropped. Numbers
stay float32, as XGBoost keeps them, so the answers are the booster's to the bit.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import numpy as np

from tabserve.model import ubjson
from tabserve.model.fitted import (BOOSTED_OBJECTIVES, BlendModel, BoostedTrees, ModelFileError,
                                   XGBoostFile, outputs_of)

NO_PARENT = 2147483647  # XGBoost's parent of a root


def trees_from_booster(booster, n_classes: int) -> BoostedTrees:
    """A fitted booster (training, import: the user's own object) as arrays, with their base
    margin measured."""
    return measured(trees_from_document(json.loads(booster.save_raw("json")), n_classes,
                                        booster.num_features()))


def measured(trees: BoostedTrees) -> BoostedTrees:
    """`trees` with `base_margin` set: XGBoost's margin for a record of zeros, less the leaves
    that record reaches, summed as the served walks sum them. XGBoost turns `base_score` into
    a margin by float32 arithmetic of its own, and its predictor adds float32 leaves: over
    hundreds of trees its margin and a float64 sum of the same leaves part by ~1e-6, so the
    margin is measured, where XGBoost is loaded anyway (training, import), not recomputed
    where a server starts."""
    import xgboost

    zero = np.zeros((1, trees.n_features), np.float32)
    margin = loaded_booster(trees).predict(xgboost.DMatrix(zero), output_margin=True).reshape(-1)
    reached = np.add.reduce(leaves_reached(trees, zero[0]).reshape(-1, trees.outputs), axis=0)
    return msgspec.structs.replace(trees, base_margin=(margin - reached).tolist())


def leaves_reached(trees: BoostedTrees, record: np.ndarray) -> np.ndarray:
    """The value (float64) of the leaf each tree sends one record (float32, no missing value)
    to, tree by tree."""
    starts = np.concatenate([[0], np.cumsum(trees.node_counts)[:-1]]).astype(np.intp)
    node = starts.copy()
    while True:
        split = trees.left[node] >= 0
        if not split.any():
            return trees.value[node].astype(np.float64)
        at = node[split]
        # `x < threshold` goes left; its right sibling follows it
        go_right = record[trees.feature[at]] >= trees.threshold[at]
        node[split] = starts[split] + trees.left[at] + go_right


def loaded_booster(trees: BoostedTrees):
    """The booster, read by XGBoost from the document this module writes from the checked
    arrays (one thread: workers are processes)."""
    import xgboost

    try:
        loaded = xgboost.Booster(model_file=bytearray(booster_document(trees)))
    except xgboost.core.XGBoostError as err:
        raise ModelFileError(f"XGBoost cannot read the model's trees: "
                             f"{str(err).splitlines()[0]}") from None
    loaded.set_param({"nthread": 1})
    return loaded


def trees_from_file(model: XGBoostFile) -> BoostedTrees:
    """An older bundle's booster, read by the bounded reader; `ModelFileError` in one line."""
    try:
        document = ubjson.decode(model.booster.data)
    except ubjson.UbjsonError as err:
        raise ModelFileError(f"its XGBoost booster is not valid UBJSON: {err}") from None
    return trees_from_document(document, model.n_classes, model.n_features)


def trees_from_document(document: Any, n_classes: int, n_features: int) -> BoostedTrees:
    """XGBoost's model document (as `save_raw("json")` writes it) as arrays; the document is
    read as hostile input: `ModelFileError` names what is wrong with it, in one line."""
    try:
        return _trees(document, n_classes, n_features)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
        if isinstance(err, ModelFileError):
            raise
        raise ModelFileError(f"its XGBoost booster is malformed ({type(err).__name__}: "
                             f"{str(err)[:80]})") from None


def _trees(document: dict, n_classes: int, n_features: int) -> BoostedTrees:
    learner = document["learner"]
    objective = learner["objective"]["name"]
    if objective not in BOOSTED_OBJECTIVES:
        raise ModelFileError(f"the XGBoost booster's objective is {str(objective)[:40]!r}; "
                             f"served objectives are {', '.join(BOOSTED_OBJECTIVES)}")
    params = learner["learner_model_param"]
    if str(params.get("num_target", "1")) != "1":
        raise ModelFileError("the XGBoost booster has several targets per tree")
    if int(params["num_feature"]) != n_features:
        raise ModelFileError(f"the XGBoost booster reads {params['num_feature']} columns, the "
                             f"bundle says {n_features}")
    booster = learner["gradient_booster"]
    if booster["name"] != "gbtree":
        raise ModelFileError(f"the XGBoost booster is a {str(booster['name'])[:20]!r}, "
                             "not trees")
    model = booster["model"]
    trees = model["trees"]
    outputs = outputs_of(n_classes)
    info = np.asarray(model["tree_info"], np.int64)
    if len(info) != len(trees) or not np.array_equal(info, np.arange(len(trees)) % outputs):
        raise ModelFileError("the XGBoost booster's trees are not one per output a round")
    nodes = [_breadth_first(tree) for tree in trees]
    joined = {name: np.concatenate([tree[name] for tree in nodes]) if nodes else np.zeros(0)
              for name in ("left", "feature", "threshold", "default_left", "value", "cover")}
    return BoostedTrees(
        n_classes=n_classes, n_features=n_features, objective=objective,
        base_score=_base_score(params["base_score"]),
        node_counts=np.array([len(tree["left"]) for tree in nodes], np.int64),
        left=joined["left"].astype(np.int64), feature=joined["feature"].astype(np.int64),
        threshold=joined["threshold"].astype(np.float32),
        default_left=joined["default_left"].astype(np.uint8),
        value=joined["value"].astype(np.float32), cover=joined["cover"].astype(np.float32))


def _base_score(raw: Any) -> list[float]:
    """XGBoost writes its base score as text: "5E-1", or "[...]" with one per output."""
    values = [float(v) for v in str(raw).strip("[]").split(",")]
    return np.asarray(values, np.float32).astype(np.float64).tolist()


def _breadth_first(tree: dict) -> dict[str, np.ndarray]:
    """One tree's nodes in the served order (see the module), as arrays."""
    left = np.asarray(tree["left_children"], np.int64)
    right = np.asarray(tree["right_children"], np.int64)
    count = len(left)
    columns = {"split_indices": np.int64, "split_conditions": np.float32,
               "default_left": np.uint8, "base_weights": np.float32, "sum_hessian": np.float32}
    given = {name: np.asarray(tree[name], dtype) for name, dtype in columns.items()}
    if any(len(values) != count for values in (right, *given.values())) or count == 0:
        raise ModelFileError("an XGBoost tree's node arrays differ in length")
    if np.any(np.asarray(tree.get("split_type", []), np.int64) != 0) or \
            str(tree["tree_param"].get("size_leaf_vector", "1")) not in ("0", "1"):
        raise ModelFileError("an XGBoost tree has categorical splits or vector leaves, which "
                             "the served trees do not hold")
    order, at = [0], 0
    while at < len(order):
        node = order[at]
        if left[node] >= 0:
            if not (0 <= left[node] < count and 0 <= right[node] < count) \
                    or len(order) + 2 > count:
                raise ModelFileError("an XGBoost tree's children lie outside it or loop")
            order += [int(left[node]), int(right[node])]
        at += 1
    order_array = np.array(order, np.intp)
    split = left[order_array] >= 0
    new_left = np.full(len(order), -1, np.int64)
    new_left[split] = 1 + 2 * np.arange(int(split.sum()))
    conditions = given["split_conditions"][order_array]
    return {"left": new_left,
            "feature": np.where(split, given["split_indices"][order_array], 0),
            "threshold": np.where(split, conditions, 0).astype(np.float32),
            "default_left": np.where(split, given["default_left"][order_array], 0),
            # XGBoost keeps a leaf's value in split_conditions (its base weight is the same)
            "value": np.where(split, given["base_weights"][order_array], conditions),
            "cover": given["sum_hessian"][order_array]}


def booster_document(trees: BoostedTrees) -> bytes:
    """The checked arrays as XGBoost's JSON model document."""
    stops = np.cumsum(trees.node_counts).tolist()
    documents = [_tree_document(trees, start, stop, at)
                 for at, (start, stop) in enumerate(zip([0, *stops[:-1]], stops))]
    return model_document(documents, trees.objective, trees.base_score, trees.n_classes,
                          trees.n_features)


def model_document(trees: list[dict], objective: str, base_score: list[float],
                   n_classes: int, n_features: int) -> bytes:
    """XGBoost's JSON model document around trees in its layout, one per output a round."""
    outputs = outputs_of(n_classes)
    rounds = len(trees) // outputs
    if objective == "binary:logistic":
        loss = {"name": objective, "reg_loss_param": {"scale_pos_weight": "1"}}
    else:
        loss = {"name": objective, "softmax_multiclass_param": {"num_class": str(n_classes)}}
    learner = {
        "attributes": {}, "feature_names": [], "feature_types": [],
        "gradient_booster": {"name": "gbtree", "model": {
            "cats": {"enc": [], "feature_segments": [], "sorted_idx": []},
            "gbtree_model_param": {"num_parallel_tree": "1", "num_trees": str(len(trees))},
            "iteration_indptr": [outputs * r for r in range(rounds + 1)],
            "tree_info": [at % outputs for at in range(len(trees))],
            "trees": trees}},
        "learner_model_param": {
            "base_score": "[" + ",".join(repr(float(v)) for v in base_score) + "]",
            "boost_from_average": "1",
            "num_class": "0" if n_classes == 2 else str(n_classes),
            "num_feature": str(n_features), "num_target": "1"},
        "objective": loss}
    return json.dumps({"learner": learner, "version": [3, 0, 0]}).encode()


def _tree_document(trees: BoostedTrees, start: int, stop: int, tree_id: int) -> dict:
    nodes = slice(start, stop)
    return tree_json(trees.left[nodes], trees.feature[nodes], trees.threshold[nodes],
                     trees.default_left[nodes], trees.value[nodes], trees.cover[nodes],
                     tree_id, trees.n_features)


def tree_json(left: np.ndarray, feature, threshold, default_left, value, cover, tree_id: int,
              n_features: int, gain=None) -> dict:
    """One tree in XGBoost's JSON layout, from its nodes in the served order (breadth-first, a
    split's two children side by side: `left` holds a split's left child, -1 at a leaf); at a
    leaf only `value` and `cover` are read (XGBoost keeps a leaf's value where a split keeps
    its threshold)."""
    split = np.asarray(left) >= 0
    left = np.where(split, left, -1).astype(np.int64)
    right = np.where(split, left + 1, -1)
    parents = np.full(len(left), NO_PARENT, np.int64)
    at = np.flatnonzero(split)
    parents[left[at]] = parents[right[at]] = at
    value = np.asarray(value, np.float32)
    conditions = np.where(split, np.asarray(threshold, np.float32), value)
    return {
        "base_weights": json_floats(value), "categories": [], "categories_nodes": [],
        "categories_segments": [], "categories_sizes": [],
        "default_left": np.where(split, default_left, 0).astype(int).tolist(),
        "id": tree_id, "left_children": left.tolist(),
        "loss_changes": [0.0] * len(left) if gain is None
        else json_floats(np.where(split, gain, 0.0)),
        "parents": parents.tolist(), "right_children": right.tolist(),
        "split_conditions": json_floats(conditions),
        "split_indices": np.where(split, feature, 0).astype(int).tolist(),
        "split_type": [0] * len(left), "sum_hessian": json_floats(cover),
        "tree_param": {"num_deleted": "0", "num_feature": str(n_features),
                       "num_nodes": str(len(left)), "size_leaf_vector": "1"}}


def json_floats(values) -> list:
    """float32 values as JSON numbers (exact: a float32 is a float64)."""
    return np.asarray(values, np.float32).astype(np.float64).tolist()


def upgraded(model):
    """A loaded model with every older booster (`XGBoostFile`) as arrays."""
    if isinstance(model, XGBoostFile):
        return trees_from_file(model)
    if isinstance(model, BlendModel):
        return msgspec.structs.replace(model, members=[upgraded(m) for m in model.members])
    if hasattr(model, "model") and isinstance(model.model, XGBoostFile):  # `Adapted`
        return msgspec.structs.replace(model, model=trees_from_file(model.model))
    return model
