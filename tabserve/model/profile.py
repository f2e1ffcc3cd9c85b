"""The reference profile: how the training rows were distributed, field by field and in the
model's scores, stored in the bundle so that served traffic (`serving.drift`) and new files
(`monitor.py`) can be compared with it.

Each field's values fall into bins: a number's decile bins of the training values, a
categorical's levels kept by the encoder plus one bin for every other level (rarer ones and
levels never seen), a boolean's false and true; every field has a last bin for missing values.
The scores are binned the same way: a binary model's positive-class probability in the
deciles of its out-of-fold probabilities, a multiclass model's predicted class.
`FieldProfile.bins_of` is the one rule that puts values in bins, for training and serving
alike, and `psi` the one measure of how far two distributions of bins are apart.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from tabserve.model.schema import MISSING_CODE

MISSING_BIN = "(missing)"
OTHER_BIN = "(other)"
# a share below this counts as this in the PSI: an empty bin would make the logarithm infinite
SHARE_FLOOR = 1e-4
STABLE_BELOW = 0.1   # the usual reading of the population stability index
MAJOR_ABOVE = 0.25


def _edge_label(value: float) -> str:
    return f"{value:.6g}"


def numeric_bin_labels(edges: tuple[float, ...]) -> tuple[str, ...]:
    """Labels of the bins that `edges` cut the line into: `< a`, `a to < b`, ..., `>= z`."""
    if not edges:
        return ("all values",)
    shown = [_edge_label(e) for e in edges]
    middle = [f"{lo} to < {hi}" for lo, hi in zip(shown, shown[1:])]
    return (f"< {shown[0]}", *middle, f">= {shown[-1]}")


@dataclass(frozen=True)
class FieldProfile:
    """One field's (or the scores') bins and the share of training rows in each.

    `kind` is "numeric" or "boolean" (bins cut by `edges`, each bin holding the values from
    one edge up to the next; a boolean's 0 and 1 are cut at 0.5) or "levels" (codes below
    `known` have a bin each, every other code shares the "other" bin). The last bin holds
    missing values."""

    name: str
    kind: str
    bins: tuple[str, ...]
    shares: tuple[float, ...]
    edges: tuple[float, ...] = ()
    known: int = 0

    @property
    def missing_bin(self) -> int:
        return len(self.bins) - 1

    @property
    def missing_rate(self) -> float:
        return self.shares[-1]

    def bins_of(self, column: np.ndarray) -> np.ndarray:
        """Each value's bin: numbers (NaN when missing), or level codes (`MISSING_CODE` when
        missing, `UNSEEN_CODE` for a level training never saw)."""
        if self.kind != "levels":
            values = np.asarray(column, dtype=np.float64)
            found = np.searchsorted(self.edges, values, side="right")
            return np.where(np.isnan(values), self.missing_bin, found)
        codes = np.asarray(column, dtype=np.intp)
        found = np.where((codes >= 0) & (codes < self.known), codes, self.known)
        return np.where(codes == MISSING_CODE, self.missing_bin, found)

    def bin_of_number(self, value: float | None) -> int:
        """One number's or boolean's bin (None or NaN: missing), without numpy's per-call
        cost."""
        if value is None or value != value:
            return self.missing_bin
        return bisect.bisect_right(self.edges, value)

    def bin_of_code(self, code: int) -> int:
        if code == MISSING_CODE:
            return self.missing_bin
        return code if 0 <= code < self.known else self.known

    def describe(self) -> dict:
        return {"field": self.name, "missing_rate": self.missing_rate,
                "bins": [{"bin": b, "share": s} for b, s in zip(self.bins, self.shares)]}


def shares_of(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else np.zeros(len(counts))


def numeric_profile(name: str, values: np.ndarray, bins: int = 10) -> FieldProfile:
    """Decile bins of a number's training values (fewer where values repeat)."""
    values = np.asarray(values, dtype=np.float64)
    present = values[~np.isnan(values)]
    edges: tuple[float, ...] = ()
    if len(present):
        cuts = np.quantile(present, np.arange(1, bins) / bins)
        edges = tuple(float(e) for e in np.unique(cuts) if e > present.min())
    profile = FieldProfile(name, "numeric", (*numeric_bin_labels(edges), MISSING_BIN),
                           (0.0,) * (len(edges) + 2), edges)
    return _with_shares(profile, values)


def boolean_profile(name: str, values: np.ndarray, spellings: tuple[str, str]) -> FieldProfile:
    """A bin for false, one for true (named as training wrote them), one for missing."""
    true, false = spellings
    profile = FieldProfile(name, "boolean", (false or "false", true or "true", MISSING_BIN),
                           (0.0,) * 3, edges=(0.5,))
    return _with_shares(profile, values)


def levels_profile(name: str, codes: np.ndarray, levels: tuple[str, ...]) -> FieldProfile:
    """A bin per level in `levels` (codes 0..), one for any other code, one for missing."""
    profile = FieldProfile(name, "levels", (*levels, OTHER_BIN, MISSING_BIN),
                           (0.0,) * (len(levels) + 2), known=len(levels))
    return _with_shares(profile, codes)


def _with_shares(profile: FieldProfile, column: np.ndarray) -> FieldProfile:
    counts = np.bincount(profile.bins_of(column), minlength=len(profile.bins))
    return FieldProfile(profile.name, profile.kind, profile.bins,
                        tuple(float(s) for s in shares_of(counts)), profile.edges, profile.known)


@dataclass(frozen=True)
class Profile:
    """The training rows' profile: every input field's, in schema order, and the scores'."""

    fields: tuple[FieldProfile, ...]
    score: FieldProfile
    rows: int

    def describe(self) -> dict:
        return {"rows": self.rows, "fields": [f.describe() for f in self.fields],
                "score": self.score.describe()}


def psi(reference: np.ndarray, now: np.ndarray) -> float:
    """The population stability index of two distributions over the same bins:
    Σ (now − reference) · ln(now / reference), each share at least `SHARE_FLOOR`."""
    expected = np.maximum(np.asarray(reference, dtype=np.float64), SHARE_FLOOR)
    actual = np.maximum(np.asarray(now, dtype=np.float64), SHARE_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def drift_status(value: float) -> str:
    if value < STABLE_BELOW:
        return "stable"
    return "moderate" if value <= MAJOR_ABOVE else "major"

