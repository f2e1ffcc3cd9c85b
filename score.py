"""Score every row of a file with a bundle, as the service would answer each row:

    .venv/bin/python score.py --model model.bin --input customers.csv --output scores.csv

CSV or Parquet, in and out, by extension. The output keeps the input's columns (`--keep id,email`
for some, `--keep none` for none) and adds the answer's: label, one probability per class and,
for a binary model, `<target>_probability` and `<target>`, then the model version and warnings.
Rows the API would refuse go to a rejects file (`--rejects`, default `<output>.rejects.csv`)
with their line number and every problem. Details: docs/batch.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tabserve.settings import CHUNK_ROWS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("model.bin"),
                        help="the bundle (default: model.bin)")
    parser.add_argument("--input", type=Path, required=True, help=".csv or .parquet")
    parser.add_argument("--output", type=Path, required=True, help=".csv or .parquet")
    parser.add_argument("--keep", default="all",
                        help="input columns to copy to the output: all (default), none, or "
                             "names separated by commas")
    parser.add_argument("--rejects", type=Path, default=None,
                        help="where rows that fail validation go (a .csv; default: beside the "
                             "output, <output name>.rejects.csv)")
    parser.add_argument("--max-reject-rate", type=float, default=None,
                        help="fail (exit 1, no output) when more than this share of rows is "
                             "rejected, e.g. 0.01")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: the CPUs available)")
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS,
                        help=f"rows per chunk (default: {CHUNK_ROWS}); memory grows with it")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    if args.max_reject_rate is not None and not 0 <= args.max_reject_rate <= 1:
        parser.error("--max-reject-rate is a share between 0 and 1")
    if args.workers is not None and args.workers < 1 or args.chunk_rows < 1:
        parser.error("--workers and --chunk-rows must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # before numpy loads, here and in the workers that inherit the environment
    from tabserve.serving.process import prepare_process
    from tabserve.settings import environment
    prepare_process(environment())
    # imported after the arguments are read: --help answers at once
    from tabserve.batch.files import BatchError
    from tabserve.batch.job import score_file  # the model's code loads in the workers only

    keep = None if args.keep == "all" else [] if args.keep == "none" else \
        [name.strip() for name in args.keep.split(",") if name.strip()]
    try:
        summary = score_file(args.model, args.input, args.output, args.rejects, keep,
                             args.max_reject_rate, args.workers, args.chunk_rows,
                             None if args.quiet else sys.stderr)
    except BatchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; no output written", file=sys.stderr)
        return 130
    rejects = args.rejects or args.output.with_name(f"{args.output.stem}.rejects.csv")
    print(f"scored {summary.scored:,} of {summary.rows:,} rows in {summary.seconds:.1f} s "
          f"({summary.rows / max(summary.seconds, 1e-9):,.0f} rows/s) into {args.output}; "
          f"rejected {summary.rejected:,} ({summary.reject_rate:.2%}) into {rejects}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
