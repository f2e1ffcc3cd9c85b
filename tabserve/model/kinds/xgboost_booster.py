"""XGBoost's classifiers (an `XGBClassifier`, or a booster saved by XGBoost as JSON or UBJSON)
as `fitted.BoostedTrees`: their trees are already the one tree form (`model.xgboost_trees`)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from tabserve.model.kinds import Booster, ImportRefused, Kind, read_by_library


def is_xgboost(classifier: Any) -> bool:
    import xgboost

    return isinstance(classifier, (xgboost.XGBClassifier, xgboost.Booster))


def trees(classifier, mean: np.ndarray, n_classes: int):
    from tabserve.model.xgboost_trees import trees_from_booster

    booster = classifier.get_booster() if hasattr(classifier, "get_booster") else classifier
    return trees_from_booster(booster, n_classes)


def booster(model, sample_columns: list[str]) -> Booster | None:
    """A `xgboost.Booster` (None for an XGBClassifier, which has predict_proba)."""
    import xgboost

    if not isinstance(model, xgboost.Booster):
        return None
    config = json.loads(model.save_config())
    objective = config["learner"]["objective"]["name"]
    if objective not in ("binary:logistic", "multi:softprob", "multi:softmax"):
        raise ImportRefused(f"the XGBoost booster's objective is {objective}: import supports "
                            "classifiers (binary:logistic, multi:softprob)")
    n_classes = max(2, int(config["learner"]["learner_model_param"]["num_class"]))
    names = model.feature_names or sample_columns
    if len(names) != model.num_features():
        raise ImportRefused(f"the XGBoost booster reads {model.num_features()} columns; the "
                            f"sample has {len(names)} besides the target")
    return Booster(list(names), n_classes,
                   lambda matrix: model.predict(xgboost.DMatrix(matrix, missing=np.nan)),
                   "an XGBoost booster")


KIND = Kind("XGBoost", is_xgboost, trees, suffixes=(".json", ".ubj"), booster=booster,
            # a booster saved by XGBoost: `save_model("model.json")` (or `.ubj`)
            read=lambda path: read_by_library(
                path, "xgboost", lambda xgb, file: xgb.Booster(model_file=file),
                lambda xgb: xgb.core.XGBoostError))
