"""import_model.py: models our users trained themselves (the course's pair, scikit-learn
Pipelines, XGBoost), served with their own answers, and each refusal in one line (issue 29)."""

from __future__ import annotations

import functools
import json
import os
import pickle
import subprocess
from importlib.metadata import version as package_version

import numpy as np
import pandas as pd
import pytest
import requests
import sklearn

from helpers import (COURSE_CATEGORICAL, COURSE_CUSTOMER, COURSE_NUMERICAL, PYTHON, ROOT,
                     course_frame, kaggle_frame, start_gunicorn, stop)
from tabserve.cli import replaced
from tabserve.model.bundle import MAGIC, ModelBundle, ModelLoadError
from tabserve.model.fitted import Adapted, OwnModel
from tabserve.model.frames import columns_from_frame
from tabserve.model.trust import Trust
from tabserve.serving.core import Predictor
from tabserve.serving.scorers.pipeline import UNSEEN_LEVEL
from tabserve.tables import load_csv
from tabserve.training.importing import ImportRefused, import_model
from tabserve.web.app import create_app
from tabserve.web.config import Settings

SAMPLE_ROWS = 4000  # the rest of the rows are the ones answers are compared on


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """The course's frame as a CSV (the sample: its first rows), and the rows held out."""
    folder = tmp_path_factory.mktemp("course")
    frame = course_frame()
    frame.iloc[:SAMPLE_ROWS].to_csv(folder / "sample.csv", index=False)
    return folder, frame


def _dicts(frame: pd.DataFrame) -> list[dict]:
    return frame[COURSE_CATEGORICAL + COURSE_NUMERICAL].to_dict(orient="records")


def course_pair(frame, classifier):
    from sklearn.feature_extraction import DictVectorizer

    train = frame.iloc[:SAMPLE_ROWS]
    vectorizer = DictVectorizer(sparse=False)
    classifier.fit(vectorizer.fit_transform(_dicts(train)), train.churn)
    return (vectorizer, classifier), lambda rows: classifier.predict_proba(
        vectorizer.transform(_dicts(rows)))


def dict_pipeline(frame):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(DictVectorizer(sparse=False),
                          RandomForestClassifier(n_estimators=20, min_samples_leaf=3,
                                                 random_state=0))
    model.fit(_dicts(frame.iloc[:SAMPLE_ROWS]), frame.churn.iloc[:SAMPLE_ROWS])
    return model, lambda rows: model.predict_proba(_dicts(rows))


def column_pipeline(frame, scaler: str):
    """A ColumnTransformer: levels one-hot, numbers imputed (some are missing) and scaled."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import ExtraTreesClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

    numbers = Pipeline([("impute", SimpleImputer(strategy="median")),
                        ("scale", StandardScaler() if scaler == "standard" else MinMaxScaler())])
    prepare = ColumnTransformer([
        ("levels", OneHotEncoder(handle_unknown="ignore"), COURSE_CATEGORICAL[2:]),
        ("numbers", numbers, COURSE_NUMERICAL)])
    classifier = LogisticRegression(max_iter=2000) if scaler == "standard" else \
        ExtraTreesClassifier(n_estimators=15, random_state=0)
    model = Pipeline([("prepare", prepare), ("model", classifier)])
    columns = COURSE_CATEGORICAL[2:] + COURSE_NUMERICAL
    model.fit(frame[columns].iloc[:SAMPLE_ROWS], frame.churn.iloc[:SAMPLE_ROWS])
    return model, lambda rows: model.predict_proba(rows[columns])


def ordinal_pipeline(frame):
    """OrdinalEncoder codes: after an imputer of the most frequent level (the contract is
    sometimes missing), scaled, before a LogisticRegression; seniorcitizen's 0/1 are levels."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder, StandardScaler

    levels = Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                       ("codes", OrdinalEncoder(handle_unknown="use_encoded_value",
                                                unknown_value=-1)),
                       ("scale", StandardScaler())])
    prepare = ColumnTransformer([("levels", levels, COURSE_CATEGORICAL),
                                 ("numbers", StandardScaler(), COURSE_NUMERICAL)])
    model = Pipeline([("prepare", prepare), ("model", LogisticRegression(max_iter=3000))])
    columns = COURSE_CATEGORICAL + COURSE_NUMERICAL
    model.fit(frame[columns].iloc[:SAMPLE_ROWS], frame.churn.iloc[:SAMPLE_ROWS])
    return model, lambda rows: model.predict_proba(rows[columns])


def _with_missing_and_unseen_contracts(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[frame.index[::13], "contract"] = np.nan
    held_out = frame.index[SAMPLE_ROWS::41]
    frame.loc[held_out, "paymentmethod"] = "bitcoin"  # a level the model never saw
    return frame


def bare_xgboost(frame):
    """A multiclass XGBClassifier fitted on a frame of numbers: the contract from the rest."""
    from xgboost import XGBClassifier

    columns = ["seniorcitizen", *COURSE_NUMERICAL]
    y = frame.contract.map({"month-to-month": 0, "one_year": 1, "two_year": 2})
    model = XGBClassifier(n_estimators=25, max_depth=3, n_jobs=1)
    model.fit(frame[columns].iloc[:SAMPLE_ROWS], y.iloc[:SAMPLE_ROWS])
    return model, lambda rows: model.predict_proba(rows[columns])


def _with_missing_numbers(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[frame.index[::17], "totalcharges"] = np.nan
    return frame


def ordinal_boosting(frame, categorical: bool = False, library: str = "scikit-learn"):
    """An OrdinalEncoder (unseen levels as -1) before a HistGradientBoostingClassifier (or
    LightGBM's LGBMClassifier), the numbers passed through (the remainder) and sometimes
    missing; `categorical`: the codes split as levels (`categorical_features`), which have no
    data form here."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    prepare = ColumnTransformer([
        ("levels", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
         COURSE_CATEGORICAL)], remainder="passthrough")
    levels = list(range(len(COURSE_CATEGORICAL))) if categorical else None
    if library == "lightgbm":
        classifier, fit = _lgbm(), {"model__categorical_feature": levels or "auto"}
    elif library == "catboost":
        classifier, fit = _catboost(), {}
    else:
        classifier, fit = HistGradientBoostingClassifier(
            max_iter=40, random_state=0, categorical_features=levels), {}
    model = Pipeline([("prepare", prepare), ("model", classifier)])
    columns = COURSE_CATEGORICAL + COURSE_NUMERICAL
    model.fit(frame[columns].iloc[:SAMPLE_ROWS], frame.churn.iloc[:SAMPLE_ROWS], **fit)
    return model, lambda rows: model.predict_proba(rows[columns])


def course_pair_tree(frame):
    """The course's pair with a DecisionTreeClassifier (its week on trees)."""
    from sklearn.tree import DecisionTreeClassifier
    return course_pair(frame, DecisionTreeClassifier(max_depth=6, min_samples_leaf=15,
                                                     random_state=0))


def course_pair_boosting(frame):
    from sklearn.ensemble import HistGradientBoostingClassifier
    return course_pair(frame, HistGradientBoostingClassifier(max_iter=40, random_state=0))


def bare_boosting(frame, library: str = "scikit-learn"):
    """A multiclass HistGradientBoostingClassifier (or LGBMClassifier) fitted on a frame of
    numbers, some missing: the contract from the rest (one tree per class per round)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    columns = ["seniorcitizen", *COURSE_NUMERICAL]
    y = frame.contract.map({"month-to-month": 0, "one_year": 1, "two_year": 2})
    model = {"lightgbm": _lgbm, "catboost": _catboost}.get(
        library, lambda: HistGradientBoostingClassifier(max_iter=30, random_state=0))()
    model.fit(frame[columns].iloc[:SAMPLE_ROWS], y.iloc[:SAMPLE_ROWS])
    return model, lambda rows: model.predict_proba(rows[columns])


KINDS = {
    "course LogisticRegression": (lambda f: course_pair(f, _lr()), None),
    "course XGBoost": (lambda f: course_pair(f, _xgb()), None),
    "Pipeline(DictVectorizer, RandomForest)": (dict_pipeline, None),
    "ColumnTransformer, StandardScaler, LogisticRegression": (
        lambda f: column_pipeline(f, "standard"), _with_missing_numbers),
    "ColumnTransformer, MinMaxScaler, ExtraTrees": (
        lambda f: column_pipeline(f, "minmax"), _with_missing_numbers),
    "bare multiclass XGBClassifier": (bare_xgboost, None),
    "OrdinalEncoder (imputed, scaled), LogisticRegression": (
        ordinal_pipeline, _with_missing_and_unseen_contracts),
    "Pipeline(ColumnTransformer(OrdinalEncoder, remainder), HistGradientBoosting)": (
        ordinal_boosting, lambda f: _with_missing_numbers(_with_missing_and_unseen_contracts(f))),
    "course HistGradientBoosting": (course_pair_boosting, None),
    "course DecisionTree": (course_pair_tree, None),
    "bare multiclass HistGradientBoosting": (bare_boosting, _with_missing_numbers),
    "course LightGBM": (lambda f: course_pair(f, _lgbm()), None),
    "Pipeline(ColumnTransformer(OrdinalEncoder, remainder), LightGBM)": (
        lambda f: ordinal_boosting(f, library="lightgbm"),
        lambda f: _with_missing_numbers(_with_missing_and_unseen_contracts(f))),
    "bare multiclass LightGBM": (lambda f: bare_boosting(f, "lightgbm"), _with_missing_numbers),
    "course CatBoost": (lambda f: course_pair(f, _catboost()), None),
    "Pipeline(ColumnTransformer(OrdinalEncoder, remainder), CatBoost)": (
        lambda f: ordinal_boosting(f, library="catboost"),
        lambda f: _with_missing_numbers(_with_missing_and_unseen_contracts(f))),
    "bare multiclass CatBoost": (lambda f: bare_boosting(f, "catboost"), _with_missing_numbers),
}


def _tolerance(kind: str) -> float:
    """XGBoost's own answers are float32, and HistGradientBoosting, LightGBM and CatBoost
    models are served as XGBoost boosters (float32 leaves)."""
    return 1e-6 if any(name in kind for name in ("XGB", *BOOSTERS)) else 1e-9


BOOSTERS = ("HistGradientBoosting", "LightGBM", "CatBoost")


def _one_as_in_a_batch(kind: str) -> float:
    """One record's trees are summed in float64; a batch of trees too deep for the tree tables
    (HistGradientBoosting's and LightGBM's 31 leaves, CatBoost's 64) is XGBoost's own float32
    sum."""
    return 1e-6 if any(name in kind for name in BOOSTERS) else 1e-12


def _lr():
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression(max_iter=5000)


def _xgb():
    from xgboost import XGBClassifier
    return XGBClassifier(n_estimators=30, max_depth=3, n_jobs=1)


def _lgbm(**params):
    from lightgbm import LGBMClassifier
    return LGBMClassifier(n_estimators=40, n_jobs=1, verbose=-1, random_state=0, **params)


def _catboost(**params):
    from catboost import CatBoostClassifier
    return CatBoostClassifier(iterations=40, thread_count=1, verbose=0, random_seed=0,
                              allow_writing_files=False, **params)


def _sample_columns(name: str, frame: pd.DataFrame) -> list[str]:
    if name.startswith("ColumnTransformer"):
        return COURSE_CATEGORICAL[2:] + COURSE_NUMERICAL + ["churn"]
    if name.startswith("bare"):
        return ["seniorcitizen", *COURSE_NUMERICAL]
    return COURSE_CATEGORICAL + COURSE_NUMERICAL + ["churn"]


def users_model(kind: tuple, course, tmp_path) -> tuple:
    """A kind's frame (changed as it says), the user's own answers, and the model pickled as
    a user saves it."""
    make, change = kind
    frame = change(course[1]) if change else course[1]
    model, own = make(frame)
    model_file = tmp_path / "model.pkl"
    model_file.write_bytes(pickle.dumps(model))
    return frame, own, model_file


@pytest.mark.parametrize("kind", KINDS, ids=list(KINDS))
def test_an_imported_model_serves_its_own_answers(course, tmp_path, kind):
    """Imported from a file as a user saves it; served answers on rows the sample did not
    hold equal the user's own `predict_proba` (1e-9; 1e-6 for float32 trees: `_tolerance`)."""
    frame, own, model_file = users_model(KINDS[kind], course, tmp_path)
    sample = tmp_path / "sample.csv"
    frame[_sample_columns(kind, frame)].iloc[:SAMPLE_ROWS].to_csv(sample, index=False)
    rows = load_csv(sample)
    target = "churn" if "churn" in rows.columns else None
    imported = import_model(model_file, rows, target)
    bundle = imported.bundle
    assert isinstance(bundle.model, Adapted) and imported.checked_rows == SAMPLE_ROWS
    out = tmp_path / "served.bin"
    bundle.save(out)
    served = ModelBundle.load(out)
    held_out = frame.iloc[SAMPLE_ROWS:]
    records = [{k: (None if isinstance(v, float) and np.isnan(v) else v)
                for k, v in r.items()}
               for r in held_out[served.schema.names].to_dict(orient="records")]
    client = create_app(served, Settings()).test_client()
    answers = client.post("/predict", json=records).get_json()
    got = np.array([[a["probabilities"][c] for c in served.classes] for a in answers])
    np.testing.assert_allclose(got, own(held_out), rtol=0, atol=_tolerance(kind))
    for record, answer in list(zip(records, answers))[:30]:  # one record: the row path
        one = client.post("/predict", json=record).get_json()
        assert one["probabilities"] == pytest.approx(answer["probabilities"],
                                                     abs=_one_as_in_a_batch(kind))
    explained = client.post("/explain", json=records[:3])
    assert explained.status_code == (501 if any(kind_ in kind for kind_ in
                                                ("Forest", "Trees", "DecisionTree")) else 200)
    if "DecisionTree" in kind:
        assert explained.get_json()["detail"].endswith("this model is a decision tree")


@pytest.fixture(scope="module")
def course_bundle(course, tmp_path_factory):
    """The course's pair, pickled as its notebook does, imported by the command line."""
    folder, frame = course
    (vectorizer, model), own = course_pair(frame, _lr())
    model_file = folder / "model_C=1.0.bin"
    with model_file.open("wb") as f_out:
        pickle.dump((vectorizer, model), f_out)
    out = folder / "served.bin"
    done = subprocess.run([PYTHON, "import_model.py", "--model", str(model_file), "--data",
                           str(folder / "sample.csv"), "--target", "churn", "--output", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "no pickle; answers checked on 4000 rows" in done.stdout
    assert f"Report in {folder / 'served.reports'}/: metrics.json, model_card.md" in done.stdout
    return out, own


def test_the_course_workshop_pipeline_imports_as_data_with_its_answers():
    """The course's current workshop model (make_pipeline(DictVectorizer(), LogisticRegression(
    solver='liblinear')), pickled whole under scikit-learn 1.7, by
    tests/fixtures/workshop/make_model.py) imports in one call, with the Telco table as
    --data and its yes/no target read as the model's 1/0; served as data, its answers are the
    ones scikit-learn 1.7 gave, to 1e-9."""
    folder = ROOT / "tests" / "fixtures" / "workshop"
    expected = json.loads((folder / "answers.json").read_text())
    imported = import_model(folder / "model.bin", load_csv(ROOT / "data" / "telco_churn.csv"),
                            target="churn")
    bundle = imported.bundle
    assert not bundle.holds_pickle and bundle.classes == ["0", "1"]
    assert bundle.metrics["imported"]["target"] == \
        "'yes' read as the model's class 1, 'no' as 0"
    assert bundle.metrics["test"]["roc_auc"] > 0.8
    answers = create_app(bundle, Settings()).test_client().post(
        "/predict", json=expected["records"]).get_json()
    np.testing.assert_allclose([a["churn_probability"] for a in answers],
                               expected["churn_probability"], rtol=0, atol=1e-9)


@pytest.mark.process
def test_the_workshop_model_imports_with_the_raw_kaggle_file_as_data(tmp_path):
    """The course student's --data is the Kaggle file itself (an id, CamelCase names, levels as
    written, blanks in TotalCharges): names and levels are read by the model's spelling, as the
    server reads them, each rewriting said once; the id is left out; the answers are the
    workshop model's own, to 1e-9, and a record spelt as Kaggle's is answered alike."""
    folder = ROOT / "tests" / "fixtures" / "workshop"
    csv = tmp_path / "WA_Fn-UseC_-Telco-Customer-Churn.csv"
    kaggle_frame().to_csv(csv, index=False)
    out = tmp_path / "model.bin"
    done = subprocess.run([PYTHON, "import_model.py", "--model",
                           str(folder / "model.bin"), "--data", str(csv), "--target", "churn",
                           "--output", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    said = done.stdout.splitlines()
    assert "no pickle; answers checked on 7043 rows" in said[0]
    # scikit-learn's warning about the pickle's version (one per estimator) is one line
    assert "InconsistentVersionWarning" not in done.stderr, done.stderr
    assert said.pop(1) == (f"The pickle was made by scikit-learn 1.7.2 (this is scikit-learn "
                           f"{sklearn.__version__}): its answers are the ones checked above, "
                           f"on every row of {csv}")
    assert said[1].startswith(f"Read columns of {csv} by the model's spelling: Churn as churn, "
                              "Contract as contract, ")
    assert "SeniorCitizen as seniorcitizen" in said[1] and said[1].count(" as ") == 18
    assert "contract: 'Month-to-month' as 'month-to-month', 'One year' as 'one_year', " \
           "'Two year' as 'two_year'; " in said[2]
    assert "internetservice: 'DSL' as 'dsl', 'Fiber optic' as 'fiber_optic', 'No' as 'no'" \
        in said[2]
    assert said[3] == f"Left out the columns of {csv} the model does not read: customerID"
    assert said[4] == "The target 'churn': 'Yes' read as the model's class 1, 'No' as 0"
    assert (tmp_path / "reports" / "model_card.md").exists()
    expected = json.loads((folder / "answers.json").read_text())
    client = create_app(ModelBundle.load(out), Settings()).test_client()
    answers = client.post("/predict", json=expected["records"]).get_json()
    np.testing.assert_allclose([a["churn_probability"] for a in answers],
                               expected["churn_probability"], rtol=0, atol=1e-9)
    as_kaggle = kaggle_frame().drop(columns=["customerID", "Churn"]).iloc[0].to_dict()
    as_kaggle.update({name: float(as_kaggle[name]) for name in
                      ("SeniorCitizen", "tenure", "MonthlyCharges", "TotalCharges")})
    answer = client.post("/predict", json=as_kaggle).get_json()
    assert answer["churn_probability"] == pytest.approx(expected["churn_probability"][0],
                                                        abs=1e-9)
    assert any("'Month-to-month' for field 'contract'" in w for w in answer["warnings"])


@pytest.mark.process
def test_importing_over_a_model_says_what_it_replaced_and_the_way_back(course, course_bundle):
    """`--output model.bin`, as the course's student types it, replaces the committed default
    model and `reports/`: the command says so, with the git command that brings them back."""
    folder, _ = course
    out = folder / "again.bin"
    command = [PYTHON, "import_model.py", "--model", str(folder / "model_C=1.0.bin"), "--data",
               str(folder / "sample.csv"), "--target", "churn", "--output", str(out)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert first.returncode == 0 and "Replaced" not in first.stdout, first.stderr
    again = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert again.returncode == 0, again.stderr
    reports = folder / "again.reports"
    assert again.stdout.splitlines()[-1] == \
        f"Replaced the existing {out} and {reports}"  # not committed: no git hint
    card = ModelBundle.load(out, Trust(allow_pickle=True)).card  # the sample's figures, kept
    assert card["rows"] == "the sample" and card["count"] > 0 and card["importance"]["fields"]


@pytest.mark.process
def test_replacing_a_committed_model_says_the_git_command_that_brings_it_back(tmp_path):
    """The hint names only what git tracks (the default model.bin and reports/ of a clone)."""
    run = functools.partial(subprocess.run, cwd=tmp_path, check=True, capture_output=True)
    run(["git", "init", "-q"])
    (tmp_path / "model.bin").write_bytes(b"model")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "model_card.md").write_text("card")
    run(["git", "add", "model.bin", "reports"])
    (tmp_path / "mine.bin").write_bytes(b"untracked")
    model, reports, mine = tmp_path / "model.bin", tmp_path / "reports", tmp_path / "mine.bin"
    assert replaced(model, reports) == (f"Replaced the existing {model} and {reports} (they "
                                        f"come back with: git checkout -- {model} {reports})")
    assert replaced(mine) == f"Replaced the existing {mine}"
    assert replaced(tmp_path / "new.bin") is None


@pytest.mark.process
def test_the_courses_client_gets_the_courses_answer_from_gunicorn_and_score_py(
        course, course_bundle, tmp_path):
    out, own = course_bundle
    _, frame = course
    assert out.read_bytes().startswith(MAGIC + b"2 ")
    expected = own(pd.DataFrame([COURSE_CUSTOMER]))[0, 1]
    process, url = start_gunicorn(out)
    try:
        answer = requests.post(f"{url}/predict", json=COURSE_CUSTOMER, timeout=10).json()
        card = requests.get(f"{url}/model", timeout=10).json()
    finally:
        stop(process)
    assert answer["churn_probability"] == pytest.approx(expected, abs=1e-9)
    assert answer["churn"] == (expected >= 0.5) and "warnings" not in answer
    assert card["metrics"]["imported"]["kind"] == \
        "the course's pair (DictVectorizer, LogisticRegression)"
    assert card["metrics"]["test"]["roc_auc"] > 0.8
    reports = out.with_name("served.reports")
    written = json.loads((reports / "metrics.json").read_text())
    assert written["metrics"]["test"] == card["metrics"]["test"]
    low, high = written["test_intervals_95"]["roc_auc"]
    assert low < card["metrics"]["test"]["roc_auc"] < high
    model_card = (reports / "model_card.md").read_text()
    assert f"imported model {card['model_version']}" in model_card
    assert "the course's pair (DictVectorizer, LogisticRegression), served as data" in model_card
    assert "| tenure |" in model_card and (reports / "roc.png").stat().st_size > 0
    held_out = frame.iloc[SAMPLE_ROWS:]
    held_out.to_csv(tmp_path / "in.csv", index=False)
    done = subprocess.run([PYTHON, "score.py", "--model", str(out), "--input",
                           str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    scored = pd.read_csv(tmp_path / "out.csv")
    np.testing.assert_allclose(scored["churn_probability"], own(held_out)[:, 1], rtol=0,
                               atol=1e-9)


@pytest.mark.parametrize("suffix", [".json", ".ubj"])
def test_an_xgboost_booster_saved_by_xgboost_is_imported(course, tmp_path, suffix):
    import xgboost

    _, frame = course
    columns = ["seniorcitizen", *COURSE_NUMERICAL]
    data = xgboost.DMatrix(frame[columns].iloc[:SAMPLE_ROWS].to_numpy(dtype=float),
                           label=frame.churn.iloc[:SAMPLE_ROWS])
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 3}, data, 20)
    path = tmp_path / f"booster{suffix}"
    booster.save_model(path)
    frame[columns].iloc[:SAMPLE_ROWS].to_csv(tmp_path / "sample.csv", index=False)
    bundle = import_model(path, load_csv(tmp_path / "sample.csv")).bundle
    assert bundle.classes == ["0", "1"] and bundle.schema.names == columns
    matrix = frame[columns].iloc[SAMPLE_ROWS:].to_numpy(dtype=float)
    own = booster.predict(xgboost.DMatrix(matrix))
    client = create_app(bundle, Settings()).test_client()
    records = frame[columns].iloc[SAMPLE_ROWS:].to_dict(orient="records")
    got = [a["probabilities"]["1"] for a in client.post("/predict", json=records).get_json()]
    np.testing.assert_allclose(got, own, rtol=0, atol=1e-6)


# --- HistGradientBoosting: served as an XGBoost booster -----------------------------------

@pytest.mark.parametrize("classes", [2, 3])
def test_hist_gradient_boosting_is_served_as_a_booster_with_its_answers(classes):
    """Translated to an XGBoost booster (`model.kinds.hist_trees`), it gives its own `predict_proba`
    one record at a time and in batches, with missing values, a split of the missing values
    from all numbers (an infinite threshold) and records on each split's threshold
    (scikit-learn sends `x <= t` left, XGBoost `x < t`); its explanations add up to its raw
    scores."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from tabserve.model.fitted import BoostedTrees
    from tabserve.serving.scorers import compile_model
    from tabserve.model.kinds import translated

    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(1500, 5))
    y = (matrix[:, 0] + matrix[:, 1] * matrix[:, 2] > 0).astype(int) + \
        (matrix[:, 3] > 1 if classes == 3 else 0)
    matrix[rng.random(matrix.shape) < 0.1] = np.nan
    matrix[y == 1, 4] = np.where(rng.random((y == 1).sum()) < 0.6, np.nan, matrix[y == 1, 4])
    model = HistGradientBoostingClassifier(max_iter=60, random_state=0).fit(matrix, y)
    nodes = [p.nodes for round_ in model._predictors for p in round_]
    assert any(np.isinf(n["num_threshold"][~n["is_leaf"].astype(bool)]).any() for n in nodes)
    fitted = translated(model, np.zeros(5), classes)
    assert isinstance(fitted, BoostedTrees)
    scorer = compile_model(fitted)
    edges = []  # a record on each of the first tree's thresholds, and just above it
    first = nodes[0][~nodes[0]["is_leaf"].astype(bool)]
    for feature, threshold in zip(first["feature_idx"], first["num_threshold"]):
        for value in (threshold, threshold + 1e-4 * (1 + abs(threshold))):
            record = np.nan_to_num(matrix[0])
            record[feature] = value
            edges.append(record)
    records = np.vstack([matrix, np.array(edges)[np.isfinite(edges).all(axis=1)]])
    expected = model.predict_proba(records)
    for x, probabilities in zip(records.tolist(), expected):
        np.testing.assert_allclose(scorer.row(x), probabilities, rtol=0, atol=1e-6)
    np.testing.assert_allclose(scorer(records), expected, rtol=0, atol=1e-6)
    contributions, base = scorer.contributions(records)
    margins = model._raw_predict(records)
    np.testing.assert_allclose(contributions.sum(axis=2) + base,
                               margins if classes == 3 else margins.reshape(-1, 1),
                               rtol=0, atol=1e-5)


def test_hist_gradient_boosting_float32_cannot_part_is_served_through_its_own(tmp_path):
    """Amounts a cent apart near a million are one float32 (whose step there is 0.0625): as a
    booster, the model would part them differently, so it is kept whole, says why, and still
    gives its own answers."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(5)
    amount = 1_000_000 + rng.integers(0, 200, 3000) * 0.01
    frame = pd.DataFrame({"amount": amount, "tenure": rng.integers(0, 70, 3000).astype(float)})
    y = ((amount - 1_000_000) * 7 % 2 > 1).astype(int)  # alternates within float32's step
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(frame, y)
    model_file = tmp_path / "model.pkl"
    model_file.write_bytes(pickle.dumps(model))
    frame.iloc[:2000].assign(y=y[:2000]).to_csv(tmp_path / "sample.csv", index=False)
    imported = import_model(model_file, load_csv(tmp_path / "sample.csv"), "y")
    assert isinstance(imported.bundle.model, OwnModel) and imported.bundle.holds_pickle
    assert imported.bundle.metrics["imported"]["kind"].startswith(
        "a HistGradientBoostingClassifier served through its own predict_proba (as an XGBoost "
        "booster its answers differ by ")
    assert "float32 does not tell some of the sample's values from its thresholds" in \
        imported.bundle.metrics["imported"]["kind"]
    client = create_app(imported.bundle, Settings(trust=Trust(allow_pickle=True))).test_client()
    held_out = frame.iloc[2000:]
    answers = client.post("/predict", json=held_out.to_dict(orient="records")).get_json()
    np.testing.assert_allclose([a["probabilities"]["1"] for a in answers],
                               model.predict_proba(held_out)[:, 1], rtol=0, atol=1e-9)


# --- LightGBM: served as an XGBoost booster -------------------------------------------------

@pytest.mark.parametrize("classes", [2, 3])
def test_lightgbm_is_served_as_a_booster_with_its_answers_and_its_own_explanations(classes):
    """Translated to an XGBoost booster (`model.kinds.lightgbm_trees`), an LGBMClassifier grown
    leaf-wise gives its own `predict_proba` one record at a time and in batches: on records
    on each split's threshold and just above it (LightGBM sends `x <= t` left, XGBoost `x <
    t`), with missing values where it learnt a side for them (missing type NaN) and where it
    never saw one (type None: read as 0); its explanations are LightGBM's own tree SHAP
    values (`pred_contrib`)."""
    from tabserve.model.fitted import BoostedTrees
    from tabserve.serving.scorers import compile_model
    from tabserve.model.kinds import translated

    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(3000, 5))
    y = (matrix[:, 0] + matrix[:, 1] * matrix[:, 2] > 0).astype(int) + \
        (matrix[:, 3] > 1 if classes == 3 else 0)
    matrix[rng.random(3000) < 0.2, 4] = np.nan  # column 4 alone is ever missing in training
    model = _lgbm(num_leaves=24, min_child_samples=5).fit(matrix, y)
    document = model.booster_.dump_model()
    splits = [node for info in document["tree_info"]
              for node in _lightgbm_nodes(info["tree_structure"]) if "split_feature" in node]
    assert {node["missing_type"] for node in splits} == {"None", "NaN"}
    fitted = translated(model, np.zeros(5), classes)
    assert isinstance(fitted, BoostedTrees)
    scorer = compile_model(fitted)
    # on each of the first trees' thresholds, and just above it
    records = _on_edges_and_unseen_missing(matrix, rng, [
        (node["split_feature"], value) for node in splits[:40]
        for value in (node["threshold"], node["threshold"] + 1e-4 * (1 + abs(node["threshold"])))])
    _assert_answers_alike(scorer, records, model.predict_proba(records))
    contributions, base = scorer.contributions(records)
    own = model.predict(records, pred_contrib=True).reshape(len(records), -1, 6)
    np.testing.assert_allclose(contributions, own[:, :, :5], rtol=0, atol=1e-5)
    np.testing.assert_allclose(base, own[:, :, 5], rtol=0, atol=1e-5)


def _on_edges_and_unseen_missing(matrix: np.ndarray, rng, edges: list[tuple[int, float]]
                                 ) -> np.ndarray:
    """The rows; a record per (column, value) of `edges`; and rows whose first four columns,
    never missing in training, are sometimes missing."""
    on_edges = np.repeat(np.nan_to_num(matrix[:1]), len(edges), axis=0)
    on_edges[np.arange(len(edges)), [column for column, _ in edges]] = [v for _, v in edges]
    unseen_missing = matrix[:300].copy()
    unseen_missing[:, :4][rng.random((300, 4)) < 0.3] = np.nan
    return np.vstack([matrix, on_edges, unseen_missing])


def _assert_answers_alike(scorer, records: np.ndarray, expected: np.ndarray) -> None:
    """One record at a time (every seventh) and as a batch, to 1e-6."""
    for x, probabilities in zip(records[::7].tolist(), expected[::7]):
        np.testing.assert_allclose(scorer.row(x), probabilities, rtol=0, atol=1e-6)
    np.testing.assert_allclose(scorer(records), expected, rtol=0, atol=1e-6)


def _lightgbm_nodes(node: dict) -> list[dict]:
    if "split_feature" not in node:
        return [node]
    return [node, *_lightgbm_nodes(node["left_child"]), *_lightgbm_nodes(node["right_child"])]


def test_a_lightgbm_booster_saved_as_text_imports_as_data(tmp_path):
    """`lightgbm.train` on an array, saved by LightGBM as text (`--model model.txt`): its
    columns are the sample's in order, its classes 0 and 1, and its answers its own; a model
    that reads zeros as missing values, which the served trees cannot say, is refused in one
    line."""
    import lightgbm

    rng = np.random.default_rng(7)
    frame = pd.DataFrame(rng.normal(size=(3000, 3)), columns=["age", "income", "score"])
    frame.loc[rng.random(3000) < 0.1, "income"] = np.nan
    y = (frame.age + frame.income.fillna(0) > 0).astype(int)
    params = {"objective": "binary", "verbose": -1, "num_leaves": 15, "seed": 0}
    booster = lightgbm.train(params, lightgbm.Dataset(frame.to_numpy()[:2000], y[:2000]), 30)
    booster.save_model(tmp_path / "model.txt")
    frame.iloc[:2000].assign(y=y[:2000]).to_csv(tmp_path / "sample.csv", index=False)
    imported = import_model(tmp_path / "model.txt", load_csv(tmp_path / "sample.csv"), "y")
    assert isinstance(imported.bundle.model, Adapted) and imported.bundle.classes == ["0", "1"]
    assert imported.bundle.metrics["imported"]["kind"] == "a LightGBM booster"
    held_out = frame.iloc[2000:]
    answers = create_app(imported.bundle, Settings()).test_client().post(
        "/predict", json=[{k: (None if np.isnan(v) else v) for k, v in r.items()}
                          for r in held_out.to_dict(orient="records")]).get_json()
    np.testing.assert_allclose([a["probabilities"]["1"] for a in answers],
                               booster.predict(held_out.to_numpy()), rtol=0, atol=1e-6)
    zeros = frame.fillna(0).where(rng.random((3000, 3)) > 0.3, 0.0)
    lightgbm.train({**params, "zero_as_missing": True},
                   lightgbm.Dataset(zeros.to_numpy()[:2000], y[:2000]), 30).save_model(
        tmp_path / "zeros.txt")
    with pytest.raises(ImportRefused, match=r"^the LightGBM model reads zeros as missing values "
                                            r"\(zero_as_missing\): a LightGBM booster is"):
        import_model(tmp_path / "zeros.txt", load_csv(tmp_path / "sample.csv"), "y")


# --- CatBoost: served as an XGBoost booster ------------------------------------------------

@pytest.mark.parametrize("classes", [2, 3])
def test_catboost_is_served_as_a_booster_with_its_answers_and_its_own_explanations(classes):
    """Translated to an XGBoost booster (`model.kinds.catboost_trees`), a CatBoostClassifier's
    symmetric trees give its own `predict_proba` one record at a time and in batches: on
    records on each split's border and on the next float32 (CatBoost sends `x > border`
    right), with missing values sent left (nan_mode Min), right (Max) and where training saw
    none; its explanations are CatBoost's own SHAP values. A batch is scored by the tree
    tables: each level's nodes test one split, so a tree of depth 4 needs 4 bits, not 15."""
    import catboost

    from tabserve.model.fitted import BoostedTrees
    from tabserve.serving.scorers import compile_model
    from tabserve.model.kinds import translated

    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(3000, 5))
    y = (matrix[:, 0] + matrix[:, 1] * matrix[:, 2] > 0).astype(int) + \
        (matrix[:, 3] > 1 if classes == 3 else 0)
    matrix[rng.random(3000) < 0.2, 4] = np.nan  # column 4 alone is ever missing in training
    for nan_mode in ("Min", "Max"):
        model = _catboost(depth=4, nan_mode=nan_mode).fit(matrix, y)
        fitted = translated(model, np.zeros(5), classes)
        assert isinstance(fitted, BoostedTrees)
        scorer = compile_model(fitted)
        assert scorer.tables is not None
        # on borders of each column, and on the float32 above
        records = _on_edges_and_unseen_missing(matrix, rng, [
            (feature, value) for feature, borders in model.get_borders().items()
            for border in borders[::4]
            for value in (border, np.nextafter(np.float32(border), np.float32(np.inf)))])
        _assert_answers_alike(scorer, records, model.predict_proba(records))
        contributions, base = scorer.contributions(records[:500])
        own = model.get_feature_importance(catboost.Pool(records[:500]), type="ShapValues")
        own = own.reshape(500, -1, 6)
        np.testing.assert_allclose(contributions, own[:, :, :5], rtol=0, atol=1e-5)
        np.testing.assert_allclose(base, own[:, :, 5], rtol=0, atol=1e-5)


def test_a_catboost_model_saved_in_its_own_format_imports_as_data(tmp_path):
    """`save_model("model.cbm")`, CatBoost's own format, fitted on a frame: its columns by
    name, its answers its own."""
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(rng.normal(size=(3000, 3)), columns=["age", "income", "score"])
    frame.loc[rng.random(3000) < 0.1, "income"] = np.nan
    y = (frame.age + frame.income.fillna(0) > 0).astype(int)
    model = _catboost(depth=5).fit(frame.iloc[:2000], y[:2000])
    model.save_model(str(tmp_path / "model.cbm"))
    frame.iloc[:2000].assign(y=y[:2000]).to_csv(tmp_path / "sample.csv", index=False)
    imported = import_model(tmp_path / "model.cbm", load_csv(tmp_path / "sample.csv"), "y")
    assert isinstance(imported.bundle.model, Adapted) and imported.bundle.classes == ["0", "1"]
    held_out = frame.iloc[2000:]
    answers = create_app(imported.bundle, Settings()).test_client().post(
        "/predict", json=[{k: (None if np.isnan(v) else v) for k, v in r.items()}
                          for r in held_out.to_dict(orient="records")]).get_json()
    np.testing.assert_allclose([a["probabilities"]["1"] for a in answers],
                               model.predict_proba(held_out)[:, 1], rtol=0, atol=1e-6)


# --- models without a data form: served through their own predict_proba ---------------------

# CatBoost's categorical features: its texts, seniorcitizen (0/1) a number
CATBOOST_LEVELS = [name for name in COURSE_CATEGORICAL if name != "seniorcitizen"]


def catboost_on_levels(frame):
    """A CatBoostClassifier on a frame, its levels as categorical features (its statistics of
    them have no data form here)."""
    columns = COURSE_CATEGORICAL + COURSE_NUMERICAL
    model = _catboost(cat_features=CATBOOST_LEVELS).fit(frame[columns].iloc[:SAMPLE_ROWS],
                                                         frame.churn.iloc[:SAMPLE_ROWS])
    return model, lambda rows: model.predict_proba(rows[columns])


def test_catboost_kept_whole_is_given_a_missing_level_as_its_text(course, tmp_path):
    """CatBoost reads no missing category (NaN in one is an error): a record whose level is
    missing is given the text pandas writes for NaN, as CatBoost's documentation has users
    fill them, and is answered as the model answers that text, where NaN would have been a
    500."""
    frame, _, model_file = users_model(OWN["bare CatBoost(cat_features)"], course, tmp_path)
    columns = COURSE_CATEGORICAL + COURSE_NUMERICAL
    sample = frame[columns + ["churn"]].iloc[:SAMPLE_ROWS].copy()
    sample.loc[sample.index[::40], "contract"] = np.nan
    sample.to_csv(tmp_path / "sample.csv", index=False)
    imported = import_model(model_file, load_csv(tmp_path / "sample.csv"), "churn")
    assert isinstance(imported.bundle.model, OwnModel)
    assert imported.bundle.model.missing_text == "nan"
    assert "(the CatBoost model reads categorical or text features (cat_features))" in \
        imported.bundle.metrics["imported"]["kind"]
    client = create_app(imported.bundle, Settings(trust=Trust(allow_pickle=True))).test_client()
    record = {**frame[columns].iloc[SAMPLE_ROWS].to_dict(), "contract": None}
    answer = client.post("/predict", json=record)
    assert answer.status_code == 200
    model = pickle.loads(model_file.read_bytes())
    expected = model.predict_proba(pd.DataFrame([{**record, "contract": "nan"}])[columns])
    assert answer.get_json()["probabilities"]["1"] == pytest.approx(expected[0, 1], abs=1e-9)



def course_pair_neighbours(frame):
    from sklearn.neighbors import KNeighborsClassifier
    return course_pair(frame, KNeighborsClassifier(n_neighbors=25))


OWN = {"ColumnTransformer(OrdinalEncoder), HistGradientBoosting(categorical_features)": (
           lambda f: ordinal_boosting(f, categorical=True), _with_missing_numbers),
       "course pair, KNeighbors": (course_pair_neighbours, None),
       "ColumnTransformer(OrdinalEncoder), LightGBM(categorical_feature)": (
           lambda f: ordinal_boosting(f, categorical=True, library="lightgbm"),
           _with_missing_numbers),
       "bare CatBoost(cat_features)": (catboost_on_levels, _with_missing_numbers)}


@pytest.mark.parametrize("kind", OWN, ids=list(OWN))
def test_a_model_without_a_data_form_is_served_through_its_own_predict_proba(
        course, tmp_path, kind):
    """Kept whole and pickled (so read only when trusted); its fields rebuilt from the
    encoded record give the user's own answers, for a level it has never seen too."""
    frame, own, model_file = users_model(OWN[kind], course, tmp_path)
    columns = COURSE_CATEGORICAL + COURSE_NUMERICAL
    frame[columns + ["churn"]].iloc[:SAMPLE_ROWS].to_csv(tmp_path / "sample.csv", index=False)
    imported = import_model(model_file, load_csv(tmp_path / "sample.csv"), "churn")
    assert isinstance(imported.bundle.model, OwnModel) and imported.bundle.holds_pickle
    # the version of the library it runs with is recorded (a pickle needs the same one)
    own_library = next((name for name in ("lightgbm", "catboost") if name in kind.lower()),
                       None)
    if own_library:
        assert imported.bundle.metadata["libraries"][own_library] == \
            package_version(own_library)
    out = tmp_path / "served.bin"
    imported.bundle.save(out)
    with pytest.raises(ModelLoadError, match="ALLOW_PICKLE=1"):
        ModelBundle.load(out)
    served = ModelBundle.load(out, Trust(allow_pickle=True))
    held_out = frame.iloc[SAMPLE_ROWS:].copy()
    held_out.loc[held_out.index[::50], "contract"] = "three_year"  # unseen by the model
    records = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
               for r in held_out[columns].to_dict(orient="records")]
    client = create_app(served, Settings(trust=Trust(allow_pickle=True))).test_client()
    answers = client.post("/predict", json=records).get_json()
    got = np.array([a["probabilities"]["1"] for a in answers])
    np.testing.assert_allclose(got, own(held_out)[:, 1], rtol=0, atol=1e-9)
    one = client.post("/predict", json=records[0]).get_json()
    assert one["probabilities"]["1"] == pytest.approx(got[0], abs=1e-12)
    assert client.post("/explain", json=records[:3]).status_code == 501
    # the fields the model is given: the request's own, an unseen level as a text it never saw
    predictor = Predictor(served)
    given = predictor.scorer.fields(predictor.encoder.encode(
        columns_from_frame(served.schema, held_out.astype(object).where(held_out.notna()))))
    expected = held_out[columns].replace("three_year", UNSEEN_LEVEL).reset_index(drop=True)
    pd.testing.assert_frame_equal(given, expected[given.columns], check_dtype=False)


@pytest.mark.process
def test_a_pickled_import_is_served_by_gunicorn_only_when_trusted(course, tmp_path):
    _, frame = course
    model, own = ordinal_boosting(frame, categorical=True)
    model_file = tmp_path / "model.pkl"
    model_file.write_bytes(pickle.dumps(model))
    frame.iloc[:SAMPLE_ROWS].to_csv(tmp_path / "sample.csv", index=False)
    out = tmp_path / "served.bin"
    done = subprocess.run([PYTHON, "import_model.py", "--model", str(model_file), "--data",
                           str(tmp_path / "sample.csv"), "--target", "churn", "--output",
                           str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "served through its own predict_proba (the HistGradientBoostingClassifier splits " \
           "levels natively (categorical_features)), so the bundle holds it pickled: serve it " \
           "with ALLOW_PICKLE=1" in done.stdout
    refused = subprocess.run([PYTHON, "score.py", "--model", str(out), "--input",
                              str(tmp_path / "sample.csv"), "--output", str(tmp_path / "o.csv")],
                             capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert refused.returncode != 0 and "ALLOW_PICKLE=1" in refused.stderr
    process, url = start_gunicorn(out, ALLOW_PICKLE="1")
    try:
        answer = requests.post(f"{url}/predict", json=COURSE_CUSTOMER, timeout=10).json()
    finally:
        stop(process)
    expected = own(pd.DataFrame([COURSE_CUSTOMER]))[0, 1]
    assert answer["churn_probability"] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("kind", ["translated", "own predict_proba"])
def test_an_imported_bundle_has_the_openapi_the_v2_protocol_and_signatures(course, tmp_path,
                                                                          kind):
    """What every bundle gets comes along: the OpenAPI document names the course's fields, the
    Open Inference Protocol's metadata and inference answer, and a signature (which lets a
    pickled import through without ALLOW_PICKLE, and a changed byte never)."""
    _, frame = course
    model, own = course_pair(frame, _lr()) if kind == "translated" else \
        course_pair_neighbours(frame)
    model_file = tmp_path / "model.pkl"
    model_file.write_bytes(pickle.dumps(model))
    frame.iloc[:SAMPLE_ROWS].to_csv(tmp_path / "sample.csv", index=False)
    bundle = import_model(model_file, load_csv(tmp_path / "sample.csv"), "churn").bundle
    key = b"k" * 32
    signed = tmp_path / "signed.bin"
    bundle.save(signed, signing_key=key)
    served = ModelBundle.load(signed, Trust(signing_key=key))
    tampered = tmp_path / "tampered.bin"
    data = bytearray(signed.read_bytes())
    data[-100] ^= 1
    tampered.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError):
        ModelBundle.load(tampered, Trust(signing_key=key, allow_pickle=True))
    client = create_app(served, Settings(trust=Trust(signing_key=key))).test_client()
    document = client.get("/openapi.json").get_json()
    text = json.dumps(document)
    assert all(f'"{name}"' in text for name in COURSE_CATEGORICAL + COURSE_NUMERICAL)
    metadata = client.get("/v2/models/churn").get_json()
    assert {t["name"] for t in metadata["inputs"]} == set(COURSE_CATEGORICAL + COURSE_NUMERICAL)
    inputs = [{"name": name, "shape": [1],
               "datatype": "BYTES" if isinstance(value, str) else "FP64", "data": [value]}
              for name, value in COURSE_CUSTOMER.items()]
    for tensor in inputs:
        declared = next(t for t in metadata["inputs"] if t["name"] == tensor["name"])
        tensor["datatype"] = declared["datatype"]
    answer = client.post("/v2/models/churn/infer", json={"inputs": inputs})
    assert answer.status_code == 200, answer.get_json()
    outputs = {o["name"]: o["data"] for o in answer.get_json()["outputs"]}
    expected = own(pd.DataFrame([COURSE_CUSTOMER]))[0, 1]
    assert outputs["churn_probability"] == pytest.approx([expected], abs=1e-9)
    assert outputs["label"] == ["1" if expected >= 0.5 else "0"]


PROCESS_ROWS = 500  # held-out rows sent to gunicorn and score.py


@pytest.mark.process
@pytest.mark.parametrize("kind", [*KINDS, *OWN], ids=[*KINDS, *OWN])
def test_every_kind_is_served_by_gunicorn_and_score_py_with_its_own_answers(
        course, tmp_path, kind):
    """The real doors: gunicorn over HTTP and score.py over a CSV, on held-out rows, against
    the user's own `predict_proba` (a model served through its own, with ALLOW_PICKLE=1)."""
    frame, own, model_file = users_model(KINDS[kind] if kind in KINDS else OWN[kind], course,
                                         tmp_path)
    columns = _sample_columns(kind, frame) if kind in KINDS else \
        COURSE_CATEGORICAL + COURSE_NUMERICAL + ["churn"]
    frame[columns].iloc[:SAMPLE_ROWS].to_csv(tmp_path / "sample.csv", index=False)
    rows = load_csv(tmp_path / "sample.csv")
    bundle = import_model(model_file, rows, "churn" if "churn" in rows.columns else None).bundle
    out = tmp_path / "served.bin"
    bundle.save(out)
    held_out = frame.iloc[SAMPLE_ROWS:SAMPLE_ROWS + PROCESS_ROWS]
    expected = own(held_out)
    tolerance = _tolerance(kind)
    trust = {"ALLOW_PICKLE": "1"} if bundle.holds_pickle else {}
    held_out[bundle.schema.names].to_csv(tmp_path / "in.csv", index=False)
    done = subprocess.run([PYTHON, "score.py", "--model", str(out), "--input",
                           str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, **trust})
    assert done.returncode == 0, done.stderr
    scored = pd.read_csv(tmp_path / "out.csv")
    np.testing.assert_allclose(scored[[f"probability_{c}" for c in bundle.classes]],
                               expected, rtol=0, atol=tolerance)
    records = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
               for r in held_out[bundle.schema.names].to_dict(orient="records")]
    process, url = start_gunicorn(out, **trust)
    try:
        answers = requests.post(f"{url}/predict", json=records, timeout=60).json()
        one = requests.post(f"{url}/predict", json=records[1], timeout=10).json()
    finally:
        stop(process)
    got = np.array([[a["probabilities"][c] for c in bundle.classes] for a in answers])
    np.testing.assert_allclose(got, expected, rtol=0, atol=tolerance)
    assert one["probabilities"] == pytest.approx(answers[1]["probabilities"],
                                                 abs=_one_as_in_a_batch(kind))


# --- refusals: one line, nothing written -----------------------------------------------------

def _regressor():
    from sklearn.linear_model import LinearRegression
    return LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0])


def _unfitted():
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression()


def _lightgbm_on_categories():
    frame = course_frame().iloc[:1000]
    return _lgbm().fit(frame[COURSE_CATEGORICAL + COURSE_NUMERICAL].astype(
        {name: "category" for name in COURSE_CATEGORICAL}), frame.churn)


REFUSALS = {
    "a regressor": (_regressor, None, "holds a LinearRegression (a regressor), not a classifier"),
    "a function": (lambda: len, None, "holds a builtin_function_or_method (a Python object), not a classifier"),
    "an unfitted model": (_unfitted, None, "the LogisticRegression in the file is not fitted"),
    "a sample without a field": (
        "course", lambda f: f.drop(columns=["tenure"]), "the model reads fields the sample "
                                                         "lacks: tenure"),
    "a field spelt two ways": (  # one spelt otherwise is read (the Kaggle test); two, not
        "course", lambda f: f.rename(columns={"tenure": "Tenure"}).assign(TENURE=f["tenure"]),
        "the model reads fields the sample lacks: tenure (the sample has 'Tenure' and "
        "'TENURE') (1 of them)"),
    "a target the sample lacks": ("course", lambda f: f.drop(columns=["churn"]),
                                  "the target column 'churn' is not in the data"),
    "text where the model reads a number": (
        "course", lambda f: f.assign(tenure="long"), "the model reads 'tenure' as a number; "
                                                      "the sample has 'long' in it"),
    "LightGBM on pandas categories": (_lightgbm_on_categories, None,
                                      "the LGBMClassifier was fitted on pandas category "
                                      "columns, which it reads only as such"),
}


@pytest.mark.process
@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_what_cannot_be_imported_is_refused_in_one_line(course, tmp_path, case):
    make, change, message = REFUSALS[case]
    _, frame = course
    model = course_pair(frame, _lr())[0] if make == "course" else make()
    model_file = tmp_path / "model.pkl"
    model_file.write_bytes(pickle.dumps(model))
    sample = frame[COURSE_CATEGORICAL + COURSE_NUMERICAL + ["churn"]].iloc[:200]
    (change(sample) if change else sample).to_csv(tmp_path / "sample.csv", index=False)
    out = tmp_path / "out.bin"
    done = subprocess.run([PYTHON, "import_model.py", "--model", str(model_file), "--data",
                           str(tmp_path / "sample.csv"), "--target", "churn", "--output",
                           str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_columns_the_model_does_not_read_are_left_out_and_said(course, tmp_path):
    """An id and other columns of a file (the Kaggle one has customerID) that the model does
    not read are left out of the sample, and the command names them."""
    _, frame = course
    model_file = tmp_path / "model.pkl"
    model_file.write_bytes(pickle.dumps(course_pair(frame, _lr())[0]))
    sample = frame[COURSE_CATEGORICAL + COURSE_NUMERICAL + ["churn"]].iloc[:300]
    sample.assign(customerID=[f"c{i}" for i in range(len(sample))], nickname="x").to_csv(
        tmp_path / "sample.csv", index=False)
    imported = import_model(model_file, load_csv(tmp_path / "sample.csv"), "churn")
    assert imported.unread == ("customerID", "nickname")
    assert "customerID" not in imported.bundle.schema.names


def test_a_pickle_this_environment_cannot_read_names_the_versions(tmp_path):
    import sklearn
    import xgboost

    model_file = tmp_path / "model.pkl"
    # a pickle of a class from a module this environment does not have
    model_file.write_bytes(b"\x80\x04\x95\x1b\x00\x00\x00\x00\x00\x00\x00\x8c\x0bnot_sklearn"
                           b"\x94\x8c\x05Model\x94\x93\x94.")
    pd.DataFrame({"a": [1, 2], "b": [3, 4]}).to_csv(tmp_path / "sample.csv", index=False)
    with pytest.raises(ImportRefused) as refused:
        import_model(model_file, load_csv(tmp_path / "sample.csv"))
    assert f"scikit-learn {sklearn.__version__} and XGBoost {xgboost.__version__}" in \
        str(refused.value) and "ModuleNotFoundError" in str(refused.value)
    with pytest.raises(ImportRefused, match="--data is needed"):
        import_model(model_file, None)


@pytest.mark.parametrize("suffix, library", [(".txt", "lightgbm"), (".cbm", "catboost"),
                                             (".json", "xgboost"), (".ubj", "xgboost")])
def test_a_kinds_own_file_it_cannot_read_is_refused_in_one_line(tmp_path, suffix, library):
    """A file named as a kind's own format (the registry's suffixes) is read by that library,
    and its refusal is one line naming the library and its version."""
    model_file = tmp_path / f"model{suffix}"
    model_file.write_text("not a model\n")
    rows = pd.DataFrame({"a": ["1", "2"], "y": ["0", "1"]})
    with pytest.raises(ImportRefused, match=f"is not a model {library} [0-9.]+ can read: ") \
            as refused:
        import_model(model_file, rows, "y")
    assert "\n" not in str(refused.value)
