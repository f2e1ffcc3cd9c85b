"""How far a file's rows are from the rows a model was trained on, and, when the file holds
the outcomes, how good the model still is on them:

    .venv/bin/python monitor.py --model model.bin --data new.csv --report drift-report/

Prints one line per field (population stability index, status, missing values, unseen
levels), worst first, and the scores' drift; with the target column, ROC AUC, log loss and
accuracy now against the model card's test figures. `--report` writes the same as Markdown
with plots and JSON. Details: docs/monitoring.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tabserve.settings import CHUNK_ROWS, DRIFT_MIN_RECORDS

STATUS_ORDER = ("stable", "moderate", "major")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("model.bin"),
                        help="the bundle (default: model.bin)")
    parser.add_argument("--data", type=Path, required=True, help=".csv or .parquet")
    parser.add_argument("--report", type=Path, default=None,
                        help="a folder to write drift.md, drift.png and drift.json into")
    parser.add_argument("--min-records", type=int, default=None,
                        help=f"rows needed before drift is judged (default: {DRIFT_MIN_RECORDS}, as the "
                             "service)")
    parser.add_argument("--fail-on", choices=STATUS_ORDER[1:], default=None,
                        help="exit 3 when a field or the scores drift this much or more "
                             "(for a scheduled job)")
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS,
                        help=f"rows read at a time (default: {CHUNK_ROWS})")
    args = parser.parse_args(argv)
    if args.chunk_rows < 1 or args.min_records is not None and args.min_records < 1:
        parser.error("--chunk-rows and --min-records must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from tabserve.serving.process import prepare_process
    from tabserve.settings import environment
    prepare_process(environment())
    # imported after the arguments are read: --help answers at once
    from tabserve.batch.files import BatchError
    from tabserve.model.bundle import ModelLoadError
    from tabserve.monitoring.offline import monitor, summary_lines, write_report

    try:
        report = monitor(args.model, args.data, args.min_records or DRIFT_MIN_RECORDS,
                         args.chunk_rows)
    except (BatchError, ModelLoadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print("\n".join(summary_lines(report)))
    if args.report is not None:
        written = write_report(report, args.report)
        print(f"wrote {', '.join(str(args.report / name) for name in written)}")
    if args.fail_on and report["enough"]:
        worst = max(STATUS_ORDER.index(f["status"])
                    for f in [*report["fields"], report["score"]])
        if worst >= STATUS_ORDER.index(args.fail_on):
            return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
