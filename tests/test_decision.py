"""Calibration and threshold rules, as tables on synthetic scores."""

import numpy as np
import pytest

from tabserve.training.thresholds import choose_calibration, choose_threshold, parse_rule


@pytest.mark.parametrize("rule", ["f1", "youden", "cost:1,5", "cost:2.5,1", "fixed:0.5",
                                  "fixed:.3"])
def test_valid_rules(rule):
    assert parse_rule(rule) == rule


@pytest.mark.parametrize("rule", ["", "F1", "cost:1", "cost:0,1", "fixed:1.5", "fixed:0",
                                  "median"])
def test_invalid_rules(rule):
    with pytest.raises(ValueError, match="--threshold-rule must be one of"):
        parse_rule(rule)


@pytest.fixture(scope="module")
def scores():
    rng = np.random.default_rng(0)
    y = (rng.random(4000) < 0.25).astype(int)
    true_p = np.clip(0.25 + (y - 0.25) * 0.5 + rng.normal(0, 0.15, len(y)), 0.01, 0.99)
    return y, true_p


def test_thresholds_follow_their_rules(scores):
    y, p = scores
    fixed, words = choose_threshold("fixed:0.42", p, y)
    assert fixed == 0.42 and "0.42" in words
    f1, _ = choose_threshold("f1", p, y)
    cheap_fn, _ = choose_threshold("cost:1,10", p, y)   # missing a positive costs 10×
    cheap_fp, _ = choose_threshold("cost:10,1", p, y)
    assert cheap_fn < f1 < cheap_fp
    youden, words = choose_threshold("youden", p, y)
    assert 0 < youden < 1 and "Youden" in words


def test_calibration_is_kept_only_when_it_helps(scores):
    y, p = scores
    squashed = 0.5 + (p - 0.5) * 0.3  # badly calibrated: every probability near 0.5
    calibration, report = choose_calibration(squashed, y, seed=0)
    assert calibration is not None and report["log_loss_platt"] < report["log_loss_raw"]
    assert abs(calibration.apply(squashed).mean() - y.mean()) < 0.02
    assert calibration.apply_one(float(squashed[0])) == pytest.approx(
        float(calibration.apply(squashed[:1])[0]), abs=1e-12)
