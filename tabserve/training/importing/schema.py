"""The schema: the sample's, as the model reads it (its kinds and levels), and the sample's
columns and levels read by the model's spelling."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tabserve.model.encoding import MAX_ONE_HOT_LEVELS
from tabserve.model.schema import Dropped, Field, Kind, Schema, loose_spelling
from tabserve.model.kinds import ImportRefused
from tabserve.training.importing.reading import UserModel, missing_fields
from tabserve.training.schema_inference import infer_schema


def fields_read(user: UserModel) -> list[str]:
    return list(dict.fromkeys(c.field for c in user.columns))


def loosely_named(frame: pd.DataFrame, names: list[str]) -> tuple[pd.DataFrame, list[str]]:
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


def loosely_levelled(features: pd.DataFrame, user: UserModel
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


def reconcile_schema(features: pd.DataFrame, user: UserModel, target: str) -> Schema:
    """The sample's inferred schema, with each field's kind as the model reads it and the
    levels the model knows; `ImportRefused` when the model and the sample disagree on fields."""
    missing = [name for name in fields_read(user) if name not in features.columns]
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
    for name in fields_read(user):
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
