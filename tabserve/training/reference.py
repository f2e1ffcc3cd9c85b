"""The reference profile of a model's training rows (see `model.profile`), computed when the
model is trained and stored in its bundle."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tabserve.model.decision import label_codes
from tabserve.model.encoding import MAX_ONE_HOT_LEVELS
from tabserve.model.frames import columns_from_frame
from tabserve.model.profile import (FieldProfile, Profile, boolean_profile, levels_profile,
                                    numeric_profile)
from tabserve.model.schema import Kind, Schema

SCORE = "score"


def reference_profile(schema: Schema, features: pd.DataFrame, out_of_fold: np.ndarray,
                      classes: list[str], threshold: float | None) -> Profile:
    """The profile of the training rows `features` and of their out-of-fold probabilities
    (rows × classes, calibrated as served)."""
    columns = columns_from_frame(schema, features)
    fields: list[FieldProfile] = []
    for f in schema.fields:
        if f.kind is Kind.NUMERIC:
            fields.append(numeric_profile(f.name, columns[f.name]))
        elif f.kind is Kind.BOOLEAN:
            fields.append(boolean_profile(f.name, columns[f.name], f.spellings))
        else:  # the levels the encoder gives a column of their own; the rest are "other"
            fields.append(levels_profile(f.name, columns[f.name],
                                         f.categories[:MAX_ONE_HOT_LEVELS]))
    if len(classes) == 2:
        score = numeric_profile(SCORE, out_of_fold[:, 1])
    else:
        score = levels_profile(SCORE, label_codes(out_of_fold, threshold), tuple(classes))
    return Profile(tuple(fields), score, len(features))
