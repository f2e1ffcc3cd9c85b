"""The user's model: its file read (a pickle, a kind's own format, an ONNX graph), and what it
reads (`UserModel`: its columns, classifier, classes and own answers)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from tabserve.model.kinds import (MISSING_LEVEL_TEXT, Booster, ImportRefused, Untranslatable,
                                  check_translatable, kind_of, kind_reading)
from tabserve.model.onnx_graph import GraphRefused, OnnxClassifier, not_probabilities
from tabserve.model.pickles import read_pickled_model
from tabserve.model.schema import loose_spelling
from tabserve.training.importing.columns import (Column, column_transformer, dict_columns,
                                                 elementwise, is_missing, numeric_levels)


def read_model(path: Path) -> tuple[Any, str | None]:
    """The user's model object: a file in a kind's own format (`model.kinds`), an ONNX graph,
    or a pickle (which runs its code); and the scikit-learn that pickled it, when
    scikit-learn says it is not this one (its warning, once per estimator, becomes one line:
    the answers are checked on the sample anyway)."""
    import sklearn
    import xgboost
    from sklearn.exceptions import InconsistentVersionWarning

    kind = kind_reading(path)
    if kind is not None:
        return kind.read(path), None
    if path.suffix.lower() == ".onnx":
        return _read_onnx_file(path), None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", InconsistentVersionWarning)
            model = read_pickled_model(path)
    except Exception as err:  # noqa: BLE001 - any failure means "not readable here"
        raise ImportRefused(
            f"{path} cannot be unpickled with scikit-learn {sklearn.__version__} and XGBoost "
            f"{xgboost.__version__} here ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); save it with these versions, "
            "or XGBoost's own save_model") from None
    versions = set()
    for caught_warning in caught:
        if isinstance(caught_warning.message, InconsistentVersionWarning):
            versions.add(caught_warning.message.original_sklearn_version)
        else:
            warnings.warn_explicit(caught_warning.message, caught_warning.category,
                                   caught_warning.filename, caught_warning.lineno)
    return model, ", ".join(f"scikit-learn {v}" for v in sorted(versions)) or None


def _read_onnx_file(path: Path) -> OnnxClassifier:
    """An ONNX graph, checked as hostile input (`model.onnx_graph`) and run by onnxruntime."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ImportRefused(f"{path} cannot be read ({err.strerror})") from None
    try:
        return OnnxClassifier(data)
    except ImportError:
        raise ImportRefused(f"{path} is read as an ONNX graph, and onnxruntime is not installed "
                            "here: pip install onnxruntime onnx") from None
    except GraphRefused as err:
        raise ImportRefused(f"{path} is not served: {err}") from None


@dataclass
class UserModel:
    """What the user's model reads, its classifier, and its own answers."""

    columns: list[Column]
    classifier: Any
    classes: list[str]
    description: str
    own_proba: Callable[[pd.DataFrame], np.ndarray]  # on rows typed as the model receives them
    takes_records: bool = False  # a DictVectorizer reads dicts, the others a frame
    categorical_levels: dict[str, list[str]] = field(default_factory=dict)
    numeric_levels: set[str] = field(default_factory=set)  # levels its encoder knows as numbers
    translated: bool = True      # False: `classifier` is the whole model, kept as it is
    missing_text: str | None = None  # what it is given for a missing level (None: NaN)


def user_model(model: Any, sample_columns: list[str]) -> UserModel:
    """The columns, classifier and answers of a model object; `ImportRefused` for what is not
    a fitted classifier made of the supported pieces. A booster saved without feature names
    reads the sample's columns in order."""
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.pipeline import Pipeline

    if isinstance(model, OnnxClassifier):
        raise Untranslatable("an ONNX graph, run by onnxruntime")
    if isinstance(model, tuple) and len(model) == 2 and isinstance(model[0], DictVectorizer):
        return _dict_model(model[0], model[1], "the course's pair (DictVectorizer, {})")
    if isinstance(model, Pipeline):
        return _pipeline_model(model)
    kind = kind_of(model)
    booster = kind.booster(model, sample_columns) if kind and kind.booster else None
    if booster is not None:
        return _booster_model(booster, model)
    _check_classifier(model)
    check_translatable(model)
    names = _feature_names(model)
    if not names:
        raise ImportRefused(f"a bare {type(model).__name__} does not say which columns it reads: "
                            "fit it on a DataFrame (so it has feature_names_in_), or import a "
                            "Pipeline or (DictVectorizer, model) pair")
    columns = [Column(name) for name in names]
    return UserModel(columns, model, _classes(model), type(model).__name__,
                     lambda frame: model.predict_proba(frame[names]))


def _check_classifier(model: Any) -> None:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    if not hasattr(model, "predict_proba") or not hasattr(model, "fit"):
        kind = "regressor" if hasattr(model, "predict") else "Python object"
        raise ImportRefused(f"the file holds a {type(model).__name__} (a {kind}), not a "
                            "classifier with predict_proba")
    try:
        check_is_fitted(model)
    except NotFittedError:
        raise ImportRefused(f"the {type(model).__name__} in the file is not fitted") from None
    except TypeError as err:
        raise ImportRefused(f"the file holds a {type(model).__name__}: {err}") from None


def _feature_names(model: Any) -> list[str]:
    """The columns a model fitted on a DataFrame reads, by name (as its kind says them, where
    it has its own way); [] when it does not say."""
    names = getattr(model, "feature_names_in_", None)
    kind = kind_of(model)
    if names is None and kind is not None and kind.feature_names is not None:
        names = kind.feature_names(model)
    return [] if names is None else [str(name) for name in names]


def _classes(model: Any) -> list[str]:
    return [str(c) for c in model.classes_]


def _dict_model(vectorizer, classifier, description: str, steps=None) -> UserModel:
    """A DictVectorizer's features: `field=level` for text values, `field` for numbers."""
    _check_classifier(classifier if steps is None else steps)
    check_translatable(classifier)
    columns, levels = dict_columns(vectorizer)
    model = steps if steps is not None else classifier

    def own(frame: pd.DataFrame) -> np.ndarray:
        if steps is not None:
            return model.predict_proba(_records(frame))
        return classifier.predict_proba(vectorizer.transform(_records(frame)))

    user = UserModel(columns, classifier, _classes(model),
                     description.format(type(classifier).__name__), own, takes_records=True,
                     categorical_levels=levels)
    return user


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as a DictVectorizer receives them: a missing value left out."""
    return [{k: v for k, v in r.items() if not is_missing(v)}
            for r in frame.to_dict(orient="records")]


def _pipeline_model(pipeline) -> UserModel:
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction import DictVectorizer

    _check_classifier(pipeline)
    steps = [step for _, step in pipeline.steps]
    first, *middle, classifier = steps
    if isinstance(first, DictVectorizer):
        if middle:
            raise Untranslatable("a Pipeline with steps between its DictVectorizer and its "
                                "classifier is not supported yet")
        return _dict_model(first, classifier, "a Pipeline (DictVectorizer, {})", pipeline)
    if isinstance(first, ColumnTransformer):
        columns, levels = column_transformer(first)
    else:
        names = getattr(first, "feature_names_in_", None)
        if names is None:
            raise ImportRefused("the Pipeline does not say which columns it reads: fit it on a "
                                "DataFrame (so it has feature_names_in_)")
        columns, levels, middle = [Column(str(n)) for n in names], {}, steps[:-1]
    check_translatable(classifier)
    for step in middle:
        columns = elementwise(step, columns)
    names = list(getattr(pipeline, "feature_names_in_", []))
    description = (f"a Pipeline ({', '.join(type(s).__name__ for s in steps[:-1])}, "
                   f"{type(classifier).__name__})")
    return UserModel(columns, classifier, _classes(pipeline), description,
                     lambda frame: pipeline.predict_proba(frame[names] if names else frame),
                     categorical_levels=levels,
                     numeric_levels=numeric_levels(first) if isinstance(first, ColumnTransformer)
                     else set())


def _booster_model(booster: Booster, model: Any) -> UserModel:
    """A booster without predict_proba: its columns, and its answers on them as probabilities
    of each class."""
    names = booster.names

    def own(frame: pd.DataFrame) -> np.ndarray:
        raw = booster.predict(frame[names].to_numpy(dtype=np.float64))
        return np.column_stack([1 - raw, raw]) if booster.n_classes == 2 else raw

    return UserModel([Column(str(n)) for n in names], model,
                     [str(c) for c in range(booster.n_classes)], booster.description, own)


def own_model(model: Any, features: pd.DataFrame, reason: Untranslatable) -> UserModel:
    """A fitted classifier with steps that have no data form (`reason`), kept whole and served
    through its own `predict_proba` on the fields it reads: levels where its DictVectorizer or
    the sample has text, numbers where the sample has only numbers."""
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.pipeline import Pipeline, make_pipeline

    if isinstance(model, OnnxClassifier):
        return _onnx_model(model, features)
    if isinstance(model, tuple) and len(model) == 2 and isinstance(model[0], DictVectorizer):
        model = make_pipeline(*model)  # fitted steps: one object that answers predict_proba
    vectorizer = model.steps[0][1] if isinstance(model, Pipeline) else None
    if isinstance(vectorizer, DictVectorizer):
        columns, levels = dict_columns(vectorizer)
        return UserModel(columns, model, _classes(model), _own_description(model, reason),
                         lambda frame: model.predict_proba(_records(frame)), takes_records=True,
                         categorical_levels=levels, translated=False)
    names = _feature_names(model)
    if not names:
        raise ImportRefused(f"the {type(model).__name__} does not say which columns it reads: fit "
                            "it on a DataFrame (so it has feature_names_in_)")
    missing = [name for name in names if name not in features.columns]
    if missing:
        raise missing_fields(missing, list(features.columns))
    kind = kind_of(model)
    never_missing = kind.levels_never_missing(model) if kind is not None else []
    columns = []
    for name in names:
        seen = features[name].dropna()
        if name not in never_missing and pd.to_numeric(seen, errors="coerce").notna().all():
            columns.append(Column(name))
        else:
            columns += [Column(name, str(level)) for level in seen.unique()]
    text = MISSING_LEVEL_TEXT if never_missing else None

    def own(frame: pd.DataFrame) -> np.ndarray:
        return model.predict_proba(frame[names].fillna({name: text for name in never_missing}))

    return UserModel(columns, model, _classes(model), _own_description(model, reason), own,
                     translated=False, missing_text=text)


def _onnx_model(graph: OnnxClassifier, features: pd.DataFrame) -> UserModel:
    """An ONNX graph's fields: its inputs by name, or the sample's columns in order for a
    graph of one input; a field of a text input reads levels, the others numbers."""
    names = graph.fields or list(features.columns)
    missing = [name for name in names if name not in features.columns]
    if missing:
        raise missing_fields(missing, list(features.columns))
    width = graph.feeds[0].width
    if graph.fields is None and width is not None and width != len(names):
        raise ImportRefused(f"the ONNX graph's input {graph.feeds[0].name!r} has {width} "
                            f"columns; the sample has {len(names)} besides the target")
    types = {feed.name: feed.dtype for feed in graph.feeds} if graph.fields else \
        dict.fromkeys(names, graph.feeds[0].dtype)
    columns = []
    for name in names:
        seen = features[name].dropna()
        if types[name] is object:
            columns += [Column(name, str(level)) for level in seen.unique()]
            continue
        if not pd.to_numeric(seen, errors="coerce").notna().all():
            raise ImportRefused(f"the ONNX graph reads {name!r} as numbers; the sample has "
                                f"text in it: {seen[pd.to_numeric(seen, errors='coerce').isna()].iloc[0]!r}")
        if types[name] is np.int64 and len(seen) < len(features):
            raise ImportRefused(f"the ONNX graph reads {name!r} as int64, which holds no missing "
                                "value, and the sample has missing values in it")
        columns.append(Column(name))
    def own(frame: pd.DataFrame) -> np.ndarray:
        problem = not_probabilities(graph.outputs(frame[names]))
        if problem:
            raise ImportRefused(f"the ONNX graph's probabilities output {problem} on the "
                                "sample: scores, not probabilities (a LinearSVC, or an SVC "
                                "without probability=True?); convert a probabilistic "
                                "classifier")
        return graph.predict_proba(frame[names])

    return UserModel(columns, graph, graph.classes, "an ONNX graph served by onnxruntime", own,
                     translated=False)


def _own_description(model: Any, reason: Untranslatable) -> str:
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline):
        return (f"a Pipeline ({', '.join(type(s).__name__ for _, s in model.steps)}) "
                f"served through its own predict_proba ({reason})")
    return f"a {type(model).__name__} served through its own predict_proba ({reason})"


def missing_fields(names: list[str], columns: list[str]) -> ImportRefused:
    """The refusal for a model's fields the sample lacks, every one named, each with the column
    that differs from it only in spelling (case, spaces, `-`, `_`) when there is one."""
    hints = []
    for name in names:
        near = [c for c in columns if loose_spelling(c) == loose_spelling(name)]
        hints.append(f"{name} (the sample has {' and '.join(map(repr, near))})" if near
                     else name)
    return ImportRefused(f"the model reads fields the sample lacks: {', '.join(hints)} "
                         f"({len(names)} of them); give the rows as the model receives them")
