"""Models trained elsewhere, written as bundles that hold no pickle (`import_model.py`).

Today: tabserve bundles of any format; an older one (format 1, a pickle) is unpickled, its
fitted pipeline translated to data (`model.from_sklearn`), and the translation's answers
checked against the pipeline's own before anything is written. Unpickling runs code from the
file: import only files you trust (docs/security.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tabserve.model.bundle import ModelBundle, ModelLoadError
from tabserve.model.frames import columns_from_frame
from tabserve.model.trust import Trust
from tabserve.serving.core import Predictor

# served probabilities may differ from the pipeline's own by this much: a blend's pipeline
# mixes clipped probabilities in log space, its scorer the members' raw scores (docs/import.md)
TOLERANCE = 1e-6


class ImportRefused(ValueError):
    """A model that cannot be imported; the message says why in one line."""


@dataclass
class Imported:
    bundle: ModelBundle
    checked_rows: int
    largest_difference: float


def import_model(model_path: Path, rows: pd.DataFrame | None = None) -> Imported:
    """The model at `model_path` as a bundle of data, its answers checked on `rows` (a frame of
    training-style rows; the bundle's example when None) against the model's own."""
    try:
        bundle = ModelBundle.load(model_path, Trust(allow_pickle=True))
    except ModelLoadError as err:
        raise ImportRefused(str(err)) from None
    rows = pd.DataFrame([bundle.example]) if rows is None else rows
    difference = largest_difference(bundle, rows)
    if difference > TOLERANCE:
        raise ImportRefused(f"the imported model's answers differ from the original's by "
                            f"{difference:.3g} on these rows (more than {TOLERANCE:g})")
    return Imported(bundle, len(rows), difference)


def largest_difference(bundle: ModelBundle, rows: pd.DataFrame) -> float:
    """The largest difference between the served probabilities and the original model's on
    `rows` (0 for a bundle that was data already: there is nothing else to compare with)."""
    if bundle.pipeline is None:
        return 0.0
    missing = [name for name in bundle.schema.names if name not in rows.columns]
    if missing:
        raise ImportRefused(f"the rows lack fields the model reads: {', '.join(missing[:5])}")
    served = Predictor(bundle).probabilities(columns_from_frame(bundle.schema, rows))
    return float(np.max(np.abs(served - bundle.predict_proba(rows)), initial=0.0))
