"""Models trained elsewhere, written as bundles that hold no pickle (`import_model.py`).

What can be imported (docs/import.md):
- a tabserve bundle of any format (an older one is a pickle: its fitted pipeline is
  translated to data, and checked against its own answers);
- the ML Zoomcamp course's pair `(DictVectorizer, classifier)`, or a `Pipeline` that starts
  with a `DictVectorizer`;
- a scikit-learn `Pipeline` of a `ColumnTransformer` (`OneHotEncoder`, `OrdinalEncoder`,
  `StandardScaler`, `MinMaxScaler`, `SimpleImputer`, pipelines of them, passthrough, drop)
  and/or scalers and imputers, then a classifier;
- a bare classifier fitted on a frame (`feature_names_in_`), an XGBoost booster saved as
  JSON or UBJSON, or a LightGBM booster (pickled, or saved by LightGBM as text);
where the classifier is one `training.import_kinds` knows (`KINDS`: logistic regression,
XGBoost, scikit-learn's forests and HistGradientBoosting, LightGBM, CatBoost).

The user's steps become data: each column the classifier reads is one column of tabserve's
encoded record (a number, or a level's 0/1) or a level's code, filled, centred and scaled
(`model.fitted.Adapted`); the classifier becomes the same arrays a trained model is made of.
Any other fitted classifier that says which fields it reads (a custom transformer, an SVM,
a HistGradientBoosting, LightGBM or CatBoost model with categorical splits...) is kept whole,
pickled, and served through its own `predict_proba` on those fields (`model.fitted.OwnModel`): such a bundle is read only
when trusted, as every pickle is.
The schema comes from the sample (`--data`, the rows as the model receives them) and the
model together: the model decides which fields are numbers and which are levels, and the
levels it knows join the sample's. The served probabilities are checked against the user's own
`predict_proba` on the sample before anything is written.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import msgspec
import numpy as np
import pandas as pd

from tabserve.model import lightgbm_trees
from tabserve.model.bundle import MAGIC, ModelBundle, ModelLoadError, library_versions
from tabserve.model.encoding import MAX_ONE_HOT_LEVELS, Encoder
from tabserve.model.fitted import Adapted, BoostedTrees, LevelCodes, OwnModel
from tabserve.model.frames import columns_from_frame
from tabserve.model.pickles import pickled, read_pickled_model
from tabserve.model.schema import BOOLEAN_VALUES, Dropped, Field, Kind, Schema, loose_spelling
from tabserve.model.trust import Trust
from tabserve.serving.core import Predictor
from tabserve.training.import_kinds import (MISSING_LEVEL_TEXT, ImportRefused, Untranslatable,
                                            check_translatable, kind_of, levels_never_missing,
                                            lightgbm_booster, translated)
from tabserve.training.reference import reference_profile
from tabserve.training.schema_inference import example_record, infer_schema

# the largest difference allowed between served probabilities and the model's own: float64
# models to 1e-9; XGBoost's own `predict_proba` answers in float32, whose resolution near 1 is
# 6e-8; an older tabserve blend mixed clipped probabilities in log space (docs/import.md)
TOLERANCE = 1e-9
FLOAT32_TOLERANCE = 1e-6


@dataclass
class Imported:
    bundle: ModelBundle
    checked_rows: int
    largest_difference: float
    unread: tuple[str, ...] = ()  # columns of --data the model does not read, left out
    renamed: tuple[str, ...] = ()  # "SeniorCitizen as seniorcitizen": read by loose spelling
    relevelled: tuple[str, ...] = ()  # "contract: 'One year' as 'one_year', ...", by field
    sample: pd.DataFrame | None = None  # the rows as read: the model's spellings, the target
    #                                     as its classes (what the model card is made from)
    pickled_by: str | None = None  # "scikit-learn 1.7.2" when not the version reading it


@dataclass
class Column:
    """One column the user's classifier reads: a field's number, a level's 0/1 (`level`) or
    a level's code (`codes`), a missing value filled, then centred and scaled."""

    field: str
    level: str | None = None
    fill: float = math.nan
    center: float = 0.0
    scale: float = 1.0
    codes: dict[str, float] | None = None  # an OrdinalEncoder's: level → code
    unknown: float = math.nan              # its code for an unseen level
    missing: float = math.nan              # its code for a missing value

    @property
    def reads_levels(self) -> bool:
        return self.level is not None or self.codes is not None


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


def import_model(model_path: Path, rows: pd.DataFrame | None = None,
                 target: str | None = None, data_path: Path | None = None) -> Imported:
    """The model at `model_path` as a bundle of data, its answers checked on `rows` (a frame of
    trimmed strings, as `tables.load_csv` reads them, from `data_path` if a file)."""
    try:
        head = model_path.read_bytes()[:len(MAGIC)]
    except OSError as err:
        raise ImportRefused(f"model file {model_path} cannot be read ({err.strerror})") from None
    if head == MAGIC:
        return replace(_import_bundle(model_path, rows), sample=rows)
    if rows is None:
        raise ImportRefused("--data is needed: a sample of the rows as the model receives them "
                            "(the schema is read from it and the answers checked on it)")
    renamed = []
    if target is not None and target not in rows.columns:
        rows, renamed = _loosely_named(rows, [target])
    features = rows.drop(columns=[target]) if target in rows.columns else rows
    model, pickled_by = _read_model(model_path)
    try:
        user = user_model(model, list(features.columns))
    except Untranslatable as reason:
        user = own_model(model, features, reason)
    if target is not None and target not in rows.columns:
        raise ImportRefused(f"the target column {target!r} is not in the data; its columns "
                            f"are: {', '.join(rows.columns[:20])}")
    read = _fields_read(user)
    features, renamed_fields = _loosely_named(features, read)
    features, relevelled = _loosely_levelled(features, user)
    rows = pd.concat([features, rows[[target]]], axis=1) if target is not None else features
    missing = [name for name in read if name not in features.columns]
    if missing:
        raise missing_fields(missing, list(features.columns))
    # columns the model does not read (an id, the Kaggle file's extras) are left out, and said
    unread = tuple(name for name in features.columns if name not in read)
    features = features.drop(columns=list(unread))
    try:
        imported = _checked_import(model_path, rows, features, target, user, data_path)
    except Untranslatable as reason:
        imported = _checked_import(model_path, rows, features, target,
                                   own_model(model, features, reason), data_path)
    sample = features.copy()
    if target is not None:
        truth, _ = class_codes(rows[target], imported.bundle.classes)
        sample[target] = np.asarray(imported.bundle.classes, dtype=object)[truth.astype(int)]
    return replace(imported, unread=unread, renamed=tuple(renamed + renamed_fields),
                   relevelled=relevelled, sample=sample, pickled_by=pickled_by)


def _fields_read(user: UserModel) -> list[str]:
    return list(dict.fromkeys(c.field for c in user.columns))


def _loosely_named(frame: pd.DataFrame, names: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """The frame with each of `names` it lacks taken from the one column spelt like it but for
    case, spaces, `-` and `_` (the Kaggle file's `SeniorCitizen` for the course's
    `seniorcitizen`), as the server reads a record's names; and each renaming, said."""
    by_spelling: dict[str, list[str]] = {}
    for column in frame.columns:
        if column not in names:
            by_spelling.setdefault(loose_spelling(column), []).append(column)
    renames = {}
    for name in names:
        near = by_spelling.get(loose_spelling(name), [])
        if name not in frame.columns and len(near) == 1:
            renames[near[0]] = name
    return frame.rename(columns=renames), [f"{old} as {new}" for old, new in renames.items()]


def _loosely_levelled(features: pd.DataFrame, user: UserModel
                      ) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The sample with each value the model does not know as a level, but spelt like exactly
    one of its levels (the Kaggle file's `Month-to-month` for the course's `month-to-month`),
    written as that level, as the server reads it; and each field's rewritings, said."""
    features, said = features.copy(), []
    for name, known in user.categorical_levels.items():
        if name not in features.columns:
            continue
        by_spelling: dict[str, list[str]] = {}
        for level in known:
            by_spelling.setdefault(loose_spelling(level), []).append(level)
        values = features[name].dropna().unique()
        rewrite = {value: by_spelling[loose_spelling(value)][0] for value in values
                   if isinstance(value, str) and value not in known
                   and len(by_spelling.get(loose_spelling(value), [])) == 1}
        if rewrite:
            features[name] = features[name].replace(rewrite)
            said.append(f"{name}: " + ", ".join(f"{old!r} as {new!r}"
                                                for old, new in sorted(rewrite.items())))
    return features, tuple(said)


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


def _checked_import(model_path: Path, rows: pd.DataFrame, features: pd.DataFrame,
                    target: str | None, user: UserModel, data_path: Path | None) -> Imported:
    """The bundle, once its answers on the sample are the user's model's own."""
    schema = reconcile_schema(features, user, target or "prediction")
    typed = typed_rows(features, schema, user)
    try:
        own = np.asarray(user.own_proba(typed), dtype=np.float64)
    except Exception as err:  # noqa: BLE001 - the user's model refusing its own sample
        raise ImportRefused(f"the model cannot score the sample itself: {type(err).__name__}: "
                            f"{str(err).splitlines()[0] if str(err) else ''}") from None
    bundle = _bundle(model_path, rows, features, target, schema, user, own, data_path)
    served = Predictor(bundle).probabilities(columns_from_frame(schema, features))
    difference = float(np.max(np.abs(served - own), initial=0.0))
    tolerance = FLOAT32_TOLERANCE if isinstance(bundle.model.model, BoostedTrees) else TOLERANCE
    kind = kind_of(user.classifier) if user.translated else None
    if not difference <= tolerance and kind is not None and kind.float64_thresholds:
        # its float64 thresholds, moved to float32 in the booster, no longer part some of the
        # sample's values as they did (values within float32's rounding of a threshold)
        raise Untranslatable(f"as an XGBoost booster its answers differ by {difference:.2g}: "
                             "float32 does not tell some of the sample's values from its "
                             "thresholds")
    if not difference <= tolerance:
        raise ImportRefused(f"the imported model's answers differ from the model's own by "
                            f"{difference:.3g} on the sample (more than {tolerance:g}): "
                            "nothing written")
    return Imported(bundle, len(rows), difference)


def _import_bundle(model_path: Path, rows: pd.DataFrame | None) -> Imported:
    """A tabserve bundle; an older one (a pickle) is translated and checked against its own
    pipeline."""
    try:
        bundle = ModelBundle.load(model_path, Trust(allow_pickle=True))
    except ModelLoadError as err:
        raise ImportRefused(str(err)) from None
    rows = pd.DataFrame([bundle.example]).astype(str) if rows is None else rows
    if bundle.pipeline is None:
        return Imported(bundle, 0, 0.0)
    missing = [name for name in bundle.schema.names if name not in rows.columns]
    if missing:
        raise ImportRefused(f"the rows lack fields the model reads: {', '.join(missing[:5])}")
    served = Predictor(bundle).probabilities(columns_from_frame(bundle.schema, rows))
    difference = float(np.max(np.abs(served - bundle.predict_proba(rows)), initial=0.0))
    # its blends mixed clipped probabilities in log space; the scorer mixes raw scores
    if difference > FLOAT32_TOLERANCE:
        raise ImportRefused(f"the converted model's answers differ from the original's by "
                            f"{difference:.3g} on these rows: nothing written")
    return Imported(bundle, len(rows), difference)


def _read_model(path: Path) -> tuple[Any, str | None]:
    """The user's model object: an XGBoost booster file, or a pickle (which runs its code); and
    the scikit-learn that pickled it, when scikit-learn says it is not this one (its warning,
    once per estimator, becomes one line: the answers are checked on the sample anyway)."""
    import sklearn
    import xgboost
    from sklearn.exceptions import InconsistentVersionWarning

    if path.suffix.lower() == ".txt":
        return _read_lightgbm_file(path), None
    if path.suffix.lower() == ".cbm":
        return _read_catboost_file(path), None
    if path.suffix.lower() in (".json", ".ubj"):
        try:
            return xgboost.Booster(model_file=str(path)), None
        except xgboost.core.XGBoostError as err:
            raise ImportRefused(f"{path} is not an XGBoost model XGBoost {xgboost.__version__} "
                                f"can read: {str(err).splitlines()[0]}") from None
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


def _read_lightgbm_file(path: Path):
    """A booster LightGBM saved as text (`save_model("model.txt")`): read by LightGBM, which
    reading one needs (serving it does not)."""
    try:
        import lightgbm
    except ImportError:
        raise ImportRefused(f"{path} is read as a LightGBM model file, and LightGBM is not "
                            "installed here: pip install lightgbm") from None
    try:
        return lightgbm.Booster(model_file=str(path))
    except lightgbm.basic.LightGBMError as err:
        raise ImportRefused(f"{path} is not a LightGBM model LightGBM {lightgbm.__version__} can "
                            f"read: {str(err).splitlines()[0]}") from None


def _read_catboost_file(path: Path):
    """A classifier CatBoost saved in its own format (`save_model("model.cbm")`): read by
    CatBoost, which reading one needs (serving it does not)."""
    try:
        import catboost
    except ImportError:
        raise ImportRefused(f"{path} is read as a CatBoost model file, and CatBoost is not "
                            "installed here: pip install catboost") from None
    try:
        return catboost.CatBoostClassifier().load_model(str(path))
    except catboost.CatBoostError as err:
        raise ImportRefused(f"{path} is not a CatBoost model CatBoost {catboost.__version__} can "
                            f"read: {str(err).splitlines()[0]}") from None


# --- what the user's model reads ----------------------------------------------------------------

def user_model(model: Any, sample_columns: list[str]) -> UserModel:
    """The columns, classifier and answers of a model object; `ImportRefused` for what is not
    a fitted classifier made of the supported pieces. A booster saved without feature names
    reads the sample's columns in order."""
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.pipeline import Pipeline
    import xgboost

    if isinstance(model, tuple) and len(model) == 2 and isinstance(model[0], DictVectorizer):
        return _dict_model(model[0], model[1], "the course's pair (DictVectorizer, {})")
    if isinstance(model, Pipeline):
        return _pipeline_model(model)
    if isinstance(model, xgboost.Booster):
        return _booster_model(model, sample_columns)
    if lightgbm_booster(model) is model:
        return _lightgbm_model(model, sample_columns)
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
    """The columns a model fitted on a DataFrame reads, by name (CatBoost's say it their own
    way); [] when it does not say."""
    names = getattr(model, "feature_names_in_", None)
    if names is None and type(model).__module__.split(".")[0] == "catboost":
        names = model.feature_names_
    return [] if names is None else [str(name) for name in names]


def _classes(model: Any) -> list[str]:
    return [str(c) for c in model.classes_]


def _dict_model(vectorizer, classifier, description: str, steps=None) -> UserModel:
    """A DictVectorizer's features: `field=level` for text values, `field` for numbers."""
    _check_classifier(classifier if steps is None else steps)
    check_translatable(classifier)
    columns, levels = _dict_columns(vectorizer)
    model = steps if steps is not None else classifier

    def own(frame: pd.DataFrame) -> np.ndarray:
        if steps is not None:
            return model.predict_proba(_records(frame))
        return classifier.predict_proba(vectorizer.transform(_records(frame)))

    user = UserModel(columns, classifier, _classes(model),
                     description.format(type(classifier).__name__), own, takes_records=True,
                     categorical_levels=levels)
    return user


def _dict_columns(vectorizer) -> tuple[list[Column], dict[str, list[str]]]:
    separator = vectorizer.separator
    columns, levels = [], {}
    names = list(vectorizer.feature_names_)
    fields_with_levels = {name.split(separator, 1)[0] for name in names if separator in name}
    for name in names:
        field_name, _, level = name.partition(separator)
        if separator in name and field_name in fields_with_levels:
            columns.append(Column(field_name, level))
            levels.setdefault(field_name, []).append(level)
        else:
            columns.append(Column(name))
    return columns, levels


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as a DictVectorizer receives them: a missing value left out."""
    return [{k: v for k, v in r.items() if not _is_missing(v)}
            for r in frame.to_dict(orient="records")]


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


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
        columns, levels = _column_transformer(first)
    else:
        names = getattr(first, "feature_names_in_", None)
        if names is None:
            raise ImportRefused("the Pipeline does not say which columns it reads: fit it on a "
                                "DataFrame (so it has feature_names_in_)")
        columns, levels, middle = [Column(str(n)) for n in names], {}, steps[:-1]
    check_translatable(classifier)
    for step in middle:
        columns = _elementwise(step, columns)
    names = list(getattr(pipeline, "feature_names_in_", []))
    description = (f"a Pipeline ({', '.join(type(s).__name__ for s in steps[:-1])}, "
                   f"{type(classifier).__name__})")
    return UserModel(columns, classifier, _classes(pipeline), description,
                     lambda frame: pipeline.predict_proba(frame[names] if names else frame),
                     categorical_levels=levels,
                     numeric_levels=_numeric_levels(first) if isinstance(first, ColumnTransformer)
                     else set())


def _column_transformer(transformer) -> tuple[list[Column], dict[str, list[str]]]:
    """The columns a fitted ColumnTransformer makes, in its output's order."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    columns: list[Column] = []
    levels: dict[str, list[str]] = {}
    names_in = list(transformer.feature_names_in_)
    for name, step, selected in transformer.transformers_:
        fields = [names_in[c] if isinstance(c, (int, np.integer)) else str(c)
                  for c in np.atleast_1d(selected)] if len(np.atleast_1d(selected)) else []
        if step == "drop" or not fields:
            continue
        parts = list(step) if isinstance(step, Pipeline) else [step]
        encoders = [p for p in parts if isinstance(p, (OneHotEncoder, OrdinalEncoder))]
        if len(encoders) > 1:
            raise Untranslatable(f"transformer {name!r} encodes levels twice")
        if encoders:
            at = parts.index(encoders[0])
            fills = [_imputer_before_encoder(part, name) for part in parts[:at]]
            if isinstance(encoders[0], OneHotEncoder):
                if at != len(parts) - 1:
                    raise Untranslatable(f"transformer {name!r}: a step after a OneHotEncoder")
                made = _one_hot(encoders[0], fields, levels)
            else:
                made = _ordinal(encoders[0], fields, levels, fills[0] if fills else None)
                for part in parts[at + 1:]:
                    made = _elementwise(part, made)
        else:
            made = [Column(f) for f in fields]
            for part in parts:
                made = _elementwise(part, made)
        columns += made
    return columns, levels


def _numeric_levels(transformer) -> set[str]:
    """The fields whose level encoder learnt numbers (a 0/1 flag one-hot encoded, say): the
    model receives them as numbers."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    numeric = set()
    names_in = list(transformer.feature_names_in_)
    for _, step, selected in transformer.transformers_:
        parts = list(step) if isinstance(step, Pipeline) else [step]
        encoder = next((p for p in parts if isinstance(p, (OneHotEncoder, OrdinalEncoder))), None)
        if encoder is None:
            continue
        fields = [names_in[c] if isinstance(c, (int, np.integer)) else str(c)
                  for c in np.atleast_1d(selected)]
        numeric |= {name for name, known in zip(fields, encoder.categories_)
                    if all(isinstance(level, (int, float, np.number)) for level in known)}
    return numeric


def _one_hot(encoder, fields: list[str], levels: dict[str, list[str]]) -> list[Column]:
    if encoder.drop is not None:
        raise Untranslatable("a OneHotEncoder with drop= is not supported yet (leave drop=None)")
    if getattr(encoder, "min_frequency", None) or getattr(encoder, "max_categories", None):
        raise Untranslatable("a OneHotEncoder that groups infrequent levels is not supported yet")
    columns = []
    for name, known in zip(fields, encoder.categories_):
        known = [str(level) for level in known if not _is_missing(level)]
        levels[name] = known
        columns += [Column(name, level) for level in known]
    return columns


def _ordinal(encoder, fields: list[str], levels: dict[str, list[str]],
             fills: list | None) -> list[Column]:
    """An OrdinalEncoder's codes: a level's place in its categories; an unseen level's code
    is its `unknown_value` (missing, for handle_unknown="error", which would raise); a missing
    value's, the code of the level an imputer before it fills in, else `encoded_missing_value`."""
    if getattr(encoder, "min_frequency", None) or getattr(encoder, "max_categories", None):
        raise Untranslatable("an OrdinalEncoder that groups infrequent levels")
    unknown = encoder.unknown_value if encoder.handle_unknown == "use_encoded_value" else None
    columns = []
    for i, (name, known) in enumerate(zip(fields, encoder.categories_)):
        codes = {str(level): float(code) for code, level in enumerate(known)
                 if not _is_missing(level)}
        levels[name] = list(codes)
        missing = float(encoder.encoded_missing_value)
        if fills is not None:  # the imputer's level, coded as the encoder codes it
            missing = codes.get(str(fills[i]), math.nan if unknown is None else float(unknown))
        columns.append(Column(name, codes=codes,
                              unknown=math.nan if unknown is None else float(unknown),
                              missing=missing))
    return columns


def _imputer_before_encoder(step, name: str) -> list:
    """The levels an imputer before a level encoder fills in, one per field."""
    from sklearn.impute import SimpleImputer

    if not isinstance(step, SimpleImputer) or step.add_indicator:
        raise Untranslatable(f"transformer {name!r}: a {type(step).__name__} before a "
                            "level encoder")
    # a OneHotEncoder's columns cannot take the filled level: a field missing in the sample
    # makes the answers differ, and the model is served through its own predict_proba
    return list(step.statistics_)


def _elementwise(step, columns: list[Column]) -> list[Column]:
    """Columns after an imputer or a scaler, one column at a time."""
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, StandardScaler

    # a ColumnTransformer's remainder="passthrough" is fitted as a FunctionTransformer of None
    if step == "passthrough" or step is None or \
            (type(step) is FunctionTransformer and step.func is None):
        return columns
    if isinstance(step, SimpleImputer):
        if step.add_indicator:
            raise Untranslatable("a SimpleImputer with add_indicator=True is not supported yet")
        fills = np.asarray(step.statistics_, dtype=np.float64)
        return [_filled(c, fill) for c, fill in zip(columns, fills)]
    if isinstance(step, StandardScaler):
        mean = step.mean_ if step.with_mean else np.zeros(len(columns))
        scale = step.scale_ if step.with_std else np.ones(len(columns))
        return [_scaled(c, m, s) for c, m, s in zip(columns, mean.tolist(), scale.tolist())]
    if isinstance(step, MinMaxScaler):
        if step.clip:
            raise Untranslatable("a MinMaxScaler with clip=True is not supported yet")
        # x * scale_ + min_  ==  (x - (-min_ / scale_)) / (1 / scale_)
        return [_scaled(c, -low / s, 1 / s)
                for c, low, s in zip(columns, step.min_.tolist(), step.scale_.tolist())]
    raise Untranslatable(f"a {type(step).__name__} step is not supported yet: import supports "
                        "DictVectorizer, ColumnTransformer, OneHotEncoder, SimpleImputer, "
                        "StandardScaler and MinMaxScaler before the classifier")


def _filled(column: Column, fill: float) -> Column:
    if column.center != 0.0 or column.scale != 1.0:
        raise Untranslatable("an imputer after a scaler is not supported yet")
    return replace(column, fill=fill if column.level is None else 0.0)


def _scaled(column: Column, center: float, scale: float) -> Column:
    # ((x - c1) / s1 - c2) / s2  ==  (x - (c1 + c2 s1)) / (s1 s2)
    return replace(column, center=column.center + center * column.scale,
                   scale=column.scale * scale)


def _booster_model(booster, sample_columns: list[str]) -> UserModel:
    import json

    import xgboost

    config = json.loads(booster.save_config())
    objective = config["learner"]["objective"]["name"]
    if objective not in ("binary:logistic", "multi:softprob", "multi:softmax"):
        raise ImportRefused(f"the XGBoost booster's objective is {objective}: import supports "
                            "classifiers (binary:logistic, multi:softprob)")
    n_classes = max(2, int(config["learner"]["learner_model_param"]["num_class"]))
    names = booster.feature_names or sample_columns
    if len(names) != booster.num_features():
        raise ImportRefused(f"the XGBoost booster reads {booster.num_features()} columns; the "
                            f"sample has {len(names)} besides the target")

    def own(frame: pd.DataFrame) -> np.ndarray:
        matrix = frame[names].to_numpy(dtype=np.float64)
        raw = booster.predict(xgboost.DMatrix(matrix, missing=np.nan))
        return np.column_stack([1 - raw, raw]) if n_classes == 2 else raw

    return UserModel([Column(str(n)) for n in names], booster,
                     [str(c) for c in range(n_classes)], "an XGBoost booster", own)


def _lightgbm_model(booster, sample_columns: list[str]) -> UserModel:
    """A LightGBM booster (from `lightgbm.train`): its columns by name, or the sample's in
    order when it was trained on an array (LightGBM then names them Column_0, ...)."""
    document = booster.dump_model()
    name, _ = lightgbm_trees.objective(document)
    if name not in ("binary", "multiclass"):
        raise ImportRefused(f"the LightGBM booster's objective is {name}: import supports "
                            "classifiers (binary, multiclass)")
    reason = lightgbm_trees.untranslatable(document)
    if reason:  # a booster has no predict_proba to be served through
        raise ImportRefused(f"{reason}: a LightGBM booster is imported as data only; import an "
                            "LGBMClassifier fitted on a DataFrame to serve it as it is")
    n_classes = max(2, int(document["num_class"]))
    names = booster.feature_name()
    if names == [f"Column_{i}" for i in range(len(names))] and names[0] not in sample_columns:
        names = sample_columns
    if len(names) != booster.num_feature():
        raise ImportRefused(f"the LightGBM booster reads {booster.num_feature()} columns; the "
                            f"sample has {len(names)} besides the target")

    def own(frame: pd.DataFrame) -> np.ndarray:
        raw = booster.predict(frame[names].to_numpy(dtype=np.float64))
        return np.column_stack([1 - raw, raw]) if n_classes == 2 else raw

    return UserModel([Column(str(n)) for n in names], booster,
                     [str(c) for c in range(n_classes)], "a LightGBM booster", own)


def own_model(model: Any, features: pd.DataFrame, reason: Untranslatable) -> UserModel:
    """A fitted classifier with steps that have no data form (`reason`), kept whole and served
    through its own `predict_proba` on the fields it reads: levels where its DictVectorizer or
    the sample has text, numbers where the sample has only numbers."""
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.pipeline import Pipeline, make_pipeline

    if isinstance(model, tuple) and len(model) == 2 and isinstance(model[0], DictVectorizer):
        model = make_pipeline(*model)  # fitted steps: one object that answers predict_proba
    vectorizer = model.steps[0][1] if isinstance(model, Pipeline) else None
    if isinstance(vectorizer, DictVectorizer):
        columns, levels = _dict_columns(vectorizer)
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
    never_missing = levels_never_missing(model)
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


def _own_description(model: Any, reason: Untranslatable) -> str:
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline):
        return (f"a Pipeline ({', '.join(type(s).__name__ for _, s in model.steps)}) "
                f"served through its own predict_proba ({reason})")
    return f"a {type(model).__name__} served through its own predict_proba ({reason})"


# --- the schema: the sample's, as the model reads it ----------------------------------------

def reconcile_schema(features: pd.DataFrame, user: UserModel, target: str) -> Schema:
    """The sample's inferred schema, with each field's kind as the model reads it and the
    levels the model knows; `ImportRefused` when the model and the sample disagree on fields."""
    missing = [name for name in _fields_read(user) if name not in features.columns]
    if missing:
        raise missing_fields(missing, list(features.columns))
    inferred = infer_schema(features, target="")
    by_name = {f.name: f for f in (*inferred.fields, *inferred.dropped)}
    read_as_levels = {c.field for c in user.columns if c.reads_levels}
    read_as_number = {c.field for c in user.columns if not c.reads_levels}
    both = read_as_levels & read_as_number
    if both:
        raise ImportRefused(f"the model reads {sorted(both)[0]!r} both as a number and as levels")
    fields = []
    for name in _fields_read(user):
        column = features[name]
        if name in read_as_levels:
            fields.append(_levels_field(name, column, user.categorical_levels.get(name, [])))
        else:
            fields.append(_number_field(name, column, by_name[name]))
    return Schema(target=target, fields=tuple(fields), dropped=())


def _levels_field(name: str, column: pd.Series, known: list[str]) -> Field:
    present = column.dropna()
    counts = present.value_counts()
    seen = sorted(counts.index, key=lambda level: (-counts[level], level))
    levels = [*seen, *[level for level in known if level not in counts.index]]
    if len(levels) > MAX_ONE_HOT_LEVELS:
        raise ImportRefused(f"field {name!r} has {len(levels)} levels; import supports at most "
                            f"{MAX_ONE_HOT_LEVELS} per field")
    return Field(name, Kind.CATEGORICAL, len(present) < len(column), categories=tuple(levels))


def _number_field(name: str, column: pd.Series, inferred: Field | Dropped) -> Field:
    if isinstance(inferred, Field) and (inferred.kind is Kind.NUMERIC or (
            inferred.kind is Kind.BOOLEAN and set(inferred.spellings) == {"1", "0"})):
        return inferred
    present = column.dropna()
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.isna().any():
        example = present[numbers.isna()].iloc[0]
        raise ImportRefused(f"the model reads {name!r} as a number; the sample has "
                            f"{example!r} in it")
    if numbers.empty:
        raise ImportRefused(f"field {name!r} has no values in the sample")
    return Field(name, Kind.NUMERIC, len(present) < len(column),
                 minimum=float(numbers.min()), maximum=float(numbers.max()))


def typed_rows(features: pd.DataFrame, schema: Schema, user: UserModel) -> pd.DataFrame:
    """The sample as the model receives it: numbers as floats, levels as text (as numbers
    where the model's encoder learnt numbers), missing as NaN."""
    typed = {}
    for f in schema.fields:
        if f.kind is Kind.CATEGORICAL and f.name not in user.numeric_levels:
            typed[f.name] = features[f.name].astype(object)
        else:
            typed[f.name] = pd.to_numeric(features[f.name], errors="coerce").astype(np.float64)
    return pd.DataFrame(typed, index=features.index)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the bundle -----------------------------------------------------------------------------

def adapted_model(schema: Schema, user: UserModel, features: pd.DataFrame) -> Adapted:
    """The user's columns as encoded columns, and the classifier as data."""
    from tabserve.serving.scorers.adapted import AdaptedScorer

    encoder = Encoder(schema)
    at = {name: i for i, name in enumerate(encoder.feature_names)}
    source = np.array([at[_source_name(c, schema)] for c in user.columns], np.int64)
    fill, center, scale = (np.array([getattr(c, name) for c in user.columns], np.float64)
                           for name in ("fill", "center", "scale"))
    adapted = Adapted(source=source, fill=fill, center=center, scale=scale,
                      model=None, codes=level_codes(user.columns, at))  # model: below
    # the sample's mean of each column: a linear model's reference record for explanations
    with np.errstate(invalid="ignore"):
        made = AdaptedScorer(adapted, None, len(at)).columns(
            encoder.encode(columns_from_frame(schema, features)))
    return msgspec.structs.replace(adapted, model=translated(
        user.classifier, np.nanmean(made, axis=0), len(user.classes)))


def _source_name(column: Column, schema: Schema) -> str:
    """The encoded column a model column reads (a code's: its field's first level)."""
    if column.codes is not None:
        return f"{column.field}={schema.field(column.field).categories[0]}"
    return column.field if column.level is None else f"{column.field}={column.level}"


def level_codes(columns: list[Column], at: dict[str, int]) -> LevelCodes | None:
    """Where the coded columns' levels are in the encoded record; None without any."""
    coded = [(i, c) for i, c in enumerate(columns) if c.codes is not None]
    if not coded:
        return None
    levels = [(k, at[f"{c.field}={level}"], code) for k, (_, c) in enumerate(coded)
              for level, code in c.codes.items() if f"{c.field}={level}" in at]
    return LevelCodes(
        columns=np.array([i for i, _ in coded], np.int64),
        unknown=np.array([c.unknown for _, c in coded], np.float64),
        missing=np.array([c.missing for _, c in coded], np.float64),
        missing_at=np.array([at.get(f"{c.field} is missing", -1) for _, c in coded], np.int64),
        level_of=np.array([k for k, _, _ in levels], np.int64),
        level_at=np.array([a for _, a, _ in levels], np.int64),
        code=np.array([code for _, _, code in levels], np.float64))


def own_model_data(schema: Schema, user: UserModel) -> OwnModel:
    """The whole model pickled, and where each field it reads lies in the encoded record."""
    encoder = Encoder(schema)
    at = {name: i for i, name in enumerate(encoder.feature_names)}
    fields = [f for f in schema.fields]
    levels = [list(f.categories) if f.kind is Kind.CATEGORICAL else [] for f in fields]
    return OwnModel(
        model=pickled(user.classifier), fields=[f.name for f in fields],
        columns=[at[f"{f.name}={kept[0]}" if kept else f.name] for f, kept in zip(fields, levels)],
        levels=levels, missing=[at.get(f"{f.name} is missing", -1) for f in fields],
        takes_records=user.takes_records, missing_text=user.missing_text)


def class_codes(target: pd.Series, classes: list[str]) -> tuple[pd.Series, str | None]:
    """Each row's class code (NaN where the value is not a class), and how the values were
    read when they are a flag's words for a model of classes 0 and 1: the course's model
    learns `churn == "yes"` as 1, while its table, like the Kaggle file, says yes and no."""
    codes = {label: code for code, label in enumerate(classes)}
    truth = target.map(codes)
    if not truth.isna().any() or sorted(classes) != ["0", "1"]:
        return truth, None
    flags = target.str.strip().str.lower().map(
        {text: value for text, value in BOOLEAN_VALUES.items() if isinstance(text, str)})
    if flags.isna().any():
        return truth, None
    words = {value: " or ".join(map(repr, sorted(set(target.str.strip()[flags == value]))))
             for value in (1.0, 0.0)}
    return flags.map({1.0: codes["1"], 0.0: codes["0"]}), \
        f"{words[1.0]} read as the model's class 1, {words[0.0]} as 0"


def _bundle(model_path: Path, rows: pd.DataFrame, features: pd.DataFrame, target: str | None,
            schema: Schema, user: UserModel, own: np.ndarray,
            data_path: Path | None) -> ModelBundle:
    from tabserve.training.trainer import _scores

    binary = len(user.classes) == 2
    threshold = 0.5 if binary else None
    metrics: dict[str, Any] = {
        "task": "binary" if binary else "multiclass", "chosen": "imported",
        "imported": {"kind": user.description, "file": model_path.name,
                     "served": "as data" if user.translated else "its own predict_proba"},
        "rows": {"sample": len(rows)}, "test": None}
    if target is not None:
        truth, read_as_flags = class_codes(rows[target], user.classes)
        if read_as_flags:
            metrics["imported"]["target"] = read_as_flags
        if truth.isna().any():
            raise ImportRefused(f"the target {target!r} holds values that are not the model's "
                                f"classes ({', '.join(user.classes)}): "
                                f"{rows[target][truth.isna()].iloc[0]!r}")
        # XGBoost's own float32 probabilities may not add up to 1 exactly
        metrics["test"] = _scores(truth.to_numpy(dtype=int), own / own.sum(axis=1, keepdims=True),
                                  threshold)
        metrics["test_rows"] = "the --data sample (not held out from the model's training)"
    bundle = ModelBundle(
        model=adapted_model(schema, user, features) if user.translated
        else own_model_data(schema, user), schema=schema, classes=user.classes,
        positive_class=user.classes[1] if binary else None, threshold=threshold,
        threshold_rule="fixed:0.5" if binary else None, metrics=metrics,
        example=example_record(schema, features),
        profile=reference_profile(schema, features, own, user.classes, threshold))
    bundle.check()
    bundle.metadata = {
        "model_version": bundle.content_version(),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "imported_from": {"path": str(model_path), "sha256": _sha256(model_path)},
        "data": None if data_path is None else {"path": str(data_path),
                                                "sha256": _sha256(data_path)},
        "libraries": library_versions(),
    }
    return bundle
