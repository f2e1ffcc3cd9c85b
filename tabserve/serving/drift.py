"""Drift: the records a model scores, counted into the bins of its reference profile
(`model.profile`), and the report that compares those counts with the profile.

All counts live in one int64 array laid out by `CountLayout`: each field's bins, then each
field's count of unseen levels, then the score's bins, then the number of records. A
`CountStore` keeps it: in memory for one process, or as one file per process in a directory
that every gunicorn worker sums (each worker writes only its own file, so no lock is needed).
A reset keeps the counts (Prometheus' counters only ever grow) and records them as the
baseline that the report subtracts.

Levels that training never saw are named too: each process keeps, per field, the
`UNSEEN_KEPT` most frequent of them with their counts (in a small JSON file beside its
counts), so the report can say what is new, not only how often.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tabserve.model.bundle import ModelBundle
from tabserve.model.decision import label_code, label_codes
from tabserve.model.profile import FieldProfile, Profile, drift_status, psi
from tabserve.model.schema import Kind
from tabserve.settings import DRIFT_MIN_RECORDS

log = logging.getLogger(__name__)

MIN_RECORDS = DRIFT_MIN_RECORDS  # below this many records the report judges nothing
UNSEEN_KEPT = 20      # unseen levels a process keeps per field, the most frequent
UNSEEN_REPORTED = 10  # of which the report names this many, most frequent first

Tally = dict[str, dict[str, int]]  # per field, unseen levels and how many records held each


@dataclass(frozen=True)
class CountLayout:
    """Where each count sits in the array of a profile's counts."""

    profile: Profile

    @property
    def field_starts(self) -> list[int]:
        starts, at = [], 0
        for f in self.profile.fields:
            starts.append(at)
            at += len(f.bins)
        return starts

    @property
    def unseen_start(self) -> int:
        return sum(len(f.bins) for f in self.profile.fields)

    @property
    def score_start(self) -> int:
        return self.unseen_start + len(self.profile.fields)

    @property
    def records_at(self) -> int:
        return self.score_start + len(self.profile.score.bins)

    @property
    def size(self) -> int:
        return self.records_at + 1


class CountStore:
    """A process's counts, in memory; `FileCountStore` shares them between processes."""

    def __init__(self, size: int):
        self.size = size
        self._counts = np.zeros(size, dtype=np.int64)
        self._cells = memoryview(self._counts)
        self._baseline = np.zeros(size, dtype=np.int64)
        self._unseen: Tally = {}
        self._unseen_baseline: Tally = {}

    def counts(self) -> np.ndarray:
        """This process's array, to add to."""
        return self._counts

    def cells(self) -> memoryview:
        """The same counts as a memoryview: a few increments from Python cost half as much
        there as one numpy call."""
        return self._cells

    def totals(self) -> np.ndarray:
        """Every process's counts, summed."""
        return self._counts.copy()

    def baseline(self) -> np.ndarray:
        return self._baseline

    def add_unseen(self, counted: Counter) -> None:
        """Count unseen levels, given as (field, level) → records."""
        tally = self._own_unseen()
        for (name, level), records in counted.items():
            keep_frequent(tally.setdefault(name, {}), level, records)
        self._save_unseen(tally)

    def unseen_since_reset(self) -> Tally:
        """Every process's unseen levels, less those counted before the last reset."""
        totals, baseline = self.unseen_totals(), self.unseen_baseline()
        return {name: {level: records - baseline.get(name, {}).get(level, 0)
                       for level, records in levels.items()
                       if records > baseline.get(name, {}).get(level, 0)}
                for name, levels in totals.items()}

    def unseen_totals(self) -> Tally:
        return self._unseen

    def unseen_baseline(self) -> Tally:
        return self._unseen_baseline

    def reset(self) -> int:
        """Start the report afresh; the number of records it had counted."""
        totals = self.totals()
        before = int((totals - self.baseline())[-1])
        self._write_baseline(totals, self.unseen_totals())
        return before

    def _own_unseen(self) -> Tally:
        return self._unseen

    def _save_unseen(self, tally: Tally) -> None:
        pass  # in memory already

    def _write_baseline(self, totals: np.ndarray, unseen: Tally) -> None:
        self._baseline = totals
        self._unseen_baseline = {name: dict(levels) for name, levels in unseen.items()}


def keep_frequent(tally: dict[str, int], level: str, records: int) -> None:
    """Add `records` to `level`'s count in `tally`, which holds at most `UNSEEN_KEPT` levels:
    a new level takes the place of the rarest and its count on top (the Space-Saving
    algorithm: any level that holds more than 1/UNSEEN_KEPT of the records is kept, and a
    count is never less than the true one)."""
    if level in tally or len(tally) < UNSEEN_KEPT:
        tally[level] = tally.get(level, 0) + records
        return
    rarest = min(tally, key=tally.__getitem__)
    tally[level] = tally.pop(rarest) + records


def _merged(tallies: list[Tally]) -> Tally:
    merged: Tally = {}
    for tally in tallies:
        for name, levels in tally.items():
            into = merged.setdefault(name, {})
            for level, records in levels.items():
                into[level] = into.get(level, 0) + records
    return merged


class FileCountStore(CountStore):
    """Counts in `<directory>/drift_<model version>_<pid>.counts`, one file per process,
    mapped into memory; the baseline in `drift_<model version>.baseline`. A process that
    forks gets a file of its own on its first count."""

    def __init__(self, size: int, directory: Path, model_version: str):
        self.size = size
        self.directory = Path(directory)
        self.prefix = f"drift_{model_version}"
        self._pid: int | None = None

    def counts(self) -> np.ndarray:
        if self._pid != os.getpid():
            self._open_own_file()
        return self._counts

    def cells(self) -> memoryview:
        if self._pid != os.getpid():
            self._open_own_file()
        return self._cells

    def _open_own_file(self) -> None:
        path = self.directory / f"{self.prefix}_{os.getpid()}.counts"
        try:
            with path.open("w+b") as f:
                f.truncate(self.size * 8)
                self._map = mmap.mmap(f.fileno(), self.size * 8)
        except OSError as err:  # counted in this process alone: answers go on all the same
            log.error("drift counts of worker %d stay in its memory: the metrics directory "
                      "cannot be written (%s)", os.getpid(), err.strerror or err)
            self._map = bytearray(self.size * 8)
        self._counts = np.frombuffer(self._map, dtype=np.int64)
        self._cells = memoryview(self._counts)
        self._unseen = {}  # a forked process's own, like its counts
        self._pid = os.getpid()

    def totals(self) -> np.ndarray:
        totals = np.zeros(self.size, dtype=np.int64)
        for path in self.directory.glob(f"{self.prefix}_*.counts"):
            counts = np.fromfile(path, dtype=np.int64)
            if len(counts) == self.size:  # one being created has no length yet
                totals += counts
        return totals

    def baseline(self) -> np.ndarray:
        path = self.directory / f"{self.prefix}.baseline"
        baseline = np.fromfile(path, dtype=np.int64) if path.exists() else np.zeros(0)
        return baseline if len(baseline) == self.size else np.zeros(self.size, dtype=np.int64)

    def unseen_totals(self) -> Tally:
        return _merged([_read_tally(path)
                        for path in self.directory.glob(f"{self.prefix}_*.unseen")])

    def unseen_baseline(self) -> Tally:
        return _read_tally(self.directory / f"{self.prefix}.unseen-baseline")

    def _own_unseen(self) -> Tally:
        if self._pid != os.getpid():
            self._open_own_file()
        return self._unseen

    def _save_unseen(self, tally: Tally) -> None:
        try:
            _write_whole(self.directory / f"{self.prefix}_{os.getpid()}.unseen",
                         json.dumps(tally).encode())
        except OSError:  # kept in memory; the counts' file said so once
            pass

    def _write_baseline(self, totals: np.ndarray, unseen: Tally) -> None:
        _write_whole(self.directory / f"{self.prefix}.baseline", totals.tobytes())
        _write_whole(self.directory / f"{self.prefix}.unseen-baseline", json.dumps(unseen).encode())


def _write_whole(path: Path, data: bytes) -> None:
    """Whole or not at all, for a reader in another worker."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_bytes(data)
    partial.replace(path)


def _read_tally(path: Path) -> Tally:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}


def collect_dead_counts(directory: Path, pid: int) -> None:
    """Fold an exited worker's drift counts into the exited workers' file of each model
    (`drift_<version>_exited.counts`, `.unseen`), which the totals read as any worker's."""
    for path in directory.glob(f"drift_*_{pid}.counts"):
        exited = path.with_name(path.name.replace(f"_{pid}.", "_exited."))
        counts = np.fromfile(path, dtype=np.int64)
        before = np.fromfile(exited, dtype=np.int64) if exited.exists() else np.zeros(0)
        _write_whole(exited, (counts + before if len(before) == len(counts) else counts)
                     .tobytes())
        path.unlink()
    for path in directory.glob(f"drift_*_{pid}.unseen"):
        exited = path.with_name(path.name.replace(f"_{pid}.", "_exited."))
        tally = _read_tally(exited)
        for name, levels in _read_tally(path).items():
            for level, records in levels.items():  # bounded as each worker's own tally
                keep_frequent(tally.setdefault(name, {}), level, records)
        _write_whole(exited, json.dumps(tally).encode())
        path.unlink()


def count_store(bundle: ModelBundle, directory: str | None) -> CountStore:
    size = CountLayout(bundle.profile).size
    return CountStore(size) if not directory else FileCountStore(size, Path(directory),
                                                                 bundle.version)


class DriftCounter:
    """Counts records into the bins of a bundle's profile, as one record's plain values or as
    typed columns (`Encoder.encode`'s input), with the probabilities the model gave them.

    Columns are counted a few numpy calls at a time, whatever the number of fields: the
    level codes of every categorical in one `bincount` over (field, code) slots that a table
    maps to bins, every boolean in one comparison, each number by its edges."""

    def __init__(self, bundle: ModelBundle, store: CountStore):
        self.bundle = bundle
        self.profile: Profile = bundle.profile
        self.layout = layout = CountLayout(self.profile)
        self.store = store
        fields = list(zip(bundle.schema.fields, self.profile.fields, layout.field_starts))
        self._row_plan = [(start, _row_bin(f, fp)) for f, fp, start in fields]
        self._score_start = layout.score_start
        self._records_at = layout.records_at
        # categoricals: slot = the field's first slot + code + 2 (missing, unseen, levels)
        self._levels = [f.name for f, fp, _ in fields if fp.kind == "levels"]
        slot_bins, unseen_slots, unseen_at, bases = [], [], [], []
        for i, (f, fp, start) in enumerate(fields):
            if fp.kind != "levels":
                continue
            bases.append(len(slot_bins) + 2)
            unseen_slots.append(len(slot_bins) + 1)
            unseen_at.append(layout.unseen_start + i)
            slot_bins += [start + fp.bin_of_code(code)
                          for code in range(-2, len(f.categories))]
        self._slot_bins = np.array(slot_bins, dtype=np.intp)
        self._slot_bases = np.array(bases, dtype=np.intp)[:, None]
        self._unseen_slots, self._unseen_at = unseen_slots, unseen_at
        # numbers: each field's edges, first bin, last bin and missing bin
        self._numbers = [(f.name, np.asarray(fp.edges), start, start + fp.missing_bin - 1,
                          start + fp.missing_bin) for f, fp, start in fields
                         if fp.kind == "numeric"]
        # booleans: their bins are false, true and missing, side by side
        self._booleans = [f.name for f, fp, _ in fields if fp.kind == "boolean"]
        self._boolean_starts = np.array([start for _, fp, start in fields
                                         if fp.kind == "boolean"], dtype=np.intp)

    def count_row(self, row: tuple, probabilities: list[float]) -> None:
        """One record's plain values in schema order (as `serving.decoding` passes them)."""
        cells = self.store.cells()
        for value, (start, bin_of) in zip(row, self._row_plan):
            cells[start + bin_of(value)] += 1
        cells[self._score_start + self._score_bin(probabilities)] += 1
        cells[self._records_at] += 1

    def _score_bin(self, probabilities: list[float]) -> int:
        score = self.profile.score
        if score.kind == "numeric":
            return score.bin_of_number(probabilities[1])
        return score.bin_of_code(label_code(probabilities, self.bundle.threshold))

    def count_columns(self, columns: dict[str, Any], proba: np.ndarray,
                      unseen: list[tuple[int, str, str]] = ()) -> None:
        """Typed columns of one or more records, their probabilities (rows × classes), and
        the unseen levels among them as `Validated.unseen` lists them."""
        rows = len(proba)
        if not rows:
            return
        if unseen:
            self.store.add_unseen(Counter((name, level) for _, name, level in unseen))
        size = self.layout.size
        score = self.profile.score
        # scores: no missing values; numbers: NaN sorts past every edge, so it is counted in
        # the last bin and then moved to the missing bin
        scores = np.searchsorted(score.edges, proba[:, 1], side="right") \
            if score.kind == "numeric" else label_codes(proba, self.bundle.threshold)
        found = [self._score_start + scores]
        if self._numbers:
            block = np.array([columns[name] for name, *_ in self._numbers], dtype=np.float64)
            found += [start + np.searchsorted(edges, values, side="right")
                      for (_, edges, start, _, _), values in zip(self._numbers, block)]
        added = np.bincount(np.concatenate(found), minlength=size)
        if self._numbers:
            missing = np.isnan(block).sum(axis=1)
            added[[last for *_, last, _ in self._numbers]] -= missing
            added[[at for *_, at in self._numbers]] += missing
        if self._booleans:  # a boolean is cut at 0.5 like a number, counted without sorting
            flags = np.array([columns[name] for name in self._booleans], dtype=np.float64)
            true, missing = np.count_nonzero(flags >= 0.5, axis=1), np.isnan(flags).sum(axis=1)
            starts = self._boolean_starts
            added[starts] += rows - true - missing
            added[starts + 1] += true
            added[starts + 2] += missing
        if self._levels:
            codes = np.array([columns[name] for name in self._levels], dtype=np.intp)
            slots = np.bincount((codes + self._slot_bases).ravel(),
                                minlength=len(self._slot_bins))
            added += np.bincount(self._slot_bins, weights=slots, minlength=size).astype(np.int64)
            added[self._unseen_at] = slots[self._unseen_slots]
        added[self._records_at] = rows
        self.store.counts()[:] += added


def _row_bin(f, fp: FieldProfile) -> Callable[[Any], int]:
    """A field's bin for one plain value: a number (or None), a level, a boolean spelling
    (the last two looked up in a table of every value the plain path lets through)."""
    if f.kind is Kind.CATEGORICAL:
        return {level: fp.bin_of_code(code) for level, code in f.category_codes.items()}.__getitem__
    if f.kind is Kind.BOOLEAN:
        return {value: fp.bin_of_number(number)
                for value, number in f.boolean_table.items()}.__getitem__
    return fp.bin_of_number


def _bins_report(fp: FieldProfile, counts: np.ndarray) -> list[dict[str, Any]]:
    total = counts.sum()
    return [{"bin": name, "share": float(c / total) if total else 0.0, "reference_share": ref}
            for name, c, ref in zip(fp.bins, counts.tolist(), fp.shares)]


def _distribution_report(fp: FieldProfile, counts: np.ndarray, enough: bool) -> dict[str, Any]:
    total = int(counts.sum())
    shares = counts / total if total else np.zeros(len(counts))
    value = psi(fp.shares, shares) if total else None
    return {"psi": round(value, 6) if enough else None,
            "status": drift_status(value) if enough else "too few records",
            "records": total, "missing_rate": float(shares[-1]),
            "reference_missing_rate": fp.missing_rate, "bins": _bins_report(fp, counts)}


def _unseen_levels(levels: dict[str, int], records: int) -> list[dict[str, Any]]:
    """The most frequent unseen levels first, each with its records and their share."""
    frequent = sorted(levels.items(), key=lambda item: (-item[1], item[0]))[:UNSEEN_REPORTED]
    return [{"level": level, "records": n, "share": n / records if records else 0.0}
            for level, n in frequent]


def drift_report(profile: Profile, counts: np.ndarray, minimum: int = MIN_RECORDS,
                 unseen: Tally | None = None) -> dict[str, Any]:
    """How far the counted records (counts laid out by `CountLayout`) are from the profile:
    per field and for the scores, fields sorted by PSI, largest first; each field's unseen
    levels named from `unseen` (a `CountStore`'s tally)."""
    layout = CountLayout(profile)
    records = int(counts[layout.records_at])
    enough = records >= minimum
    fields = []
    for i, (fp, start) in enumerate(zip(profile.fields, layout.field_starts)):
        report = _distribution_report(fp, counts[start:start + len(fp.bins)], enough)
        unseen_records = int(counts[layout.unseen_start + i])
        fields.append({"field": fp.name, **report,
                       "unseen_share": unseen_records / records if records else 0.0,
                       "unseen_levels": _unseen_levels((unseen or {}).get(fp.name, {}),
                                                       records)})
    if enough:
        fields.sort(key=lambda f: -f["psi"])
    score = profile.score
    start = layout.score_start
    answer: dict[str, Any] = {"records": records, "enough": enough, "minimum_records": minimum}
    if not enough:
        answer["detail"] = (
            f"{records} records counted; drift is judged from {minimum} on, since fewer "
            "records drawn from the training data itself would often show a PSI above 0.1 "
            "by chance")
    score_report = _distribution_report(score, counts[start:start + len(score.bins)], enough)
    del score_report["missing_rate"], score_report["reference_missing_rate"]
    return {**answer, "fields": fields, "score": score_report}
