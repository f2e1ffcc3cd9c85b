"""Pickle's one place in the model wing: fitted objects that have no data form, written as
`Pickled` parts, and pickles read back, which runs code from them, so only from a file the
server trusts (`model.bundle` decides) or a model the user names (`import_model.py`).

Format-1 bundles written before the package had wings name their classes by the old flat
modules (`tabserve.schema`, ...), and scikit-learn steps have since moved out of serving's
way: the reader finds each where it lives now (`MOVED_MODULES`, `MOVED_CLASSES`).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from tabserve.model.fitted import Pickled, PickledSteps

# where the classes of bundles written by the flat layout (up to commit 0db92fe) live now
MOVED_MODULES = {
    "tabserve.bundle": "tabserve.model.bundle",
    "tabserve.schema": "tabserve.model.schema",
    "tabserve.encoding": "tabserve.model.encoding",
    "tabserve.blend": "tabserve.model.blend",
    "tabserve.decision": "tabserve.model.decision",
}
# classes that moved out of their module since (the scikit-learn steps, out of serving's way)
MOVED_CLASSES = {("tabserve.model.encoding", "FrameEncoder"): "tabserve.model.sklearn_steps",
                 ("tabserve.model.encoding", "Hinges"): "tabserve.model.sklearn_steps"}


def pickled_steps(steps: Any, width: int) -> PickledSteps:
    """Fitted steps that have no data form, pickled (read back only from a trusted file)."""
    return PickledSteps(pickled(steps), width)


def pickled(fitted: Any) -> Pickled:
    """A fitted object that has no data form, pickled (read back only from a trusted file)."""
    return Pickled(pickle.dumps(fitted, protocol=5))


def unpickled(blob: Pickled | bytes) -> Any:
    """The object in a `Pickled` part (or a format-1 payload) that `ModelBundle.load` let
    through: a trusted file."""
    return _Unpickler(io.BytesIO(blob.data if isinstance(blob, Pickled) else blob)).load()


def read_pickled_model(path: Path) -> Any:
    """A model a user pickled (`pickle.dump` or `joblib.dump`), for `import_model.py`: this
    runs code from the file, as every unpickling does; the caller says so."""
    import joblib

    return joblib.load(path)


class _Unpickler(pickle.Unpickler):
    """Finds the classes of older bundles where they live now."""

    def find_class(self, module: str, name: str):
        module = MOVED_MODULES.get(module, module)
        return super().find_class(MOVED_CLASSES.get((module, name), module), name)
