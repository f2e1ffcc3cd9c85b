"""Train a classifier from a CSV and write the model bundle: `.venv/bin/python train.py --help`."""

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

STARTED = time.perf_counter()  # run as a script, the budget counts the ~1.5 s of imports too

# (the standard library only, so far)
from tabserve.settings import ConfigError, environment, signing_key  # noqa: E402

# before numpy/xgboost load OpenMP: idle threads sleep instead of spinning on a shared machine
environment().setdefault("OMP_WAIT_POLICY", "PASSIVE")

from tabserve.cli import cannot_write, refuse, replaced, reports_folder, signed_with  # noqa: E402
from tabserve.tables import DataError, file_sha256, load_csv  # noqa: E402
from tabserve.training.thresholds import RULES, parse_rule  # noqa: E402
from tabserve.training.reports import write_reports  # noqa: E402
from tabserve.training.trainer import CANDIDATES, train  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="data/telco_churn.csv",
                        help="training CSV with a header row; with --spark, any path Spark "
                             "reads (a CSV, a folder of them, .parquet; s3://, hdfs://) "
                             "(default: %(default)s)")
    parser.add_argument("--target", default="churn",
                        help="the column to predict (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=Path("model.bin"),
                        help="where to write the model bundle (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed for splits and models; same seed, same model (default: 1)")
    parser.add_argument("--folds", type=int, default=5,
                        help="cross-validation folds (default: %(default)s)")
    parser.add_argument("--candidates", default=",".join(CANDIDATES),
                        help="comma-separated model families to search (default: %(default)s)")
    parser.add_argument("--time-budget", type=float, default=60.0,
                        help="seconds for the whole run: reading the CSV, the search, the "
                             "refits and the report (default: %(default)s)")
    parser.add_argument("--trials", type=int, default=None,
                        help="run exactly this many search trials instead of a time budget: "
                             "reproduces a run on any machine (its report says how many)")
    parser.add_argument("--threshold-rule", default="fixed:0.5",
                        help=f"binary targets: how to choose the threshold, {RULES} "
                             "(default: %(default)s)")
    parser.add_argument("--reports", type=Path, default=None,
                        help="where to write metrics.json, model_card.md and plots (default: "
                             "beside the output, named after it: my.reports/ for my.bin, "
                             "reports/ for model.bin)")
    parser.add_argument("--max-rows", type=int, default=200_000,
                        help="train on a uniform random sample of at most this many rows, read "
                             "in chunks so memory stays bounded (default: %(default)s)")
    parser.add_argument("--ordinal", action="append", default=[], metavar="FIELD=A<B<C",
                        help="a text field whose levels are ordered, lowest first; it gets a "
                             "rank column besides its levels (repeatable; orders such as "
                             "low<medium<high or '1-2 years'<'3-5 years' are found unasked)")
    parser.add_argument("--spark", default=None, metavar="MASTER",
                        help="train with Spark at this master (local[2], spark://host:7077, "
                             "yarn): the search on a sample of --max-rows rows, the final "
                             "XGBoost fitted on every row (docs/training.md)")
    parser.add_argument("--quiet", action="store_true", help="print errors only")
    parser.add_argument("--positive-class", default=None,
                        help="binary targets: the class whose probability is reported "
                             "(default: the minority class)")
    args = parser.parse_args(argv)
    if args.folds < 2:
        parser.error("--folds must be at least 2")
    args.candidates = [name.strip() for name in args.candidates.split(",") if name.strip()]
    unknown = sorted(set(args.candidates) - set(CANDIDATES))
    if unknown or not args.candidates:
        parser.error(f"--candidates: choose from {', '.join(CANDIDATES)}")
    try:
        args.threshold_rule = parse_rule(args.threshold_rule)
    except ValueError as err:
        parser.error(str(err))
    if args.max_rows < 10:
        parser.error("--max-rows must be at least 10")
    if args.trials is not None and args.trials < 1:
        parser.error("--trials must be at least 1")
    if args.time_budget <= 0:
        parser.error("--time-budget must be positive")
    ordinal = {}
    for given in args.ordinal:
        name, _, levels = given.partition("=")
        order = [level.strip() for level in levels.split("<")]
        if not name.strip() or len(order) < 2 or "" in order:
            parser.error(f"--ordinal {given!r}: write FIELD=LOW<MIDDLE<HIGH")
        ordinal[name.strip()] = order
    args.ordinal = ordinal
    if args.spark is None:
        args.data = Path(args.data)
    if args.reports is None:
        args.reports = reports_folder(args.output)
    return args


def progress_printer(quiet: bool):
    """Search progress: one line rewritten in place on a terminal, a line each otherwise."""
    if quiet:
        return lambda line: None
    if sys.stdout.isatty():
        return lambda line: print(f"\r{line}", end="", flush=True)
    return print


def main(argv: list[str] | None = None, started: float | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter() if started is None else started
    say = (lambda message: None) if args.quiet else print
    progress = progress_printer(args.quiet)
    try:
        key = signing_key(environment())  # before the work: a bad key setting fails at once
    except ConfigError as err:
        return refuse(str(err))
    if args.spark is not None:
        return spark_main(args, key, say)
    try:
        say(f"Reading {args.data}")
        frame = load_csv(args.data, max_rows=args.max_rows, seed=args.seed)
        if frame.attrs["rows_in_file"] > len(frame):
            say(f"  sampled {len(frame):,} of {frame.attrs['rows_in_file']:,} rows (--max-rows)")
        deadline = started + args.time_budget
        result = train(frame, args.target, seed=args.seed, folds=args.folds,
                       positive_class=args.positive_class, candidates=args.candidates,
                       time_budget=args.time_budget, started=started, max_trials=args.trials,
                       threshold_rule=args.threshold_rule, ordinal=args.ordinal, log=say,
                       progress=progress)
        if sys.stdout.isatty() and not args.quiet:
            print()  # end the progress line
        bundle = result.bundle.stamp(data_path=args.data, data_sha256=file_sha256(args.data),
                                     seed=args.seed)
        replacing = replaced(args.output, args.reports)
        written = write_reports(bundle, result, args.reports, args.output,
                                seconds=deadline - time.perf_counter())
        bundle.save(args.output, signing_key=key)  # with the card's figures the report made
    except DataError as err:
        return refuse(str(err))
    except OSError as err:
        return cannot_write(err, args.output)
    say(f"Wrote {args.output} (model version {bundle.version}{signed_with(key)}) and "
        f"{len(written)} report files in {args.reports} in {time.perf_counter() - started:.1f} s")
    if replacing:
        say(replacing)
    return 0


def spark_main(args: argparse.Namespace, key: bytes | None, say) -> int:
    """`--spark MASTER`: `tabserve.spark.train` on what Spark reads from `--data`."""
    try:
        from py4j.protocol import Py4JJavaError
        from pyspark.errors import PySparkException
        from pyspark.sql import SparkSession
        from tabserve.spark import SparkSetupError, train
        from tabserve.training.on_spark import SparkMasterError, check_master
    except ImportError as err:
        return refuse(f"--spark needs pyspark on this machine: pip install pyspark ({err})")
    if args.spark.startswith("local"):  # workers are started from this Python, with the package
        environment().setdefault("PYSPARK_PYTHON", sys.executable)
        here = str(Path(__file__).resolve().parent)
        environment()["PYTHONPATH"] = os.pathsep.join(
            [here, *filter(None, [environment().get("PYTHONPATH")])])
    # PySpark 4.3 warns at each pandas conversion that it does not fully support pandas 3
    # (docs/batch.md says what that means here): once in the docs, not on every run
    warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas")
    replacing = replaced(args.output, args.reports)
    try:
        check_master(args.spark)
        spark = (SparkSession.builder.master(args.spark).appName("tabserve-train")
                 .config("spark.ui.showConsoleProgress", "false").getOrCreate())
        spark.sparkContext.setLogLevel("ERROR")
        read = spark.read.parquet if args.data.endswith(".parquet") else \
            lambda path: spark.read.csv(path, header=True)
        train(read(args.data), args.target, args.output, reports=args.reports,
              seed=args.seed, folds=args.folds, candidates=args.candidates,
              time_budget=args.time_budget, max_trials=args.trials, max_rows=args.max_rows,
              threshold_rule=args.threshold_rule, positive_class=args.positive_class,
              ordinal=args.ordinal, source=args.data, signing_key=key, log=say)
    except (DataError, SparkMasterError, SparkSetupError) as err:
        return refuse(str(err))
    except PySparkException as err:  # a path Spark cannot read, a column it cannot resolve
        return refuse(f"Spark: {str(err).strip().splitlines()[0]}")
    except Py4JJavaError as err:  # a job that failed on the cluster: its Java exception's line
        lines = str(err).splitlines()
        return refuse("Spark: " + next((line[2:] for line in lines if line.startswith(": ")),
                                       lines[0]))
    except OSError as err:
        return cannot_write(err, args.output)
    if replacing:
        say(replacing)
    return 0


if __name__ == "__main__":
    sys.exit(main(started=STARTED))
