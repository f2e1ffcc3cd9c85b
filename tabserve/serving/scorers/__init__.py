"""The bundle's fitted model (`model.fitted`, data) in forms with little per-call overhead,
for serving.

scikit-learn re-validates its input on every call, which costs more than everything else in a
one-record request. Each scorer here is built from the model's arrays and computes the same
numbers as the fitted scikit-learn or XGBoost model did (the parity tests hold them to 1e-6 on
every training row, or to the bit). A new kind of model is one new kind in `model.fitted`
and one new class here that meets `base.Scorer` (and `base.MarginScorer` to join a blend).
"""

from __future__ import annotations

from tabserve.model.bundle import ModelBundle
from tabserve.model.encoding import Encoder
from tabserve.model.fitted import (Adapted, BlendModel, BoostedTrees, FittedModel, Forest,
                                   LinearModel, OwnModel)
from tabserve.serving.scorers.adapted import AdaptedScorer
from tabserve.serving.scorers.base import MarginScorer, Scorer
from tabserve.serving.scorers.blend import BlendScorer
from tabserve.serving.scorers.calibrated import CalibratedScorer
from tabserve.serving.scorers.linear import LinearScorer
from tabserve.serving.scorers.forest import ForestScorer
from tabserve.serving.scorers.pipeline import OwnModelScorer, PipelineScorer
from tabserve.serving.scorers.trees import TREE_TABLES, BoosterScorer

__all__ = ["Scorer", "MarginScorer", "compile_scorer", "compile_model", "LinearScorer",
           "BoosterScorer", "BlendScorer", "CalibratedScorer", "TREE_TABLES"]


def compile_scorer(bundle: ModelBundle, speedups_off: frozenset[str] = frozenset()) -> Scorer:
    """The fastest exact scorer for the bundle's model, calibrated."""
    scorer = compile_model(bundle.model, speedups_off, len(Encoder(bundle.schema).feature_names))
    if bundle.calibration is not None:
        scorer = CalibratedScorer(scorer, bundle.calibration)
    return scorer


def compile_model(model: FittedModel, speedups_off: frozenset[str] = frozenset(),
                  width: int = 0) -> Scorer:
    """The fastest exact scorer for one kind of fitted model (`width`: the encoded record's,
    which an imported model's columns are made from)."""
    if isinstance(model, BlendModel):
        return BlendScorer([compile_model(member, speedups_off) for member in model.members],
                           model.weights)
    if isinstance(model, LinearModel):
        return LinearScorer(model)
    if isinstance(model, BoostedTrees):
        return BoosterScorer(model, speedups_off)
    if isinstance(model, Forest):
        return ForestScorer(model)
    if isinstance(model, Adapted):
        return AdaptedScorer(model, compile_model(model.model, speedups_off), width)
    if isinstance(model, OwnModel):
        return OwnModelScorer(model)
    return PipelineScorer(model)
