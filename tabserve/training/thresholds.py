"""Choosing a binary model's calibration and decision threshold (the rules themselves are
`model.decision`). Both are chosen on out-of-fold predictions of the training split, never on
the test split; Platt scaling is kept only when it lowers log loss in a cross-validation over
those predictions."""

from __future__ import annotations

import re

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold

from tabserve.model.decision import Calibration, logit

RULES = "f1 | youden | cost:FP,FN | fixed:T"


def _fit_platt(scores: np.ndarray, y: np.ndarray) -> Calibration:
    model = LogisticRegression(C=1e6, max_iter=1000).fit(scores[:, None], y)
    return Calibration(float(model.coef_[0, 0]), float(model.intercept_[0]))


def choose_calibration(positive: np.ndarray, y: np.ndarray, seed: int
                       ) -> tuple[Calibration | None, dict[str, float]]:
    """Platt scaling if it lowers log loss on held-out out-of-fold predictions."""
    scores = logit(positive)
    raw, calibrated = [], []
    for fit_rows, score_rows in StratifiedKFold(5, shuffle=True, random_state=seed).split(
            scores, y):
        platt = _fit_platt(scores[fit_rows], y[fit_rows])
        raw.append(log_loss(y[score_rows], positive[score_rows], labels=[0, 1]))
        calibrated.append(log_loss(y[score_rows], platt.apply(positive[score_rows]),
                                   labels=[0, 1]))
    report = {"log_loss_raw": float(np.mean(raw)), "log_loss_platt": float(np.mean(calibrated))}
    if report["log_loss_platt"] < report["log_loss_raw"]:
        return _fit_platt(scores, y), report
    return None, report


def parse_rule(rule: str) -> str:
    """The rule, checked: f1, youden, cost:FP,FN (positive numbers) or fixed:T (0 < T < 1)."""
    if rule in ("f1", "youden"):
        return rule
    if re.fullmatch(r"cost:\d+(\.\d+)?,\d+(\.\d+)?", rule):
        fp, fn = (float(v) for v in rule[5:].split(","))
        if fp > 0 and fn > 0:
            return rule
    if re.fullmatch(r"fixed:0?\.\d+", rule):
        return rule
    raise ValueError(f"--threshold-rule must be one of {RULES}, got {rule!r}")


def choose_threshold(rule: str, positive: np.ndarray, y: np.ndarray) -> tuple[float, str]:
    """The threshold the rule picks on out-of-fold probabilities, and the rule in words."""
    if rule.startswith("fixed:"):
        threshold = float(rule[6:])
        return threshold, f"fixed: positive when its probability >= {threshold:g}"
    candidates = np.unique(np.quantile(positive, np.linspace(0, 1, 1001)))
    predicted = positive[None, :] >= candidates[:, None]
    tp = (predicted & (y == 1)).sum(axis=1)
    fp = (predicted & (y == 0)).sum(axis=1)
    fn = (~predicted & (y == 1)).sum(axis=1)
    tn = (~predicted & (y == 0)).sum(axis=1)
    if rule == "f1":
        value = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
        words = "maximises F1 on out-of-fold predictions"
    elif rule == "youden":
        value = tp / np.maximum(tp + fn, 1) - fp / np.maximum(fp + tn, 1)
        words = "maximises Youden's J (TPR - FPR) on out-of-fold predictions"
    else:
        cost_fp, cost_fn = (float(v) for v in rule[5:].split(","))
        value = -(cost_fp * fp + cost_fn * fn)
        words = (f"minimises {cost_fp:g} x false positives + {cost_fn:g} x false negatives "
                 "on out-of-fold predictions")
    threshold = float(candidates[int(np.argmax(value))])
    return threshold, f"{rule}: {words}"
