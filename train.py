"""Train a classifier from a CSV and write the model bundle: `python train.py --help`."""

import argparse
import os
import sys
import time
from pathlib import Path

# before numpy/xgboost load OpenMP: idle threads sleep instead of spinning on a shared machine
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from tabserve.bundle import ModelBundle  # noqa: E402
from tabserve.data import DataError, file_sha256, load_csv  # noqa: E402
from tabserve.training import CANDIDATES, train  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/telco_churn.csv"),
                        help="training CSV with a header row (default: %(default)s)")
    parser.add_argument("--target", default="churn",
                        help="the column to predict (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=Path("model.bin"),
                        help="where to write the model bundle (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed for splits and models; same seed, same model (default: 1)")
    parser.add_argument("--folds", type=int, default=5,
                        help="cross-validation folds (default: %(default)s)")
    parser.add_argument("--candidates", default=",".join(CANDIDATES),
                        help="comma-separated models to compare (default: %(default)s)")
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
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        print(f"Reading {args.data}")
        frame = load_csv(args.data)
        result = train(frame, args.target, seed=args.seed, folds=args.folds,
                       positive_class=args.positive_class, candidates=args.candidates,
                       log=print)
        bundle = ModelBundle.from_training(result, data_path=args.data,
                                           data_sha256=file_sha256(args.data), seed=args.seed)
        bundle.save(args.output)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"error: cannot write {args.output}: {err.strerror}", file=sys.stderr)
        return 1
    print(f"Wrote {args.output} (model version {bundle.version}) "
          f"in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
