"""Serve a model you trained yourself: write it as a tabserve bundle (data only, no pickle).
Reads the ML Zoomcamp course's (DictVectorizer, model) pickle, scikit-learn Pipelines, XGBoost
models and older tabserve bundles (see docs/import.md). Reading a pickle runs code from the
file: import only files you trust."""

import argparse
import os
import sys
from pathlib import Path

from tabserve.cli import cannot_write, refuse, signed_with
from tabserve.model.trust import TrustSettingError, signing_key
from tabserve.tables import DataError, load_csv
from tabserve.training.importing import ImportRefused, import_model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True,
                        help="the model file: a pickle or joblib file, an XGBoost .json/.ubj, "
                             "or a tabserve bundle of any format")
    parser.add_argument("--output", type=Path, required=True,
                        help="where to write the bundle (signed when MODEL_SIGNING_KEY is set)")
    parser.add_argument("--data", type=Path, default=None,
                        help="a CSV of rows as the model receives them (the training frame "
                             "before any encoding): the schema is read from it and the answers "
                             "checked on it; needed unless the file is a tabserve bundle")
    parser.add_argument("--target", default=None,
                        help="a column of --data holding the outcome: the bundle then carries "
                             "metrics on these rows")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        key = signing_key(os.environ)
        rows = None if args.data is None else load_csv(args.data)
        imported = import_model(args.model, rows, args.target, args.data)
        imported.bundle.save(args.output, signing_key=key)
    except (TrustSettingError, DataError, ImportRefused) as err:
        return refuse(str(err))
    except OSError as err:
        return cannot_write(err, args.output)
    print(f"Wrote {args.output} (model version {imported.bundle.version}"
          f"{signed_with(key)}): no pickle; "
          f"answers checked on {imported.checked_rows} rows, largest difference "
          f"{imported.largest_difference:.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
