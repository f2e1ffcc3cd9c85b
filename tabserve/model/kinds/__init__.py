"""The classifiers users bring, a module each in this package (`kinds()` finds them): how one
is known (without importing its library unless the object is one of its own), why one cannot
be translated, its translation into the arrays a trained model is made of (`model.fitted`),
and, where it has them, its own file format, the booster form that has no `predict_proba`, the
way it names its fields and the levels it never reads missing. `training.importing` reads this
registry and names no kind: a new kind is a module here (a `KIND`) and its dependency line in
the Pipfile's `[dev-packages]` (the image never needs it: its trees are served as XGBoost's).
"""

from __future__ import annotations

import functools
import importlib
import json
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np


class ImportRefused(ValueError):
    """A model that cannot be imported; the message says why in one line."""


class Untranslatable(ImportRefused):
    """A classifier or step that has no data form here: the model is served through its own
    `predict_proba` instead."""


@dataclass(frozen=True)
class Booster:
    """A kind's booster as a user model: the columns it reads by name, its classes, and its
    probabilities on a matrix of those columns (the positive class's alone when binary)."""

    names: list[str]
    n_classes: int
    predict: Callable[[np.ndarray], np.ndarray]
    description: str


@dataclass(frozen=True)
class Kind:
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
    # /explain answers for it (tree SHAP or linear contributions of its data form)
    explained: bool = True
    # its own file format: the suffixes it is saved under, and its reader (path → the object)
    suffixes: tuple[str, ...] = ()
    read: Callable[[Path], Any] | None = None
    # a booster without predict_proba, with the sample's columns for one saved without names
    booster: Callable[[Any, list[str]], Booster] | None = None
    # the fields a model fitted on a frame reads, said its own way (None: `feature_names_in_`)
    feature_names: Callable[[Any], list[str]] | None = None
    # the fields a model kept whole reads only as levels and never missing
    levels_never_missing: Callable[[Any], list[str]] = lambda model: []


# what a model kept whole that reads no missing level is given for one: the text pandas writes
# for NaN (as CatBoost's documentation has users fill them)
MISSING_LEVEL_TEXT = "nan"


def library_of(model: Any) -> str:
    """The top-level package a model's class comes from (no import of it needed)."""
    return type(model).__module__.split(".")[0]


def named(library: str, *classes: str) -> Callable[[Any], bool]:
    """Whether a model is one of a library's classes, told without importing the library."""
    return lambda model: library_of(model) == library and type(model).__name__ in classes


def read_by_library(path: Path, library: str, load: Callable[[Any, str], Any],
                    refusal: Callable[[Any], type]) -> Any:
    """A kind's own model file, read by its library (`load(module, path)`), which reading one
    needs where you import (serving it does not): one line when the library is not installed
    or refuses the file (`refusal(module)`: the error it raises)."""
    try:
        module = importlib.import_module(library)
    except ImportError:
        raise ImportRefused(f"{path} is read as a {library} model file, and {library} is not "
                            f"installed here: pip install {library}") from None
    try:
        return load(module, str(path))
    except refusal(module) as err:
        raise ImportRefused(f"{path} is not a model {library} {module.__version__} can read: "
                            f"{str(err).splitlines()[0]}") from None


def as_xgboost(document_json: bytes, n_classes: int, width: int):
    """An XGBoost model document (the one tree form) as checked `fitted.BoostedTrees`."""
    from tabserve.model.xgboost_trees import measured, trees_from_document

    return measured(trees_from_document(json.loads(document_json), n_classes, width))


@functools.cache
def kinds() -> tuple[Kind, ...]:
    """Every module's `KIND` in this package, by module name."""
    return tuple(importlib.import_module(f"{__name__}.{module.name}").KIND
                 for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name))


def kind_of(model: Any) -> Kind | None:
    return next((kind for kind in kinds() if kind.accepts(model)), None)


def kind_reading(path: Path) -> Kind | None:
    """The kind whose own file format the path's suffix names."""
    suffix = path.suffix.lower()
    return next((kind for kind in kinds() if suffix in kind.suffixes), None)


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


def explained_kinds() -> list[str]:
    """The kinds /explain answers for, by name."""
    return [kind.name for kind in kinds() if kind.explained]
