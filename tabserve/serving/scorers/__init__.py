"""The bundle's fitted model steps in forms with little per-call overhead, for serving.

scikit-learn re-validates its input on every call, which costs more than everything else in a
one-record request. Each scorer here computes the same numbers as the pipeline's
`predict_proba` (the parity tests hold them to 1e-6 on every training row, or to the bit) and
`compile_scorer` falls back to the pipeline for any step layout it does not know. A new kind
of model is one new class that meets `base.Scorer` (and `base.MarginScorer` to join a blend).
"""

from __future__ import annotations

import copy

from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from tabserve.model.blend import Blend
from tabserve.model.bundle import ModelBundle
from tabserve.model.encoding import Hinges
from tabserve.serving.scorers.base import MarginScorer, Scorer
from tabserve.serving.scorers.blend import BlendScorer
from tabserve.serving.scorers.calibrated import CalibratedScorer
from tabserve.serving.scorers.linear import LinearScorer
from tabserve.serving.scorers.pipeline import ForestScorer, PipelineScorer
from tabserve.serving.scorers.trees import TREE_TABLES, BoosterScorer

__all__ = ["Scorer", "MarginScorer", "compile_scorer", "compile_steps", "LinearScorer",
           "BoosterScorer", "BlendScorer", "CalibratedScorer", "TREE_TABLES"]


def compile_scorer(bundle: ModelBundle, speedups_off: frozenset[str] = frozenset()) -> Scorer:
    """The fastest exact scorer for the bundle's steps after the encoder, calibrated."""
    scorer = compile_steps(Pipeline(bundle.pipeline.steps[1:]), speedups_off)
    if bundle.calibration is not None:
        scorer = CalibratedScorer(scorer, bundle.calibration)
    return scorer


def compile_steps(steps: Pipeline, speedups_off: frozenset[str] = frozenset()) -> Scorer:
    """The fastest exact scorer for fitted steps (those after the encoder)."""
    margin_scorer = _compile_margins(steps, speedups_off)
    if margin_scorer is not None:
        return margin_scorer
    if [type(step) for _, step in steps.steps] == [Blend]:
        blend = steps.steps[0][1]
        members = [_compile_margins(member, speedups_off) for member in blend.members]
        if None not in members:
            return BlendScorer(members, blend.weights)
    name, model = steps.steps[-1]
    if hasattr(model, "n_jobs"):
        # workers are processes: one thread each, set on a shallow copy (the fitted trees
        # are shared) so the bundle's model stays as saved
        model = copy.copy(model)
        model.n_jobs = 1
        steps = Pipeline([*steps.steps[:-1], (name, model)])
    if len(steps.steps) == 1 and isinstance(model, (RandomForestClassifier,
                                                    ExtraTreesClassifier)):
        return ForestScorer(steps)
    return PipelineScorer(steps)


def _compile_margins(steps: Pipeline, speedups_off: frozenset[str]) -> MarginScorer | None:
    """A scorer with raw scores (a blend's member kinds), or None for other steps."""
    kinds = [type(step) for _, step in steps.steps]
    fitted = [step for _, step in steps.steps]
    if kinds in ([SimpleImputer, StandardScaler, LogisticRegression],
                 [SimpleImputer, Hinges, StandardScaler, LogisticRegression]):
        imputer, *hinges, scaler, model = fitted
        if imputer.strategy in ("median", "mean") and not imputer.add_indicator:
            return LinearScorer(imputer, scaler, model, *hinges)
    if len(kinds) == 1 and hasattr(fitted[0], "get_booster"):
        return BoosterScorer(fitted[0], speedups_off)
    return None
