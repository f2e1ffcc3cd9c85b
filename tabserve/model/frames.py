"""Training-style rows (a pandas frame of trimmed strings, as `training.data.load_csv` reads
them) as typed columns, for the pipeline's first step (`sklearn_steps.FrameEncoder`); and columns
as a frame, for an imported model that reads one. Requests of a trained model never come
this way: pandas is imported on the first call, not when the server starts."""

from __future__ import annotations

import numpy as np

from tabserve.model.schema import BOOLEAN_VALUES, MISSING_CODE, Kind, Schema


def columns_from_frame(schema: Schema, frame) -> dict[str, np.ndarray]:
    """Typed columns from training rows: floats for numbers and booleans, codes for levels."""
    import pandas as pd

    missing = [name for name in schema.names if name not in frame.columns]
    if missing:
        raise KeyError(f"frame lacks the schema's fields: {', '.join(missing)}")
    columns: dict[str, np.ndarray] = {}
    for f in schema.fields:
        column = frame[f.name]
        if f.kind is Kind.NUMERIC:
            columns[f.name] = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
        elif f.kind is Kind.BOOLEAN:
            lowered = column.astype("object").map(
                lambda v: BOOLEAN_VALUES.get(v.strip().lower(), np.nan) if isinstance(v, str)
                else BOOLEAN_VALUES.get(v, np.nan))
            columns[f.name] = lowered.to_numpy(dtype=np.float64)
        else:
            text = column.astype("object").map(lambda v: v.strip() if isinstance(v, str) else v)
            codes = pd.Index(f.categories, dtype=object).get_indexer(text)  # unseen: -1
            columns[f.name] = np.where(text.isna(), MISSING_CODE, codes).astype(np.intp)
    return columns


def frame_from_columns(columns: dict[str, np.ndarray]):
    """A pandas DataFrame of `columns`, in their order (an imported model's own input)."""
    import pandas as pd

    return pd.DataFrame(columns)
