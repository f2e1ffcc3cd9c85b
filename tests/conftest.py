"""Fixtures layered as CSV → bundle → app → client; the CSVs are written by the tests."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from tabserve.app import create_app  # noqa: E402
from tabserve.bundle import ModelBundle  # noqa: E402
from tabserve.config import Settings  # noqa: E402
from tabserve.data import file_sha256, load_csv  # noqa: E402
from tabserve.training import train  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def loan_frame(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """A binary problem that is not churn: target `approved` (`yes`/`no`), with every kind of
    column, missing values, stray whitespace, an ID and a constant column."""
    rng = np.random.default_rng(seed)
    income = rng.normal(50, 15, rows).round(1)
    debt = rng.uniform(0, 40, rows).round(2)
    region = rng.choice(["north", "south", "east", "west"], rows)
    owner = rng.choice(["Yes", "No"], rows)
    score = income / 10 - debt / 8 + (region == "south") * 1.0 + (owner == "Yes") * 0.8
    approved = np.where(score + rng.normal(0, 1, rows) > np.median(score), "yes", "no")
    frame = pd.DataFrame({
        "application_id": np.arange(1000, 1000 + rows),
        "income": income.astype(object),
        "debt": debt,
        "region": [f" {r} " if i % 7 == 0 else r for i, r in enumerate(region)],
        "home_owner": owner,
        "country": "NL",
        "approved": approved,
    })
    frame.loc[rng.choice(rows, rows // 16, replace=False), "income"] = "NA"
    frame.loc[rng.choice(rows, rows // 40, replace=False), "region"] = ""
    return frame


def flower_frame(rows: int = 300, seed: int = 0) -> pd.DataFrame:
    """A multiclass problem: target `species` with three classes, and an ordered text field."""
    rng = np.random.default_rng(seed)
    species = rng.choice(["setosa", "versicolor", "virginica"], rows)
    centre = pd.Series(species).map({"setosa": 1.0, "versicolor": 2.5, "virginica": 4.0})
    return pd.DataFrame({
        "petal_length": (centre + rng.normal(0, 0.6, rows)).round(2),
        "petal_width": (centre / 3 + rng.normal(0, 0.3, rows)).round(2),
        "colour": np.where(species == "setosa", rng.choice(["blue", "white"], rows),
                           rng.choice(["purple", "white", "blue"], rows)),
        # ordered levels, found from their words: a rank column joins the one-hot ones
        "size": np.where(rng.random(rows) < 0.7, pd.Series(species).map(
            {"setosa": "Small", "versicolor": "Medium", "virginica": "Large"}),
            rng.choice(["Small", "Medium", "Large"], rows)),
        "species": species,
    })


def fit_bundle(csv: Path, target: str, **options) -> ModelBundle:
    """A bundle from the first trials of the search (each family's defaults): quick and exact."""
    options = {"max_trials": 3, **options}
    result = train(load_csv(csv), target, seed=1, folds=3, **options)
    return ModelBundle.from_training(result, data_path=csv, data_sha256=file_sha256(csv), seed=1)


@pytest.fixture(scope="session")
def loan_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "loans.csv"
    loan_frame().to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def flower_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "flowers.csv"
    flower_frame().to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def loan_bundle(loan_csv) -> ModelBundle:
    return fit_bundle(loan_csv, "approved")


@pytest.fixture(scope="session")
def flower_bundle(flower_csv) -> ModelBundle:
    return fit_bundle(flower_csv, "species")


@pytest.fixture(scope="session")
def telco_bundle() -> ModelBundle:
    """The committed default model."""
    return ModelBundle.load(ROOT / "model.bin")


@pytest.fixture(scope="session")
def telco_record(telco_bundle) -> dict:
    return dict(telco_bundle.example)


@pytest.fixture()
def client(telco_bundle):
    return create_app(telco_bundle, Settings(max_batch_records=50, max_body_bytes=200_000)
                      ).test_client()


@pytest.fixture()
def loan_client(loan_bundle):
    return create_app(loan_bundle, Settings()).test_client()


@pytest.fixture()
def flower_client(flower_bundle):
    return create_app(flower_bundle, Settings()).test_client()
