"""Models trained elsewhere, written as bundles that hold no pickle (`import_model.py`).

What can be imported (docs/import.md):
- a tabserve bundle of any format (an older one is a pickle: its fitted pipeline is
  translated to data, and checked against its own answers);
- the ML Zoomcamp course's pair `(DictVectorizer, classifier)`, or a `Pipeline` that starts
  with a `DictVectorizer`;
- a scikit-learn `Pipeline` of a `ColumnTransformer` (`OneHotEncoder`, `OrdinalEncoder`,
  `StandardScaler`, `MinMaxScaler`, `SimpleImputer`, pipelines of them, passthrough, drop)
  and/or scalers and imputers, then a classifier;
- a bare classifier fitted on a frame (`feature_names_in_`), a booster, or a file in a kind's
  own format (XGBoost's JSON or UBJSON, LightGBM's text, CatBoost's .cbm);
- an ONNX classifier graph (as skl2onnx and onnxmltools write them), checked as hostile input
  and served by onnxruntime (`model.fitted.OnnxModel`: data, read without trust);
where the classifier is one the registry `model.kinds` knows (a module each: logistic
regression, XGBoost, scikit-learn's forests and HistGradientBoosting, LightGBM, CatBoost).

The user's steps become data: each column the classifier reads is one column of tabserve's
encoded record (a number, or a level's 0/1) or a level's code, filled, centred and scaled
(`model.fitted.Adapted`); the classifier becomes the same arrays a trained model is made of.
Any other fitted classifier that says which fields it reads (a custom transformer, an SVM,
a HistGradientBoosting, LightGBM or CatBoost model with categorical splits...) is kept whole,
pickled, and served through its own `predict_proba` on those fields (`model.fitted.OwnModel`):
such a bundle is read only when trusted, as every pickle is.
The schema comes from the sample (`--data`, the rows as the model receives them) and the
model together: the model decides which fields are numbers and which are levels, and the
levels it knows join the sample's. The served probabilities are checked against the user's own
`predict_proba` on the sample before anything is written.

The package, each module standing on the ones before it, reading the registry and naming no
kind: `columns` (the user's steps as the columns the classifier reads),
`reading` (the user's file, and what the model reads: `UserModel`), `schema` (the sample's
schema as the model reads it), `bundle` (the bundle assembled), and here the import itself,
checked against the model's own answers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from tabserve.model.bundle import MAGIC, ModelBundle, ModelLoadError
from tabserve.model.fitted import BoostedTrees, OnnxModel
from tabserve.model.frames import columns_from_frame
from tabserve.model.trust import Trust
from tabserve.serving.core import Predictor
from tabserve.training.importing.bundle import assembled_bundle, class_codes
from tabserve.model.kinds import ImportRefused, Untranslatable, kind_of
from tabserve.training.importing.reading import (UserModel, missing_fields, own_model, read_model,
                                                 user_model)
from tabserve.training.importing.schema import (fields_read, loosely_levelled, loosely_named,
                                                reconcile_schema, typed_rows)


# the largest difference allowed between served probabilities and the model's own: float64
# models to 1e-9; XGBoost's own `predict_proba` answers in float32, whose resolution near 1 is
# 6e-8, as onnxruntime does (its sums' order depends on the batch's size); an older tabserve blend mixed clipped probabilities in log space (docs/import.md)
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
        rows, renamed = loosely_named(rows, [target])
    features = rows.drop(columns=[target]) if target in rows.columns else rows
    model, pickled_by = read_model(model_path)
    try:
        user = user_model(model, list(features.columns))
    except Untranslatable as reason:
        user = own_model(model, features, reason)
    if target is not None and target not in rows.columns:
        raise ImportRefused(f"the target column {target!r} is not in the data; its columns "
                            f"are: {', '.join(rows.columns[:20])}")
    read = fields_read(user)
    features, renamed_fields = loosely_named(features, read)
    features, relevelled = loosely_levelled(features, user)
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


def _checked_import(model_path: Path, rows: pd.DataFrame, features: pd.DataFrame,
                    target: str | None, user: UserModel, data_path: Path | None) -> Imported:
    """The bundle, once its answers on the sample are the user's model's own."""
    schema = reconcile_schema(features, user, target or "prediction")
    typed = typed_rows(features, schema, user)
    try:
        own = np.asarray(user.own_proba(typed), dtype=np.float64)
    except ImportRefused:  # its answers are not probabilities (an ONNX graph's scores)
        raise
    except Exception as err:  # noqa: BLE001 - the user's model refusing its own sample
        raise ImportRefused(f"the model cannot score the sample itself: {type(err).__name__}: "
                            f"{str(err).splitlines()[0] if str(err) else ''}") from None
    bundle = assembled_bundle(model_path, rows, features, target, schema, user, own, data_path)
    served = Predictor(bundle).probabilities(columns_from_frame(schema, features))
    difference = float(np.max(np.abs(served - own), initial=0.0))
    float32 = isinstance(bundle.model, OnnxModel) or isinstance(bundle.model.model, BoostedTrees)
    tolerance = FLOAT32_TOLERANCE if float32 else TOLERANCE
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
