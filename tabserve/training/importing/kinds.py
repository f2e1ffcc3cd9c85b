"""The classifiers `import_model.py` serves as data, an entry each (`KINDS`): how one is known
(without importing its library unless it is one of its objects), why one cannot be
translated, and its translation into the arrays a trained model is made of (`model.fitted`).
The rest of `training.importing` reads this list and names no classifier itself: a new
importable kind is its module (its trees or coefficients as data) and its entry here.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tabserve.model import catboost_trees, hist_trees, lightgbm_trees
from tabserve.model.fitted import LinearModel
from tabserve.model.xgboost_trees import measured, trees_from_booster, trees_from_document


class ImportRefused(ValueError):
    """A model that cannot be imported; the message says why in one line."""


class Untranslatable(ImportRefused):
    """A classifier or step that has no data form here: the model is served through its own
    `predict_proba` instead."""


@dataclass(frozen=True)
class Importable:
    """One kind of classifier that import translates to data."""

    name: str
    accepts: Callable[[Any], bool]
    # (classifier, the sample's mean of each column it reads, classes) → its data form
    translated: Callable[[Any, np.ndarray, int], Any]
    # why it cannot be translated (None: it can); raises `ImportRefused` for what cannot be
    # imported at all
    why_not: Callable[[Any], str | None] = lambda classifier: None
    # its thresholds are float64, made float32 as XGBoost reads them: values of the sample
    # that float32 cannot tell from a threshold send the model to its own `predict_proba`
    float64_thresholds: bool = False


def _library(classifier: Any) -> str:
    return type(classifier).__module__.split(".")[0]


def _is_sklearn(*names: str) -> Callable[[Any], bool]:
    return lambda classifier: _library(classifier) == "sklearn" and \
        type(classifier).__name__ in names


def _linear(classifier, mean: np.ndarray, n_classes: int) -> LinearModel:
    """A LogisticRegression, explained from the sample's mean record:
    (x - mean) @ coef + (intercept + mean @ coef) is the same map."""
    width = len(mean)
    coef = np.asarray(classifier.coef_, np.float64)
    mean = np.nan_to_num(mean)
    return LinearModel(fill=np.zeros(width), hinge_columns=np.zeros(0, np.int64),
                       hinge_knots=np.zeros(0), mean=mean, scale=np.ones(width), coef=coef,
                       intercept=np.asarray(classifier.intercept_, np.float64) + coef @ mean)


def _is_logistic_regression(classifier: Any) -> bool:  # LogisticRegressionCV too
    from sklearn.linear_model import LogisticRegression

    return isinstance(classifier, LogisticRegression)


def _is_xgboost(classifier: Any) -> bool:
    import xgboost

    return isinstance(classifier, (xgboost.XGBClassifier, xgboost.Booster))


def _xgboost(classifier, mean: np.ndarray, n_classes: int):
    booster = classifier.get_booster() if hasattr(classifier, "get_booster") else classifier
    return trees_from_booster(booster, n_classes)


def _forest(classifier, mean: np.ndarray, n_classes: int):
    from tabserve.model.from_sklearn import forest

    return forest([classifier])


def _hist_why_not(classifier) -> str | None:
    return None if hist_trees.is_translatable(classifier) else \
        "the HistGradientBoostingClassifier splits levels natively (categorical_features)"


def _as_xgboost(document_json: bytes, n_classes: int, width: int):
    return measured(trees_from_document(json.loads(document_json), n_classes, width))


def lightgbm_booster(classifier: Any):
    """LightGBM's booster of an `LGBMClassifier` (or a booster itself); None for anything
    else."""
    if _library(classifier) != "lightgbm":
        return None
    import lightgbm

    if isinstance(classifier, lightgbm.Booster):
        return classifier
    return classifier.booster_ if isinstance(classifier, lightgbm.LGBMClassifier) else None


def _lightgbm_why_not(classifier) -> str | None:
    document = lightgbm_booster(classifier).dump_model()
    if document.get("pandas_categorical"):
        raise ImportRefused(
            f"the {type(classifier).__name__} was fitted on pandas category columns, which it "
            "reads only as such: fit it after an OrdinalEncoder in a Pipeline")
    return lightgbm_trees.untranslatable(document)


def _lightgbm(classifier, mean: np.ndarray, n_classes: int):
    return _as_xgboost(lightgbm_trees.booster_json(
        lightgbm_booster(classifier).dump_model(), n_classes, len(mean)), n_classes, len(mean))


def _catboost_document(classifier) -> dict:
    with tempfile.TemporaryDirectory() as folder:  # CatBoost writes its JSON only to a file
        classifier.save_model(f"{folder}/model.json", format="json")
        return json.loads(Path(f"{folder}/model.json").read_text())


def _catboost_why_not(classifier) -> str | None:
    return catboost_trees.untranslatable(_catboost_document(classifier))


def _catboost(classifier, mean: np.ndarray, n_classes: int):
    return _as_xgboost(catboost_trees.booster_json(
        _catboost_document(classifier), n_classes, len(mean)), n_classes, len(mean))


KINDS = (
    Importable("LogisticRegression", _is_logistic_regression, _linear),
    Importable("XGBoost", _is_xgboost, _xgboost),
    Importable("scikit-learn forest", _is_sklearn("RandomForestClassifier", "ExtraTreesClassifier",
                                            "DecisionTreeClassifier"), _forest),
    Importable("HistGradientBoosting", _is_sklearn("HistGradientBoostingClassifier"),
         lambda c, mean, k: _as_xgboost(hist_trees.booster_json(c), k, len(mean)),
         _hist_why_not, float64_thresholds=True),
    Importable("LightGBM", lambda c: lightgbm_booster(c) is not None, _lightgbm, _lightgbm_why_not,
         float64_thresholds=True),
    Importable("CatBoost", lambda c: _library(c) == "catboost" and
         type(c).__name__ == "CatBoostClassifier", _catboost, _catboost_why_not),
)


# what a model kept whole that reads no missing level (CatBoost's categorical features) is
# given for one: the text pandas writes for NaN, as CatBoost's documentation has users fill them
MISSING_LEVEL_TEXT = "nan"


def levels_never_missing(model: Any) -> list[str]:
    """The fields a model kept whole reads only as levels and never missing: CatBoost's
    categorical features (an integer or a text, never NaN); [] for any other model."""
    if _library(model) != "catboost" or type(model).__name__ != "CatBoostClassifier":
        return []
    return [model.feature_names_[i] for i in model.get_cat_feature_indices()]


def kind_of(classifier: Any) -> Importable | None:
    return next((kind for kind in KINDS if kind.accepts(classifier)), None)


def check_translatable(classifier: Any) -> None:
    """`Untranslatable` saying why the classifier has no data form here."""
    kind = kind_of(classifier)
    if kind is None:
        raise Untranslatable(f"the classifier is a {type(classifier).__name__}")
    reason = kind.why_not(classifier)
    if reason:
        raise Untranslatable(reason)


def translated(classifier: Any, mean: np.ndarray, n_classes: int):
    """The classifier as the arrays a trained model is made of; `mean`, the sample's mean of
    each column it reads, is a linear model's reference record for explanations."""
    kind = kind_of(classifier)
    if kind is None:
        raise Untranslatable(f"the classifier is a {type(classifier).__name__}")
    return kind.translated(classifier, mean, n_classes)
