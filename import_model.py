"""Serve a model you trained yourself: write it as a tabserve bundle (data, no pickle, for the
standard pieces). Reads the ML Zoomcamp course's (DictVectorizer, model) pickle, scikit-learn
Pipelines, XGBoost, LightGBM and CatBoost models, ONNX graphs and older tabserve bundles (see
docs/import.md); any other fitted classifier is kept pickled and served through its own
predict_proba. Reading a pickle runs code
from the file: import only files you trust."""

import argparse
import sys
from pathlib import Path

from tabserve.cli import cannot_write, refuse, replaced, reports_folder, signed_with
from tabserve.model.kinds import kinds
from tabserve.settings import ConfigError, environment, signing_key
from tabserve.tables import DataError, load_csv
from tabserve.training.importing import ImportRefused, import_model
from tabserve.training.reports import write_import_reports


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True,
                        help="the model file: a pickle or joblib file, a library's own ("
                             + ", ".join(f"{kind.name} {'/'.join(kind.suffixes)}"
                                         for kind in kinds() if kind.suffixes)
                             + "), an ONNX graph (.onnx), or a tabserve bundle of any format")
    parser.add_argument("--output", type=Path, required=True,
                        help="where to write the bundle (signed when MODEL_SIGNING_KEY is set)")
    parser.add_argument("--data", type=Path, default=None,
                        help="a CSV of rows as the model receives them (the training frame "
                             "before any encoding): the schema is read from it and the answers "
                             "checked on it; needed unless the file is a tabserve bundle")
    parser.add_argument("--target", default=None,
                        help="a column of --data holding the outcome: the bundle then carries "
                             "metrics on these rows, and a model card is written beside it")
    parser.add_argument("--reports", type=Path, default=None,
                        help="where --target's model card and plots go (default: beside the "
                             "output, named after it: my.reports/ for my.bin)")
    args = parser.parse_args(argv)
    if args.reports is None:
        args.reports = reports_folder(args.output)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        key = signing_key(environment())
        rows = None if args.data is None else load_csv(args.data)
        imported = import_model(args.model, rows, args.target, args.data)
        replacing = replaced(args.output, *([args.reports] if args.target else []))
        reports = [] if args.target is None else \
            write_import_reports(imported.bundle, imported.sample, args.reports)
        imported.bundle.save(args.output, signing_key=key)  # with the card's figures
    except (ConfigError, DataError, ImportRefused) as err:
        return refuse(str(err))
    except OSError as err:
        return cannot_write(err, args.output)
    print(f"Wrote {args.output} (model version {imported.bundle.version}"
          f"{signed_with(key)}): {holds(imported.bundle)}; "
          f"answers checked on {imported.checked_rows} rows, largest difference "
          f"{imported.largest_difference:.2g}")
    for line in how_the_data_was_read(imported, args.data):
        print(line)
    read_as = imported.bundle.metrics.get("imported", {}).get("target")
    if read_as:
        print(f"The target {args.target!r}: {read_as}")
    if reports:
        print(f"Report in {args.reports}/: {', '.join(reports)}")
    if replacing:
        print(replacing)
    return 0


def how_the_data_was_read(imported, data: Path) -> list[str]:
    """A line for each way the model file or --data was read other than as it stands."""
    lines = []
    if imported.pickled_by:
        import sklearn  # imported by now: the pickle needed it

        lines.append(f"The pickle was made by {imported.pickled_by} (this is scikit-learn "
                     f"{sklearn.__version__}): its answers are the ones checked above, on "
                     f"every row of {data}")
    if imported.renamed:
        lines.append(f"Read columns of {data} by the model's spelling: "
                     f"{', '.join(imported.renamed)}")
    if imported.relevelled:
        lines.append(f"Read values of {data} by the model's spelling of its levels (as the "
                     f"server reads them, with a warning): {'; '.join(imported.relevelled)}")
    if imported.unread:
        lines.append(f"Left out the columns of {data} the model does not read: "
                     f"{', '.join(imported.unread)}")
    return lines


def holds(bundle) -> str:
    if not bundle.holds_pickle:
        return "no pickle"
    return (f"{bundle.metrics['imported']['kind']}, so the bundle holds it pickled: serve it "
            "with ALLOW_PICKLE=1, or sign it (MODEL_SIGNING_KEY) and serve it with that key")


if __name__ == "__main__":
    sys.exit(main())
