"""Opening a model file: load time and file size of the current bundle (format 2, data only)
against the same model as a format-1 bundle (a pickle, as written up to issue 30), for the
default model and a large random forest; medians of 7 loads each. Appends to bench/RESULTS.md.
`make bench-load`."""

from __future__ import annotations

import hashlib
import pickle
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from tabserve.model.bundle import MAGIC, ModelBundle  # noqa: E402
from tabserve.model.trust import Trust  # noqa: E402
from tabserve.serving.core import Predictor  # noqa: E402
from tabserve.tables import load_csv  # noqa: E402
from tabserve.training.trainer import train  # noqa: E402

RUNS = 7


def format_1(bundle: ModelBundle, path: Path) -> None:
    """The bundle as the pickle format wrote it: the object, its fitted pipeline inside."""
    old = ModelBundle.__new__(ModelBundle)
    old.__dict__.update({k: v for k, v in vars(bundle).items() if k != "model"},
                        pipeline=bundle.pipeline)
    payload = pickle.dumps(old, protocol=5)
    path.write_bytes(MAGIC + b"1 sha256=" + hashlib.sha256(payload).hexdigest().encode()
                     + b"\n" + payload)


def median_seconds(action) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(name: str, bundle: ModelBundle, folder: Path) -> str:
    new, old = folder / f"{name}.bin", folder / f"{name}-format1.bin"
    bundle.save(new)
    format_1(bundle, old)
    payload = old.read_bytes().partition(b"\n")[2]
    unpickle = median_seconds(lambda: pickle.loads(payload))
    load = median_seconds(lambda: ModelBundle.load(new))
    ready = median_seconds(lambda: Predictor(ModelBundle.load(new)))
    return (f"| {name} | {old.stat().st_size / 1e6:.2f} MB | {new.stat().st_size / 1e6:.2f} MB "
            f"| {unpickle * 1e3:.1f} ms | {load * 1e3:.1f} ms | {unpickle / load:.1f}× "
            f"| {ready * 1e3:.1f} ms |")


def main() -> None:
    frame = load_csv(ROOT / "data" / "telco_churn.csv")
    default = ModelBundle.load(ROOT / "model.bin")
    # the default model, refit here so both formats hold the same fitted objects
    fitted = train(frame, "churn", seed=1, folds=2, candidates=["blend"], max_trials=2).bundle
    forest = train(frame, "churn", seed=1, folds=2, candidates=["random_forest"],
                   max_trials=1).bundle
    rows = ["| model | format 1 (pickle) | format 2 (data) | unpickle | load (checks included) "
            "| ratio | load + scorers built |", "|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as folder:
        rows.append(measure("telco blend (as model.bin)", fitted, Path(folder)))
        trees = len(forest.model.node_counts)
        rows.append(measure(f"telco random forest ({trees} trees, "
                            f"{int(forest.model.node_counts.sum()):,} nodes)", forest,
                            Path(folder)))
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    report = (f"\n## {stamp}: opening a model file (`make bench-load`, medians of {RUNS})\n\n"
              f"model.bin now: {(ROOT / 'model.bin').stat().st_size / 1e6:.2f} MB, version "
              f"{default.version}\n\n" + "\n".join(rows) + "\n")
    print(report)
    with (ROOT / "bench" / "RESULTS.md").open("a") as out:
        out.write(report)


if __name__ == "__main__":
    main()
