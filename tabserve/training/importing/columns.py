"""The user's steps before the classifier (a `DictVectorizer`, a `ColumnTransformer` of
encoders, scalers and imputers) as the columns the classifier reads (`Column`), each one of
tabserve's encoded columns or a level's code, filled, centred and scaled; `Untranslatable`
for a step that has no such form."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tabserve.model.kinds import Untranslatable


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


def dict_columns(vectorizer) -> tuple[list[Column], dict[str, list[str]]]:
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


def column_transformer(transformer) -> tuple[list[Column], dict[str, list[str]]]:
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
                    made = elementwise(part, made)
        else:
            made = [Column(f) for f in fields]
            for part in parts:
                made = elementwise(part, made)
        columns += made
    return columns, levels


def numeric_levels(transformer) -> set[str]:
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
        known = [str(level) for level in known if not is_missing(level)]
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
                 if not is_missing(level)}
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


def elementwise(step, columns: list[Column]) -> list[Column]:
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


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
