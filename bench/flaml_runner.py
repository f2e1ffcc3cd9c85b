"""FLAML AutoML on one split, for bench/generality.py; run by a Python that has FLAML (a
throwaway venv: FLAML is not a project dependency), so this file imports nothing of ours.

    python flaml_runner.py TRAIN.csv TEST.csv TARGET SECONDS   → one JSON line on stdout
"""

import json
import sys

import pandas as pd
from flaml import AutoML
from sklearn.metrics import roc_auc_score


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    text = frame.select_dtypes(exclude="number").columns
    return frame.astype({name: "category" for name in text})


def main() -> None:
    train_path, test_path, target, seconds = sys.argv[1:5]
    train, test = pd.read_csv(train_path), pd.read_csv(test_path)
    classes = sorted(train[target].astype(str).unique())
    x_train, x_test = typed(train.drop(columns=target)), typed(test.drop(columns=target))
    for name in x_test.select_dtypes("category").columns:  # the same levels on both sides
        levels = x_train[name].cat.categories.union(x_test[name].cat.categories)
        x_train[name] = x_train[name].cat.set_categories(levels)
        x_test[name] = x_test[name].cat.set_categories(levels)
    y_train = train[target].astype(str).map(classes.index)
    y_test = test[target].astype(str).map(classes.index)
    automl = AutoML()
    automl.fit(x_train, y_train, task="classification", metric="roc_auc" if len(classes) == 2
               else "roc_auc_ovr", time_budget=float(seconds), seed=1, verbose=0, n_jobs=2)
    proba = automl.predict_proba(x_test)
    auc = roc_auc_score(y_test, proba[:, 1]) if len(classes) == 2 else \
        roc_auc_score(y_test, proba, multi_class="ovr")
    print(json.dumps({"auc": auc, "best": automl.best_estimator}))


if __name__ == "__main__":
    main()
