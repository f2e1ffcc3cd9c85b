"""scikit-learn's RandomForest, ExtraTrees and DecisionTree classifiers as `fitted.Forest`
(a decision tree is a forest of one tree); /explain does not answer for them."""

from __future__ import annotations

import numpy as np

from tabserve.model.kinds import Kind, named


def forest(classifier, mean: np.ndarray, n_classes: int):
    from tabserve.model.from_sklearn import forest

    return forest([classifier])


KIND = Kind("scikit-learn forest", named("sklearn", "RandomForestClassifier",
                                         "ExtraTreesClassifier", "DecisionTreeClassifier"),
            forest, explained=False)
