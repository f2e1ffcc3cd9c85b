"""The corpus of tables that `test_corpus.py` trains and serves: every classification table of
R's modeldata (Debian's `r-cran-modeldata`, written to CSV by R itself), scikit-learn's bundled
tables, and tables made here for what public data rarely shows together. docs/training.md
lists them and what each exercises."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

@dataclass(frozen=True)
class Table:
    name: str
    target: str
    # None: trains and serves; otherwise words that train.py's one-line refusal must contain
    refused: str | None = None


# modeldata's classification tables and their targets
MODELDATA = (
    Table("ad_data", "Class"), Table("attrition", "Attrition"),
    Table("bivariate_train", "Class"), Table("cells", "class"),
    Table("check_times", "status"), Table("credit_data", "Status"),
    Table("crickets", "species"), Table("grants_test", "class"), Table("hpc_cv", "obs"),
    Table("hpc_data", "class"), Table("lending_club", "Class"), Table("mlc_churn", "churn"),
    Table("oils", "class", refused="too few rows"), Table("parabolic", "class"),
    Table("pathology", "pathology"), Table("pd_speech", "class"), Table("penguins", "species"),
    Table("Sacramento", "type"), Table("scat", "Species"), Table("stackoverflow", "Remote"),
    # reviews of fine foods: free text only, which training drops
    Table("training_data", "score", refused="no usable input columns"),
    Table("two_class_dat", "Class"), Table("two_class_example", "truth"),
    Table("wa_churn", "churn"),
)
# modeldata's other tables, and why they are not in the corpus: a table added by a new
# modeldata version must be sorted into one list or the other (test_corpus checks)
MODELDATA_LEFT_OUT = {
    "ames": "regression (sale price)", "biomass": "regression", "car_prices": "regression",
    "Chicago": "regression (ridership)", "concrete": "regression", "covers": "text only",
    "drinks": "a time series", "meats": "regression", "Smithsonian": "names and places",
    "solubility_test": "regression", "stations": "not a table", "tate_text": "text only",
    "grants_2008": "not a table (a date)",
    "bivariate_test": "the same table as bivariate_train", "bivariate_val": "the same",
    "testing_data": "the same table as training_data",
    "grants_other": "the same table as grants_test, 8,190 rows of 1,503 columns (2 min)",
}

_EXPORT = """
suppressMessages(library(modeldata))
args <- commandArgs(trailingOnly = TRUE)
for (n in args[-1]) {
  e <- new.env(); suppressWarnings(data(list = n, package = "modeldata", envir = e))
  write.csv(get(n, envir = e), file.path(args[1], paste0(n, ".csv")), row.names = FALSE, na = "")
}
"""

_LIST = """
suppressMessages(library(modeldata))
cat(sub(" .*", "", data(package = "modeldata")$results[, "Item"]), sep = "\\n")
"""


def modeldata_available() -> bool:
    if shutil.which("Rscript") is None:
        return False
    return subprocess.run(["Rscript", "-e", "library(modeldata)"], capture_output=True,
                          timeout=120).returncode == 0


def modeldata_names() -> list[str]:
    done = subprocess.run(["Rscript", "-e", _LIST], capture_output=True, text=True, timeout=120,
                          check=True)
    return done.stdout.split()


def write_modeldata(folder: Path) -> None:
    """Every corpus table of modeldata as `<name>.csv` in `folder`, as R's write.csv writes it."""
    subprocess.run(["Rscript", "-e", _EXPORT, str(folder), *(t.name for t in MODELDATA)],
                   check=True, capture_output=True, timeout=300)


SKLEARN = (Table("breast_cancer", "target"), Table("wine", "target"), Table("iris", "target"))


def write_sklearn(folder: Path) -> None:
    """scikit-learn's bundled tables (no download), the target as the class's name."""
    from sklearn import datasets

    for table in SKLEARN:
        data = getattr(datasets, f"load_{table.name}")(as_frame=True)
        frame = data.frame.copy()
        frame["target"] = np.asarray(data.target_names)[data.target]
        frame.to_csv(folder / f"{table.name}.csv", index=False)


MADE = (
    Table("people", "left"), Table("unicode_semicolon_bom_crlf", "bought"),
    Table("wide_300", "grade"),
)


def people(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """Numeric and text columns named like sensitive attributes (`age`, `Seniority`, `sex` as
    0/1, `gender`, `marital_status`), an empty column, a constant, free text, dates, an
    identifier; the target written as yes/no."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, rows)
    seniority = rng.integers(0, 30, rows)
    sex = rng.integers(0, 2, rows)
    gender = rng.choice(["female", "male", "non-binary"], rows, p=[0.48, 0.48, 0.04])
    score = (age - 45) / 15 - seniority / 10 + sex * 0.5 + rng.normal(0, 1, rows)
    frame = pd.DataFrame({
        "employee_id": [f"E{100000 + i}" for i in range(rows)],
        "age": age.astype(object), "Seniority": seniority, "sex": sex, "gender": gender,
        "marital_status": rng.choice(["single", "married", "divorced"], rows),
        "hired_on": pd.Timestamp("2010-01-01")
        + pd.to_timedelta(rng.integers(0, 5000, rows), unit="D"),
        "notes": [f"met on {d} about item {rng.integers(1e6)}" for d in range(rows)],
        "nothing": "", "company": "ACME",
        "left": np.where(score > 0, "yes", "no"),
    })
    frame.loc[rng.choice(rows, rows // 20, replace=False), "age"] = ""
    return frame


def write_made(folder: Path) -> None:
    people().to_csv(folder / "people.csv", index=False)

    rng = np.random.default_rng(1)
    rows = 400
    price = rng.uniform(1, 100, rows).round(2)
    city = rng.choice(["Zürich", "Москва", "東京", "São Paulo"], rows)
    frame = pd.DataFrame({
        "größe": rng.normal(170, 10, rows).round(1), "город": city, "价格": price,
        "comment": [f"line one\nline two; {i}" if i % 5 == 0 else "plain" for i in range(rows)],
        "bought": (price + (city == "東京") * 30 + rng.normal(0, 20, rows) > 60).astype(int),
    })
    text = frame.to_csv(index=False, sep=";", lineterminator="\r\n")
    (folder / "unicode_semicolon_bom_crlf.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())

    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, (rows, 300)).round(4)
    signal = x[:, 0] + x[:, 1] - x[:, 2] + rng.normal(0, 0.5, rows)
    wide = pd.DataFrame(x, columns=[f"x{i:03d}" for i in range(300)])
    wide["grade"] = np.digitize(signal, np.quantile(signal, [1 / 3, 2 / 3])) + 1  # 1, 2, 3
    wide.to_csv(folder / "wide_300.csv", index=False)
