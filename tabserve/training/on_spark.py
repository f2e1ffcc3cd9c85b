"""Training on a Spark DataFrame of any size: the search on a sample, the final model fitted on
every row by XGBoost's own Spark estimator.

    from tabserve.spark import train
    bundle = train(customers, target="churn", output="model.bin")

Procedure (docs/training.md, "Training on Spark", says the same):
1. every labelled row gets a number in [0, 1) from a hash of its values and the seed, so a row
   and its exact copies always fall on one side; the lowest numbers are the held-out rows (a
   `TEST_SIZE` share, at most `HELD_OUT_ROWS`): their first half (the calibration rows) chooses
   calibration and threshold and gives the reference profile, their second half (the test rows)
   measures; the next are a validation slice (`VALIDATION_ROWS`) that decides how many trees
   the full fit grows; the rest are fitted on;
2. a uniform sample of the rows outside the held-out ones (at most `max_rows`) comes to the
   driver and `trainer.train` runs on it as on a CSV: schema, search within the budget, and
   the sample's own fit;
3. an XGBoost winner (alone or as the blend's member) is fitted again with the chosen settings
   on every row but the held-out and validation ones, by `SparkXGBClassifier` on the
   executors; a logistic regression or a random forest keeps the sample's fit (`KEPT`);
4. the full fit and the sample's fit are scored on the same test rows; the bundle ships the
   full fit, with the decision and profile of step 1.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline
from xgboost import XGBClassifier

from tabserve.batch.spark import check_local_workers
from tabserve.cli import reports_folder, signed_with
from tabserve.model.blend import Blend
from tabserve.model.bundle import ModelBundle
from tabserve.model.decision import calibrate
from tabserve.model.from_sklearn import fitted_model
from tabserve.model.schema import MISSING_TOKENS
from tabserve.tables import DataError
from tabserve.training.reference import reference_profile
from tabserve.training.search import EARLY_STOPPING_ROUNDS, MAX_TREES, TEST_SIZE
from tabserve.training.trainer import (CANDIDATES, TrainingResult, decision_on, report_seconds,
                                       test_scores, train as train_sample)

HELD_OUT_ROWS = 200_000   # rows that measure the model: a ROC AUC on 100,000 is good to ~0.002
VALIDATION_ROWS = 100_000  # rows that tell the full fit when to stop adding trees
SHARE = "_tabserve_share"  # the hash's number in [0, 1) of each row
KEPT = {  # why a family keeps the sample's fit
    "logistic_regression": "a logistic regression's few coefficients are estimated as well from "
                           "the sample",
    "random_forest": "no Spark estimator grows the random forests this package serves",
}


class SparkMasterError(RuntimeError):
    """A Spark master that does not answer; the message names it."""


def check_master(master: str, timeout: float = 5.0) -> None:
    """A standalone, YARN-less master (`spark://host:port`, `k8s://https://host:port`) must
    answer a TCP connection: Spark itself retries an absent one for a minute, then fails deep
    in a Java stack trace."""
    address = master.removeprefix("k8s://")
    if not address.startswith(("spark://", "http://", "https://")):
        return  # local[...], yarn: nothing to dial
    for hostport in urlsplit(address).netloc.split(","):  # spark://a:7077,b:7077 (standby)
        host, _, port = hostport.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=timeout).close()
            return
        except (OSError, ValueError) as err:
            reason = err
    raise SparkMasterError(f"Spark master {master} does not answer: {reason}")


def as_text(df, columns: Sequence[str]):
    """`columns` of `df` as `tables.load_csv` reads a CSV's cells: text, trimmed, the missing
    tokens null; whatever types the DataFrame had."""
    from pyspark.sql import functions as F

    def cell(name):
        text = F.trim(df[name].cast("string"))
        return F.when(text.isin(list(MISSING_TOKENS)), F.lit(None)).otherwise(text).alias(name)
    return df.select([cell(name) for name in columns])


def with_share(df, seed: int):
    """`df` with each row's number in [0, 1) (`SHARE`), from a hash of its values and `seed`:
    the same for a row and its copies, on any cluster and any run."""
    from pyspark.sql import functions as F

    scale = 2 ** 53
    hashed = F.pmod(F.xxhash64(F.lit(seed), *[df[name] for name in df.columns]), F.lit(scale))
    return df.withColumn(SHARE, hashed.cast("double") / scale)


def to_pandas(df) -> pd.DataFrame:
    """Text columns on the driver, missing cells as pandas' NA (as `load_csv` gives them)."""
    frame = df.toPandas()
    for name in frame.columns:
        if name != SHARE:
            frame[name] = frame[name].astype("string").astype(object).where(frame[name].notna())
    return frame


def unit_rows(proba: np.ndarray) -> np.ndarray:
    """Class probabilities in float64, each row summing to one (XGBoost's are float32, whose
    sums miss one by more than scikit-learn's metrics allow)."""
    proba = np.asarray(proba, np.float64)
    return proba / proba.sum(axis=1, keepdims=True)


def probabilities(pipeline: Pipeline, frame: pd.DataFrame) -> np.ndarray:
    return unit_rows(pipeline.predict_proba(frame))


def class_counts(labelled, target: str) -> dict[str, int]:
    return {row[target]: row["count"] for row in labelled.groupBy(target).count().collect()}


def xgboost_on_spark(rows, encoder, schema, classes: list[str], params: dict[str, Any],
                     validation_below: float, seed: int, num_workers: int) -> Pipeline:
    """The XGBoost configuration fitted by `SparkXGBClassifier` on `rows` (text, with their
    share): rows below `validation_below` decide the number of trees, the others are fitted
    on. The steps after the encoder, as `search.fit_model` returns them."""
    from pyspark.sql.types import BooleanType, DoubleType, IntegerType, StructField, StructType
    from xgboost.spark import SparkXGBClassifier

    names, target = schema.names, schema.target
    features = [f"f{i}" for i in range(len(encoder.get_feature_names_out()))]
    codes = {label: code for code, label in enumerate(classes)}
    layout = StructType([StructField(f, DoubleType()) for f in features]
                        + [StructField("label", IntegerType()),
                           StructField("validation", BooleanType())])

    def encode_batches(frames):
        for frame in frames:
            cells = frame[names].astype(object).where(frame[names].notna())
            out = pd.DataFrame(np.asarray(encoder.transform(cells), np.float64), columns=features)
            out["label"] = frame[target].map(codes).to_numpy(np.int32)
            out["validation"] = (frame[SHARE] < validation_below).to_numpy()
            yield out

    # (not coalesced to the workers' count: a barrier stage refuses a narrowed chain; the
    # estimator repartitions the encoded rows itself)
    encoded = rows.mapInPandas(encode_batches, layout)
    logging.getLogger("XGBoost-PySpark").setLevel(logging.WARNING)  # its INFO: every setting
    settings = {k: v for k, v in params.items() if k not in ("n_estimators", "cut")}
    estimator = SparkXGBClassifier(
        features_col=features, label_col="label", validation_indicator_col="validation",
        num_workers=num_workers, n_estimators=MAX_TREES,
        early_stopping_rounds=EARLY_STOPPING_ROUNDS, tree_method="hist", random_state=seed,
        verbose=False, **settings)
    booster = estimator.fit(encoded).get_booster()
    best = booster.attributes().get("best_iteration")
    if best is not None:
        booster = booster[: int(best) + 1]
    model = XGBClassifier()
    model.load_model(bytearray(booster.save_raw("ubj")))
    return Pipeline([("model", model)])


def full_fit(family: str, params: dict[str, Any], sample_steps: Pipeline,
             refit: Callable[[dict[str, Any]], Pipeline]) -> tuple[Pipeline, str]:
    """The steps the bundle ships and what they were fitted on, in words: XGBoost (alone or
    the blend's member) by `refit` with its parameters, the rest the sample's."""
    if family not in ("xgboost", "blend"):
        return sample_steps, f"the sample's fit, kept: {KEPT[family]}"
    settings = params if family == "xgboost" else \
        next(m["params"] for m in params["members"] if m["family"] == "xgboost")
    trees = refit(settings)
    grown = (f"{trees[-1].get_booster().num_boosted_rounds()} trees, as many as the validation "
             "slice asked for, by SparkXGBClassifier on every row outside the held-out and "
             "validation ones")
    if family == "xgboost":
        return trees, f"XGBoost of {grown}"
    members = [trees if m["family"] == "xgboost" else member
               for m, member in zip(params["members"], sample_steps[-1].members)]
    return (Pipeline([("model", Blend(members, params["weights"]))]),
            f"the blend's XGBoost member of {grown}; its logistic regression is the sample's: "
            f"{KEPT['logistic_regression']}")


def train(df, target: str, output: str | Path = "model.bin", *, reports: str | Path | None = None,
          seed: int = 1, folds: int = 5, candidates: Sequence[str] = CANDIDATES,
          time_budget: float = 60.0, max_trials: int | None = None, max_rows: int = 200_000,
          threshold_rule: str = "fixed:0.5", positive_class: str | None = None,
          ordinal: dict[str, Sequence[str]] | None = None, source: str = "a Spark DataFrame",
          signing_key: bytes | None = None, num_workers: int | None = None,
          log: Callable[[str], None] = print) -> ModelBundle:
    """Train a bundle for `target` on every row of the Spark DataFrame `df` (see the module's
    procedure), write it to `output` and its report to `reports` (default: beside it, as
    train.py names it), and return it. `time_budget` bounds the search, the sample's fit and
    its report, from when the sample arrives (Spark's passes over the rows before it, and the
    full fit after, take what the rows take). `DataError` for a table that cannot be trained on."""
    from tabserve.training.reports import write_reports  # matplotlib's, only once it is time

    started = time.perf_counter()
    spark_context = df.sparkSession.sparkContext
    if target not in df.columns:
        raise DataError(f"target column {target!r} not found; the columns are: "
                        f"{', '.join(df.columns)}")
    check_local_workers(spark_context)
    texts = as_text(df, df.columns)
    labelled = with_share(texts.where(texts[target].isNotNull()), seed).cache()
    try:
        counts = class_counts(labelled, target)
        rows = sum(counts.values())
        if rows == 0:
            raise DataError(f"target column {target!r} has no values")
        unlabelled = df.count() - rows
        held = min(TEST_SIZE, HELD_OUT_ROWS / rows)
        validation = held + min(0.15, VALIDATION_ROWS / rows)
        sampled = held + min(1.0 - held, max_rows / rows)
        log(f"Spark: {rows:,} labelled rows ({unlabelled:,} without {target!r}); about "
            f"{held * rows:,.0f} held out to measure, a sample of about "
            f"{(sampled - held) * rows:,.0f} to search on")
        sample = to_pandas(labelled.where((labelled[SHARE] >= held)
                                          & (labelled[SHARE] < sampled)).drop(SHARE))
        result = train_sample(sample, target, seed=seed, folds=folds,
                              positive_class=positive_class, candidates=candidates,
                              time_budget=time_budget, max_trials=max_trials,
                              threshold_rule=threshold_rule, ordinal=ordinal, log=log)
        sampled_bundle = result.bundle
        missing = sorted(set(counts) - set(sampled_bundle.classes), key=str)
        if missing:
            raise DataError(f"classes {', '.join(map(repr, missing))} of {target!r} have too "
                            f"few rows to reach the sample of {len(sample):,}: raise max_rows")
        schema, classes = sampled_bundle.schema, sampled_bundle.classes
        encoder = sampled_bundle.pipeline["encode"]
        sample_steps = Pipeline(sampled_bundle.pipeline.steps[1:])
        family, params = sampled_bundle.metrics["chosen"], sampled_bundle.metrics["chosen_params"]
        fitted_rows = labelled.where(labelled[SHARE] >= held).select(
            *schema.names, target, SHARE)
        refitted = family in ("xgboost", "blend")
        fitted = fitted_rows.where(fitted_rows[SHARE] >= validation).count() if refitted \
            else len(sample)
        stopping = fitted_rows.where(fitted_rows[SHARE] < validation).count() if refitted else 0
        fit_started = time.perf_counter()
        steps, how = full_fit(family, params, sample_steps, lambda settings: xgboost_on_spark(
            fitted_rows, encoder, schema, classes, settings, validation, seed,
            num_workers or spark_context.defaultParallelism))
        fit_seconds = time.perf_counter() - fit_started
        log(f"Final fit on {fitted:,} rows: {how} ({fit_seconds:.1f} s)")
        held_out = to_pandas(labelled.where(labelled[SHARE] < held))
        calibration_rows = held_out[held_out[SHARE] < held / 2].drop(columns=SHARE)
        test_rows = held_out[held_out[SHARE] >= held / 2].drop(columns=SHARE)
        for part, name in ((calibration_rows, "calibration"), (test_rows, "test")):
            absent = set(classes) - set(part[target])
            if absent:
                raise DataError(f"the held-out {name} rows have no {target!r} of "
                                f"{', '.join(map(repr, sorted(absent)))}: too few rows of it")
        shipped = Pipeline([("encode", encoder), *steps.steps])
        y_calibration = calibration_rows[target].map(
            {label: code for code, label in enumerate(classes)}).to_numpy()
        decision = decision_on(probabilities(shipped, calibration_rows[schema.names]),
                               y_calibration, sampled_bundle.positive_class, threshold_rule,
                               seed, log, source="held-out")
        y_test = test_rows[target].map({label: code for code, label in enumerate(classes)}
                                       ).to_numpy()
        test_proba = calibrate(probabilities(shipped, test_rows[schema.names]),
                               decision.calibration)
        full_scores = test_scores(y_test, test_proba, decision.threshold)
        sample_scores = test_scores(y_test, unit_rows(sampled_bundle.predict_proba(
            test_rows[schema.names])), sampled_bundle.threshold)
        log(f"Test rows ({len(test_rows):,}): ROC AUC {full_scores['roc_auc']:.4f} "
            f"(the sample's fit: {sample_scores['roc_auc']:.4f})")
        metrics = {**sampled_bundle.metrics,
                   "rows": {"used": rows, "train": fitted, "test": len(test_rows),
                            "left_out_without_target": unlabelled,
                            "copies": sampled_bundle.metrics["rows"]["copies"],
                            "copies_kept_together": True},
                   "calibration": None if decision.report is None else {
                       "method": "Platt scaling" if decision.calibration else "none",
                       "on": "held-out", **decision.report},
                   "test": full_scores,
                   "final_fit": how,
                   "spark": {"rows_labelled": rows, "rows_fitted": fitted,
                             "rows_validation": stopping,
                             "rows_calibration": len(calibration_rows),
                             "rows_test": len(test_rows), "rows_sample": len(sample),
                             "sample": sampled_bundle.metrics["rows"],
                             "test_full_fit": full_scores, "test_sample_fit": sample_scores,
                             "full_fit_seconds": round(fit_seconds, 1),
                             "spark_version": df.sparkSession.version}}
        bundle = ModelBundle(
            model=fitted_model(steps, len(encoder.get_feature_names_out())),
            schema=schema, classes=classes, positive_class=sampled_bundle.positive_class,
            threshold=decision.threshold, threshold_rule=decision.rule, metrics=metrics,
            example=sampled_bundle.example, calibration=decision.calibration,
            profile=reference_profile(schema, calibration_rows[schema.names],
                                      decision.out_of_fold, classes, decision.threshold))
        bundle.pipeline = shipped
        bundle = bundle.stamp(data_path=source, data_sha256="", seed=seed)
        output = Path(output)
        folder = Path(reports) if reports is not None else reports_folder(output)
        written = write_reports(bundle, TrainingResult(
            bundle=bundle, trials=result.trials, test_frame=test_rows, test_y=y_test,
            test_proba=test_proba, split_model=shipped), folder, output,
            seconds=report_seconds(time_budget))
        bundle.save(output, signing_key=signing_key)
    finally:
        labelled.unpersist()
    log(f"Wrote {output} (model version {bundle.version}{signed_with(signing_key)}) and {len(written)} report files in "
        f"{folder} in {time.perf_counter() - started:.1f} s")
    return bundle
