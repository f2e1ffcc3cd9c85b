"""`monitor.py`'s procedure: a file's rows counted into a model's reference profile by the
same code the service counts its traffic with (`serving.drift`), the drift report, and, when
the file holds the target, the model's quality on it against the model card's test figures.

Rows are read and validated as `score.py` reads them (`batch`): a row the API would refuse
is left out and counted as rejected.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from tabserve.batch.files import BatchError, CsvError, InputFile
from tabserve.batch.columns import missing_fields
from tabserve.batch.scoring import ChunkScorer
from tabserve.model.bundle import ModelBundle, ModelLoadError, load_trusted
from tabserve.model.decision import label_codes
from tabserve.settings import CHUNK_ROWS
from tabserve.tables import file_sha256
from tabserve.serving.drift import MIN_RECORDS, CountStore, CountLayout, DriftCounter, drift_report

QUALITY = ("roc_auc", "log_loss", "accuracy")


@dataclass
class Outcomes:
    """The known outcomes of the scored rows that carry one, and the probabilities given."""

    codes: list[np.ndarray] = field(default_factory=list)
    proba: list[np.ndarray] = field(default_factory=list)
    unknown: int = 0  # rows whose target is missing or a class the model does not know


def load_monitored(model_path: Path) -> ModelBundle:
    bundle = load_trusted(model_path)
    if bundle.profile is None:
        raise ModelLoadError(f"model file {model_path} has no reference profile (it was trained "
                             "before bundles carried one): retrain it with "
                             "`.venv/bin/python train.py`")
    return bundle


def count_file(bundle: ModelBundle, path: Path, chunk_rows: int = CHUNK_ROWS
               ) -> tuple[CountStore, int, Outcomes | None]:
    """The file's counts (a `CountStore`'s), its rejected rows, and the outcomes when it has
    the target column."""
    source = InputFile(path, chunk_rows)
    problem = missing_fields(bundle.schema, source.columns, path)
    if problem:
        raise BatchError(problem)
    scorer = ChunkScorer(bundle)
    counter = DriftCounter(bundle, CountStore(CountLayout(bundle.profile).size))
    target = bundle.schema.target
    outcomes = Outcomes() if target in source.columns else None
    class_code = {label: code for code, label in enumerate(bundle.classes)}
    rejected = 0
    for frame in _frames(source):
        validated = scorer.validate(frame)
        bad = {p.index for p in validated.problems}
        rejected += len(bad)
        scored = np.setdiff1d(np.arange(len(frame)), sorted(bad))
        columns = {name: column[scored] for name, column in validated.columns.items()}
        proba = scorer.predictor.probabilities(columns)
        counter.count_columns(columns, proba, [u for u in validated.unseen if u[0] not in bad])
        if outcomes is not None:
            labels = frame[target].iloc[scored].astype("object")
            codes = np.array([class_code.get(str(v).strip(), -1) if v is not None and v == v
                              else -1 for v in labels], dtype=np.intp)
            known = codes >= 0
            outcomes.unknown += int((~known).sum())
            outcomes.codes.append(codes[known])
            outcomes.proba.append(proba[known])
    return counter.store, rejected, outcomes


def _frames(source: InputFile) -> Iterator[pd.DataFrame]:
    """The file's rows, a chunk at a time, read in this process."""
    rows = 0
    try:
        for chunk in source.chunks():
            frame = chunk.read().to_pandas()
            rows += len(frame)
            yield frame
    except CsvError as err:
        raise BatchError(f"{source.path}: not a valid CSV after line {rows + 1}: {err}") from None


def quality(bundle: ModelBundle, outcomes: Outcomes) -> dict[str, Any] | None:
    """ROC AUC, log loss and accuracy on the rows with a known outcome, beside the model
    card's test figures; None without rows (or with one class only, where ROC AUC has no
    meaning)."""
    if not outcomes.codes:
        return None
    y = np.concatenate(outcomes.codes)
    proba = np.concatenate(outcomes.proba)
    if len(np.unique(y)) < 2:
        return None
    k = len(bundle.classes)
    now = {
        "roc_auc": float(roc_auc_score(y, proba[:, 1]) if k == 2 else
                         roc_auc_score(y, proba, multi_class="ovr", labels=list(range(k)))),
        "log_loss": float(log_loss(y, proba, labels=list(range(k)))),
        "accuracy": float(accuracy_score(y, label_codes(proba, bundle.threshold))),
    }
    test = bundle.metrics.get("test", {})
    return {"rows": len(y), "rows_without_known_outcome": outcomes.unknown,
            "metrics": {name: {"now": now[name], "test": test.get(name),
                               "change": now[name] - test[name] if name in test else None}
                        for name in QUALITY}}


def monitor(model_path: Path, data: Path, minimum: int = MIN_RECORDS,
            chunk_rows: int = CHUNK_ROWS) -> dict[str, Any]:
    """The whole offline report as JSON; `BatchError` or `ModelLoadError` say why not."""
    bundle = load_monitored(model_path)
    store, rejected, outcomes = count_file(bundle, data, chunk_rows)
    report = {"model_version": bundle.version, "data": str(data), "rejected_rows": rejected,
              **drift_report(bundle.profile, store.totals(), minimum, store.unseen_totals())}
    report["quality"] = None if outcomes is None else quality(bundle, outcomes)
    report["training_file"] = is_training_file(bundle, data)
    return report


TRAINING_FILE_NOTE = (
    "This is the file the model was trained on: the score may drift here and the fields "
    "should not (most rows were fitted, and score more confidently than the held-out rows "
    "the scores' reference comes from; a forest's most).")


def is_training_file(bundle: ModelBundle, data: Path) -> bool:
    """Whether `data` is, byte for byte, the file the model was trained on (its SHA-256 is in
    the bundle): a user's first sanity check, whose score drift is expected."""
    trained_on = (bundle.metadata.get("data") or {}).get("sha256")  # None: imported without a file
    return trained_on is not None and file_sha256(data) == trained_on


def _number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.4f}"


def _levels(unseen: list[dict[str, Any]]) -> str:
    """Unseen levels as a short list: `'Two decades' 24.1%, 'None' 0.2%`."""
    return ", ".join(f"{u['level']!r} {u['share']:.1%}" for u in unseen)


def _markdown_levels(unseen: list[dict[str, Any]]) -> str:
    """The same in a Markdown table's cell: code spans, and no `|` to end the cell."""
    return ", ".join(f"`{u['level'].replace('`', chr(39)).replace('|', '¦')}` {u['share']:.1%}"
                     for u in unseen)


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The report for a terminal: the verdict, then one line per field, worst first."""
    lines = [f"model {report['model_version']}, {report['data']}: {report['records']:,} rows "
             f"counted, {report['rejected_rows']:,} rejected"]
    if not report["enough"]:
        lines.append(report["detail"])
    if report.get("training_file"):
        lines.append(TRAINING_FILE_NOTE)
    score = report["score"]
    lines.append(f"{'field':<28} {'PSI':>8}  {'status':<16} {'missing':>8} {'(train)':>8} "
                 f"{'unseen':>7}")
    for f in [*report["fields"], {"field": "(score)", **score}]:
        lines.append(f"{f['field'][:28]:<28} {_number(f['psi']):>8}  {f['status']:<16} "
                     + (f"{f['missing_rate']:>8.1%} {f['reference_missing_rate']:>8.1%} "
                        f"{f['unseen_share']:>7.1%}" if "unseen_share" in f else ""))
        if f.get("unseen_levels"):
            lines.append(f"  unseen levels, most frequent first: {_levels(f['unseen_levels'])}")
    if report.get("quality"):
        q = report["quality"]
        lines.append(f"quality on {q['rows']:,} rows with a known outcome "
                     "(now / test split at training / change):")
        for name, m in q["metrics"].items():
            lines.append(f"  {name:<10} {_number(m['now'])} / {_number(m['test'])} / "
                         f"{_signed(m['change'])}")
    return lines


def write_report(report: dict[str, Any], folder: Path) -> list[str]:
    """`drift.md` (with `drift.png` when matplotlib is there) and `drift.json` in `folder`;
    the names written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = ["drift.md", "drift.json"]
    plot = ""
    try:
        from tabserve.monitoring.plots import PLOTTED_FIELDS, plot_distributions
        fields = report["fields"]  # sorted by PSI once there are enough records
        which = "with the largest PSI" if report["enough"] else "first in the schema"
        cut = (f" (the {PLOTTED_FIELDS} of {len(fields)} fields {which})"
               if len(fields) > PLOTTED_FIELDS else "")
        plot_distributions([*fields[:PLOTTED_FIELDS], {"field": "score", **report["score"]}],
                           folder / "drift.png",
                           f"Now ({report['data']}) against the training rows{cut}")
        plot, written = "\n![drift](drift.png)\n", [*written, "drift.png"]
    except ImportError:
        plot = "\n(matplotlib is not installed: no plot)\n"
    rows = [f"| `{f['field']}` | {_number(f['psi'])} | {f['status']} | {f['missing_rate']:.1%} | "
            f"{f['reference_missing_rate']:.1%} | {f['unseen_share']:.1%} "
            f"{_markdown_levels(f['unseen_levels'])} |" for f in report["fields"]]
    score = report["score"]
    quality_md = ""
    if report.get("quality"):
        q = report["quality"]
        quality_md = (f"\n## Quality\nOn {q['rows']:,} rows with a known outcome "
                      f"({q['rows_without_known_outcome']:,} without one):\n\n"
                      "| metric | now | test split at training | change |\n|---|---|---|---|\n"
                      + "\n".join(f"| {name} | {_number(m['now'])} | {_number(m['test'])} | "
                                  f"{_signed(m['change'])} |"
                                  for name, m in q["metrics"].items()) + "\n")
    verdict = report.get("detail") or (
        f"Scores: PSI {_number(score['psi'])} ({score['status']}). Fields sorted by PSI, "
        "largest first: stable below 0.1, moderate up to 0.25, major above.")
    if report.get("training_file"):
        verdict += f"\n\n{TRAINING_FILE_NOTE}"
    text = f"""# Drift report: model {report['model_version']}

Data `{report['data']}`: {report['records']:,} rows counted, {report['rejected_rows']:,} rejected
(rows the API would refuse). {verdict}

| field | PSI | status | missing now | missing in training | unseen levels (most frequent first) |
|---|---|---|---|---|---|
{chr(10).join(rows)}
{quality_md}{plot}"""
    (folder / "drift.md").write_text(text)
    (folder / "drift.json").write_text(json.dumps(report, indent=2) + "\n")
    return written
