"""scikit-learn's LogisticRegression (and LogisticRegressionCV) as `fitted.LinearModel`."""

from __future__ import annotations

from typing import Any

import numpy as np

from tabserve.model.fitted import LinearModel
from tabserve.model.kinds import Kind


def is_logistic_regression(classifier: Any) -> bool:  # LogisticRegressionCV too
    from sklearn.linear_model import LogisticRegression

    return isinstance(classifier, LogisticRegression)


def linear_model(classifier, mean: np.ndarray, n_classes: int) -> LinearModel:
    """A LogisticRegression, explained from the sample's mean record:
    (x - mean) @ coef + (intercept + mean @ coef) is the same map."""
    width = len(mean)
    coef = np.asarray(classifier.coef_, np.float64)
    mean = np.nan_to_num(mean)
    return LinearModel(fill=np.zeros(width), hinge_columns=np.zeros(0, np.int64),
                       hinge_knots=np.zeros(0), mean=mean, scale=np.ones(width), coef=coef,
                       intercept=np.asarray(classifier.intercept_, np.float64) + coef @ mean)


KIND = Kind("logistic regression", is_logistic_regression, linear_model)
