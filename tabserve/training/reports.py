"""The training report: metrics.json, model_card.md and the plots it links; and the shorter
report of a model imported with a labelled sample (`write_import_reports`).

Plots need matplotlib (a dev package: training tooling, not needed to serve); without it the
card says so and the rest is still written. Test metrics come with 95% bootstrap intervals.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (accuracy_score, confusion_matrix, log_loss, precision_recall_curve,
                             roc_auc_score, roc_curve)

from tabserve.model.bundle import ModelBundle
from tabserve.model.decision import label_codes
from tabserve.model.frames import columns_from_frame
from tabserve.model.fitted import BlendModel, BoostedTrees
from tabserve.model.schema import MISSING_CODE, Field, Kind
from tabserve.monitoring.plots import PLOTTED_FIELDS, plot_distributions
from tabserve.serving.explaining import Explainer, ExplanationsUnavailable
from tabserve.serving.core import Predictor
from tabserve.training.trainer import TrainingResult
from tabserve.training.search import roc_auc

BOOTSTRAP_ROUNDS = 1000
MIN_BOOTSTRAP_ROUNDS = 200  # below this, the 2.5% and 97.5% percentiles are too rough
EXPLAINED_ROWS = 2000       # importance and directions are read on at most this many test rows
# ... and on fewer for large boosted models: tree SHAP's cost grows with the trees' nodes (a
# CatBoost of 1,229 rounds over 4 classes, 624,000 nodes, took 30 s on 867 rows)
EXPLAINED_NODE_ROWS = 50_000_000
FEWEST_EXPLAINED_ROWS = 100


def section(what: str, make: Callable[[], Any], failures: list[str], fallback: Any = None) -> Any:
    """One part of the report, made by `make`; if it fails, `fallback` stands in and the
    failure is listed in the card, so one part never loses the others (nor the model, which
    is written after the report)."""
    try:
        return make()
    except Exception as err:  # noqa: BLE001 - any failure of one part, said in the card
        failures.append(f"{what}: {type(err).__name__}: {' '.join(str(err).split())}"[:300])
        return fallback


def bootstrap_intervals(y: np.ndarray, proba: np.ndarray, threshold: float | None,
                        seed: int, seconds: float = math.inf) -> dict[str, list[float]]:
    """95% percentile intervals of the test metrics over bootstrap resamples of the test rows:
    `BOOTSTRAP_ROUNDS` of them, or as many as `seconds` allow past the minimum."""
    rng = np.random.default_rng(seed)
    labels = list(range(proba.shape[1]))
    samples: dict[str, list[float]] = {"roc_auc": [], "accuracy": [], "log_loss": []}
    deadline = time.perf_counter() + seconds
    for done in range(BOOTSTRAP_ROUNDS):
        if done >= MIN_BOOTSTRAP_ROUNDS and time.perf_counter() > deadline:
            break
        rows = rng.integers(0, len(y), len(y))
        if len(np.unique(y[rows])) < len(labels):
            continue  # a resample without some class has no AUC
        p = proba[rows]
        samples["roc_auc"].append(roc_auc(y[rows], p))
        samples["accuracy"].append(float(accuracy_score(y[rows], label_codes(p, threshold))))
        samples["log_loss"].append(float(log_loss(y[rows], p, labels=labels)))
    intervals: dict[str, Any] = {name: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
                                 for name, v in samples.items()}
    intervals["resamples"] = len(samples["roc_auc"])
    return intervals


@dataclass
class FieldEffects:
    """How much each input field moves the model's answers on the test rows, how that was
    measured, and (where contributions exist) which way each field pushes."""

    importance: dict[str, float]
    how: str
    direction: dict[str, str] = field(default_factory=dict)


def field_effects(bundle: ModelBundle, frame, split_model) -> FieldEffects:
    """Mean |contribution| per input field on `frame`, and each field's direction for a
    binary model; for a model with no contributions, the permutation importance (no
    direction) of `split_model`, which never saw `frame`'s rows (the shipped model learnt
    them: a forest that memorised a row answers it alike whatever one field says)."""
    rows = explained_rows(bundle.model)
    if len(frame) > rows:  # a large test split: a sample reads the same, faster
        frame = frame.sample(rows, random_state=0)
    explainer = Explainer(Predictor(bundle))
    columns = columns_from_frame(bundle.schema, frame)
    try:
        contributions, _ = explainer.contributions(columns)
    except ExplanationsUnavailable:
        return FieldEffects(permutation_effects(split_model, bundle, frame),
                            "permutation importance (drop in ROC AUC when a field is shuffled)")
    mean_abs = np.abs(contributions).mean(axis=(0, 1))
    effects = FieldEffects(dict(zip(bundle.schema.names, mean_abs.tolist())),
                           "mean |SHAP value| per field, in log-odds (margin) units")
    if bundle.task == "binary":
        for at, f in enumerate(bundle.schema.fields):
            effects.direction[f.name] = _direction(f, columns[f.name], contributions[:, 0, at],
                                                   bundle.positive_class)
    return effects


def explained_rows(model) -> int:
    """How many test rows the importance reads: `EXPLAINED_ROWS`, fewer as the boosted trees'
    nodes (a blend's members' included) grow past `EXPLAINED_NODE_ROWS` / `EXPLAINED_ROWS`."""
    parts = model.members if isinstance(model, BlendModel) else [model]
    nodes = sum(int(p.node_counts.sum()) for p in parts if isinstance(p, BoostedTrees))
    return max(FEWEST_EXPLAINED_ROWS, min(EXPLAINED_ROWS, EXPLAINED_NODE_ROWS // max(nodes, 1)))


PERMUTED_ROWS_PER_CALL = 50_000  # shuffled copies predicted together, in one call
PERMUTATIONS = 300               # shuffles in all: five per field, fewer when fields are many


def permutation_effects(model, bundle: ModelBundle, frame) -> dict[str, float]:
    """Each field's mean drop in `model`'s ROC AUC when its values are shuffled among
    `frame`'s rows (the bundle gives the fields, the target and the classes).
    The shuffled copies are predicted in a few large calls, not one call per field and
    repeat: a random forest's call costs about 0.1 s however few its rows (300 fields took
    150 s one by one, 3 s together)."""
    names = bundle.schema.names
    rows = frame[names].reset_index(drop=True)
    y = frame[bundle.schema.target].map({c: i for i, c in enumerate(bundle.classes)}).to_numpy()
    base = roc_auc(y, model.predict_proba(rows))
    rng = np.random.default_rng(0)
    repeats = min(5, max(1, PERMUTATIONS // len(names)))
    shuffles = [(name, rng.permutation(len(rows))) for _ in range(repeats) for name in names]
    drops: dict[str, list[float]] = {name: [] for name in names}
    per_call = max(1, PERMUTED_ROWS_PER_CALL // len(rows))
    for start in range(0, len(shuffles), per_call):
        batch = shuffles[start:start + per_call]
        copies = [rows.assign(**{name: rows[name].to_numpy()[order]}) for name, order in batch]
        proba = model.predict_proba(pd.concat(copies, ignore_index=True))
        for at, (name, _) in enumerate(batch):
            drops[name].append(base - roc_auc(y, proba[at * len(rows):(at + 1) * len(rows)]))
    return {name: float(np.mean(values)) for name, values in drops.items()}


def _direction(f: Field, values: np.ndarray, pushes: np.ndarray, positive: str) -> str:
    """Which way a field pushes the positive class's log-odds, in words."""
    towards = f"towards {positive!r}"
    if f.kind is Kind.CATEGORICAL:
        means = {level: pushes[values == code].mean() for code, level in enumerate(f.categories)
                 if (values == code).any()}
        if len(means) < 2:
            return "one level in the test rows"
        ranked = sorted(means, key=means.get)
        return f"most {towards}: {ranked[-1]!r}; least: {ranked[0]!r}"
    seen = ~np.isnan(values)
    if f.kind is Kind.BOOLEAN:
        if len(np.unique(values[seen])) < 2:
            return "one value in the test rows"
        gap = pushes[seen & (values == 1)].mean() - pushes[seen & (values == 0)].mean()
        return f"{f.spellings[0] or 'true'} pushes {'towards' if gap > 0 else 'away from'} " \
               f"{positive!r}"
    if seen.sum() < 3 or np.ptp(values[seen]) == 0 or np.ptp(pushes[seen]) == 0:
        return "no clear direction"
    rho = np.corrcoef(np.argsort(np.argsort(values[seen])), pushes[seen])[0, 1]  # Spearman
    if abs(rho) < 0.3:
        return f"mixed (rank correlation {rho:+.2f}): depends on the value and on other fields"
    return f"higher values push {'towards' if rho > 0 else 'away from'} {positive!r} " \
           f"(rank correlation {rho:+.2f})"


# Words in input names that often mean a protected or sensitive attribute (in the sense of
# anti-discrimination law): the card lists such fields and how the model treats each group
SENSITIVE_WORDS = ("gender", "sex", "female", "male", "age", "senior", "race", "ethnic",
                   "religio", "marital", "married", "national", "citizen", "disab", "pregnan",
                   "orientation")


def sensitive_fields(schema) -> list[Field]:
    """Fields with a word of their name (split at `_`, spaces, digits) starting with one of
    `SENSITIVE_WORDS`: `senior_citizen` and `age` are, `page_views` and `average` are not."""
    def sensitive(name: str) -> bool:
        return any(word.startswith(SENSITIVE_WORDS) for word in re.split(r"[^a-z]+", name.lower()))
    return [f for f in schema.fields if sensitive(f.name)]


def field_groups(f: Field, values: np.ndarray) -> pd.Series:
    """The group of each test row for one field, read as the schema's kind (`values` from
    `columns_from_frame`): a number's quartile, a boolean's spelling, a category's level, and
    `(missing)` where the row has no value; the groups in their natural order."""
    if f.kind is Kind.NUMERIC:
        quartiles = pd.qcut(values, 4, duplicates="drop")
        labels = [str(q) for q in quartiles.categories]
        named = np.asarray(quartiles.astype(str), dtype=object)
        named[np.isnan(values)] = "(missing)"
    elif f.kind is Kind.BOOLEAN:
        labels = [f.spellings[1] or "false", f.spellings[0] or "true"]
        named = np.where(np.isnan(values), "(missing)",
                         np.where(values == 1, labels[1], labels[0])).astype(object)
    else:
        labels = [*f.categories, "(other)"]
        levels = np.asarray(labels, dtype=object)
        named = np.where(values == MISSING_CODE, "(missing)",
                         levels[np.where(values >= 0, values, len(f.categories))])
    return pd.Series(pd.Categorical(named, categories=[*labels, "(missing)"], ordered=True))


def group_table(bundle: ModelBundle, y: np.ndarray, proba: np.ndarray, f: Field,
                values: np.ndarray) -> tuple[list[str], list[list]]:
    """The rows `y` (answers `proba`) by the groups of one field (`values`: its typed column):
    each group's rows, observed rate of the positive class, predicted rate, mean probability
    and ROC AUC within the group (None where one class is absent) for a binary model; its
    rows and accuracy for a multiclass one. The header, then a row of numbers per group."""
    groups = field_groups(f, values)
    predicted = label_codes(proba, bundle.threshold)
    k = 1 if bundle.task == "binary" else None
    rows = []
    for group in [g for g in groups.cat.categories if (groups == g).any()]:
        mask = (groups == group).to_numpy()
        y_in, p_in = y[mask], proba[mask]
        shown = [str(group), int(mask.sum())]
        if k is not None:
            shown += [float(np.mean(y_in == k)), float(np.mean(predicted[mask] == k)),
                      float(np.mean(p_in[:, k])),
                      roc_auc(y_in, p_in) if len(np.unique(y_in)) == 2 else None]
        else:
            shown += [float(np.mean(predicted[mask] == y_in))]
        rows.append(shown)
    header = (["group", "rows", f"observed {bundle.positive_class!r}",
               f"predicted {bundle.positive_class!r}", "mean probability", "ROC AUC"]
              if k is not None else ["group", "rows", "accuracy"])
    return header, rows


def group_checks(bundle: ModelBundle, result: TrainingResult, f: Field,
                 values: np.ndarray) -> str:
    """`group_table` of the test split, as the card's markdown."""
    header, rows = group_table(bundle, result.test_y, result.test_proba, f, values)
    if len(header) > 3:
        shown = [[g, n, f"{observed:.1%}", f"{predicted:.1%}", f"{mean:.3f}",
                  "n/a" if auc is None else f"{auc:.3f}"]
                 for g, n, observed, predicted, mean, auc in rows]
    else:
        shown = [[g, n, f"{accuracy:.1%}"] for g, n, accuracy in rows]
    return f"`{f.name}`:\n\n" + _table(shown, ["group", "test rows", *header[2:]])


CALIBRATION_BINS = 10


def card_figures(bundle: ModelBundle, y: np.ndarray, proba: np.ndarray, effects: FieldEffects,
                 intervals: dict, columns: dict, rows: str) -> dict[str, Any]:
    """The card's figures as data, kept in the bundle for the service's page: what `rows`
    ("test split") measured (intervals, importance with direction, calibration, the
    confusion at the threshold, the sensitive fields' groups). `columns`: those rows' typed
    columns (`columns_from_frame`), for the groups."""
    from sklearn.calibration import calibration_curve

    classes = bundle.classes
    pairs = [(1, classes[1])] if bundle.task == "binary" else list(enumerate(classes))
    calibration = []
    for k, label in pairs:
        observed, predicted = calibration_curve(y == k, proba[:, k], n_bins=CALIBRATION_BINS,
                                                strategy="quantile")
        calibration.append({"class": label, "predicted": predicted.tolist(),
                            "observed": observed.tolist()})
    matrix = confusion_matrix(y, label_codes(proba, bundle.threshold),
                              labels=list(range(len(classes))))
    importance = sorted(effects.importance.items(), key=lambda item: -item[1])
    groups = []
    for f in sensitive_fields(bundle.schema):
        if f.name in columns:
            header, table = group_table(bundle, y, proba, f, columns[f.name])
            groups.append({"field": f.name, "header": header, "rows": table})
    return {"rows": rows, "count": int(len(y)), "intervals_95": intervals,
            "importance": {"method": effects.how, "fields": [
                {"field": name, "value": float(value),
                 "direction": effects.direction.get(name)} for name, value in importance]},
            "calibration": calibration,
            "confusion": {"classes": classes, "counts": matrix.tolist(),
                          "threshold": bundle.threshold},
            "groups": groups}


def _plots(bundle: ModelBundle, y: np.ndarray, proba: np.ndarray, importance: dict[str, float],
           importance_how: str, folder: Path, rows: str) -> list[str]:
    """The plots of `proba` against `y` on `rows` ("test split"), importance and profile."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write files
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve

    classes = bundle.classes
    pairs = [(1, classes[1])] if bundle.task == "binary" else list(enumerate(classes))
    written = []

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(folder / name, dpi=110)
        plt.close(fig)
        written.append(name)

    fig, ax = plt.subplots(figsize=(5, 4.5))
    for k, label in pairs:
        fpr, tpr, _ = roc_curve(y == k, proba[:, k])
        ax.plot(fpr, tpr, label=f"{label} (AUC {roc_auc_score(y == k, proba[:, k]):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC, {rows}")
    ax.legend(loc="lower right")
    save(fig, "roc.png")

    fig, ax = plt.subplots(figsize=(5, 4.5))
    for k, label in pairs:
        precision, recall, _ = precision_recall_curve(y == k, proba[:, k])
        ax.plot(recall, precision, label=f"{label} (base rate {np.mean(y == k):.2f})")
    ax.set(xlabel="recall", ylabel="precision", title=f"Precision-recall, {rows}")
    ax.legend(loc="upper right")
    save(fig, "precision_recall.png")

    fig, ax = plt.subplots(figsize=(5, 4.5))
    for k, label in pairs:
        observed, predicted = calibration_curve(y == k, proba[:, k], n_bins=10,
                                                strategy="quantile")
        ax.plot(predicted, observed, marker="o", label=label)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set(xlabel="predicted probability", ylabel="observed frequency",
           title=f"Calibration, {rows}")
    ax.legend(loc="upper left")
    save(fig, "calibration.png")

    matrix = confusion_matrix(y, label_codes(proba, bundle.threshold),
                              labels=list(range(len(classes))))
    fig, ax = plt.subplots(figsize=(4.5 + 0.3 * len(classes), 4 + 0.3 * len(classes)))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center",
                color="white" if count > matrix.max() / 2 else "black")
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xticklabels=classes,
           yticklabels=classes, xlabel="predicted", ylabel="actual",
           title=f"Confusion matrix, {rows}" + (f"\n(threshold {bundle.threshold:.3g})"
                                                   if bundle.threshold is not None else ""))
    save(fig, "confusion_matrix.png")

    # a wide table's plots show its most important fields only: hundreds of charts are
    # unreadable, and drawing them took minutes (752 fields: 100 s)
    ordered = sorted(importance.items(), key=lambda item: item[1])[-PLOTTED_FIELDS:]
    shown = f" (the {len(ordered)} most important of {len(importance)})" \
        if len(importance) > len(ordered) else ""
    fig, ax = plt.subplots(figsize=(6, 1.5 + 0.28 * len(ordered)))
    ax.barh([name for name, _ in ordered], [value for _, value in ordered])
    ax.set(title="Feature importance" + shown, xlabel=importance_how)
    save(fig, "feature_importance.png")

    if bundle.profile is not None:
        profile = bundle.profile.describe()
        plotted = {name for name, _ in ordered} if importance else None
        fields = [d for d in profile["fields"] if plotted is None or d["field"] in plotted]
        plot_distributions(
            [{"field": d["field"], "bins": [{"bin": b["bin"], "reference_share": b["share"]}
                                             for b in d["bins"]]}
             for d in [*fields[:PLOTTED_FIELDS], profile["score"]]],
            folder / "reference_profile.png",
            f"Training rows by bin ({bundle.profile.rows} rows): the reference for drift"
            + shown)
        written.append("reference_profile.png")
    return written


def profile_table(bundle: ModelBundle) -> str:
    """The reference profile in words: each field's bins, largest bin and missing rate."""
    if bundle.profile is None:
        return "This model has no reference profile."
    rows = []
    for fp in [*bundle.profile.fields, bundle.profile.score]:
        largest = max(range(len(fp.bins)), key=fp.shares.__getitem__)
        rows.append([f"`{fp.name}`", len(fp.bins) - 1, f"{fp.bins[largest]} ({fp.shares[largest]:.1%})",
                     f"{fp.missing_rate:.1%}"])
    return _table(rows, ["field", "bins", "largest bin", "missing"])


def _copies(rows: dict) -> str:
    copies = rows.get("copies", 0)
    if not copies:
        return "No row is an exact copy of another."
    if not rows.get("copies_kept_together", True):
        return (f"{copies} rows ({copies / rows['used']:.1%}) are exact copies of another row, "
                "and too few are distinct to keep copies together: the test split and the folds "
                "treat each row on its own, so a row's copy may score the model that learned it.")
    return (f"{copies} rows ({copies / rows['used']:.1%}) are exact copies of another row in "
            "what the model sees: each stayed with its copies in the test split and in one "
            "fold, so no copy scored a model that learned it.")


def _table(rows: list[list[Any]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _metrics_table(scores: dict, intervals: dict, rows: str) -> str:
    return _table([[name, f"{scores[name]:.4f}",
                    f"{intervals[name][0]:.4f} to {intervals[name][1]:.4f}"
                    if name in intervals else "not computed"]
                   for name in ("roc_auc", "accuracy", "log_loss")],
                  ["metric", rows, "95% bootstrap interval"])


def _effects_table(effects: FieldEffects) -> str:
    """The ten most important fields, and which way each pushes when known."""
    top = sorted(effects.importance.items(), key=lambda item: -item[1])[:10]
    return _table([[name, f"{value:.4f}", *([effects.direction[name]] if effects.direction
                                            else [])] for name, value in top],
                  ["field", "importance", *(["direction"] if effects.direction else [])])


def _scored_how(cv: dict) -> str:
    """How the search scored its trials, in words (`search.scoring`)."""
    screened = sum(bool(t.get("screened_out")) for t in cv["all_trials"])
    return {"holdout": f"scored on a holdout of 1/{cv['folds']} of the rows (a large table)",
            "screened": f"cross-validated ({cv['folds']}-fold; {screened} screened out on the "
                        "first fold)"}.get(cv.get("scoring"), f"cross-validated "
                                                               f"({cv['folds']}-fold)")


def _trials_run(cv: dict, family: str) -> str:
    """A family's trials in words: how many, screened out or cut, and their seconds (bundles
    written before `families` existed: the count alone)."""
    ran = cv.get("families", {}).get(family)
    if ran is None:
        return str(sum(x["family"] == family for x in cv["all_trials"])
                   or "3 weights of the best of each")
    notes = [f"{ran[key]} {words}" for key, words in (("screened_out", "screened out"),
                                                      ("cut_by_budget", "cut by the budget"))
             if ran[key]]
    return f"{ran['trials']} in {ran['seconds']:g} s" + (f" ({', '.join(notes)})" if notes else "")


def _source(data: dict) -> str:
    """Where the rows came from: a file and its digest, or a Spark DataFrame (no digest)."""
    if not data.get("sha256"):
        return f"Rows from {data['path']}, read through Spark (no file digest)."
    return f"File `{data['path']}`, SHA-256 `{data['sha256']}`."


def _searched_rows(m: dict) -> str:
    """The rows the search's training split held (on Spark: of the sample), in words."""
    if "spark" not in m:
        return f"{m['rows']['train']} rows"
    return f"{m['spark']['sample']['train']:,} rows of the {m['spark']['rows_sample']:,}-row sample"


def _final_fit(m: dict) -> str:
    """What the shipped model was fitted on, and (on Spark) its test figures against the
    sample's fit on the same rows."""
    if "spark" not in m:
        return ("The shipped model is the chosen configuration refit on all rows; these figures "
                "come from the same configuration fit on the training split only.")
    spark = m["spark"]
    compared = _table([[name, f"{spark['test_full_fit'][name]:.4f}",
                        f"{spark['test_sample_fit'][name]:.4f}"]
                       for name in ("roc_auc", "accuracy", "log_loss")],
                      ["metric", f"shipped fit ({spark['rows_fitted']:,} rows)",
                       f"the sample's fit ({spark['rows_sample']:,} rows)"])
    return (f"Trained on Spark {spark['spark_version']}: of {spark['rows_labelled']:,} labelled "
            f"rows, the shipped model was fitted on {spark['rows_fitted']:,} ({m['final_fit']}); "
            f"{spark['rows_validation']:,} decided its number of trees, "
            f"{spark['rows_calibration']:,} held-out rows chose calibration and threshold, and "
            f"the {spark['rows_test']:,} test rows above measured it. No row on one side of "
            "these splits, nor a copy of it, is on another. The same test rows, scored by the "
            f"fit of the search's sample:\n\n{compared}\n")


def _reproduce(m: dict, meta: dict, target: str, output: Path) -> str:
    if "spark" in m:
        return (f"Reproduce exactly: `tabserve.spark.train(df, target={target!r}, "
                f"seed={meta['seed']}, max_trials={m['cv']['trials']})` on the same rows.")
    return (f"Reproduce exactly: `.venv/bin/python train.py --data {meta['data']['path']} "
            f"--target {target} --output {output} --seed {meta['seed']} "
            f"--trials {m['cv']['trials']}`.")


def model_card(bundle: ModelBundle, result: TrainingResult, intervals: dict,
               effects: FieldEffects, plots: list[str], plots_note: str, output: Path,
               failures: list[str]) -> str:
    m, meta, schema = bundle.metrics, bundle.metadata, bundle.schema
    test = m["test"]
    target_rates = ", ".join(f"{label!r} {np.mean(result.test_y == k):.1%}"
                             for k, label in enumerate(bundle.classes))
    fields = _table([[f.name, f.kind.value, "yes" if f.nullable else "no",
                      (" < ".join(f.order[:8]) + (" …" if len(f.order) > 8 else "")
                       + " (ordered)") if f.order else
                      (", ".join(f.categories[:8]) + (" …" if len(f.categories) > 8 else ""))
                      if f.categories else (f"{f.minimum:g} to {f.maximum:g}"
                                            if f.minimum is not None else "/".join(f.spellings))]
                     for f in schema.fields], ["field", "kind", "missing values", "values"])
    dropped = "\n".join(f"- `{d.name}`: {d.reason}" for d in schema.dropped) or "- none"
    families = _table([[family, f"{t['cv_roc_auc']:.4f} ± {t['cv_sd']:.4f}",
                        _trials_run(m["cv"], family), f"`{json.dumps(t['params'])}`"]
                       for family, t in m["cv"]["best_by_family"].items()],
                      ["family", "best CV ROC AUC", "trials", "best parameters"])
    metrics = _metrics_table(test, intervals, "test split")
    sensitive = sensitive_fields(schema)
    test_columns = section("the test split's columns", lambda: columns_from_frame(
        schema, result.test_frame), failures, {})
    checks = "\n\n".join(section(f"groups of {f.name!r}", lambda f=f: group_checks(
        bundle, result, f, test_columns[f.name]), failures, f"`{f.name}`: not computed")
        for f in sensitive)
    profile = section("the reference profile's table", lambda: profile_table(bundle), failures,
                      "not computed")
    failed = ("\n## Parts of this report that failed\nThe model was written and serves as the "
              "figures above say; these parts of its report could not be made:\n"
              + "".join(f"- {failure}\n" for failure in failures)) if failures else ""
    calibration = m.get("calibration") or {}
    decision = (f"Threshold **{bundle.threshold:.4g}** on the probability of "
                f"{bundle.positive_class!r}: {bundle.threshold_rule}."
                if bundle.threshold is not None else "The most probable class.")
    plots_md = "\n".join(f"![{name}]({name})" for name in plots) or plots_note
    return f"""# Model card: {schema.target!r}, model {bundle.version}

Created {meta['created_at']} by `train.py`; libraries: {', '.join(f'{k} {v}' for k, v in meta['libraries'].items())}.

## Data
- {_source(meta['data'])}
- {m['rows']['used']} labelled rows ({m['rows']['left_out_without_target']} left out without a target value); {len(schema.fields)} input fields.
- {_copies(m['rows'])}
- Target `{schema.target}`, {bundle.task}: classes {', '.join(map(repr, bundle.classes))}; in the test split: {target_rates}.

{fields}

Dropped columns:
{dropped}

## Model selection
{m['cv']['trials']} configurations were {_scored_how(m['cv'])} (ROC AUC{' one-vs-rest macro' if bundle.task == 'multiclass' else ''}) on the training split ({_searched_rows(m)}) within a budget of {m['cv']['time_budget_seconds']:g} s:

{families}

Chosen: **{m['chosen']}** with `{json.dumps(m['chosen_params'])}`.{f" Why: {m['why_chosen']}." if m.get('why_chosen') else ''}
Calibration: {calibration.get('method', 'not applicable (multiclass)')}{f" ({calibration.get('on', 'out-of-fold')} log loss {calibration['log_loss_raw']:.4f} raw, {calibration['log_loss_platt']:.4f} with Platt scaling; kept only if lower)" if calibration else ''}.
Decision: {decision}

## Quality on the test split ({m['rows']['test']} rows the selection never saw)
{metrics}

{_final_fit(m)}

Most important fields ({effects.how}){'; the direction says which way each field pushes the probability of ' + repr(bundle.positive_class) + ' on the test rows' if effects.direction else ''}:
{_effects_table(effects)}

## Plots
{plots_md}

## Reference profile (for drift)
The bundle keeps how the {bundle.profile.rows if bundle.profile else 0} training-split rows were distributed: each number's
decile bins, each level the encoder kept (others share one bin), each field's missing
values, and the deciles of the out-of-fold {'probability of ' + repr(bundle.positive_class) if bundle.task == 'binary' else 'predicted class'} (`score`). `GET /drift` and
`monitor.py` compare traffic and new files with it (docs/monitoring.md){'; the plot `reference_profile.png` shows the fields' if 'reference_profile.png' in plots else ''}.

{profile}

## Intended use
- Scoring records like those in `{Path(meta['data']['path']).name}` for `{schema.target}`, one
  at a time or in batches, as one input to a decision that people review and can overturn:
  ranking whom to contact first, flagging cases to look at.
- Retraining is the user's: `GET /drift` says when inputs move away from the training data,
  and `monitor.py` with the outcomes, once known, says whether the answers got worse.

## Out-of-scope use
- Decisions with legal or similarly significant effects on a person taken by the model alone
  (credit, employment, housing, insurance, benefits): they need review by a person, and in
  many places a right to an explanation and to contest.
- Populations, periods, places or products the training file does not cover; the service
  warns about unseen categories and numbers outside the training range in each answer, and
  `GET /drift` measures how far the traffic as a whole has moved from the training rows.
- Causal questions ("what happens if we change this field?"): the model describes
  associations in the data, not effects of actions.

## Sensitive inputs
{('Fields whose names suggest a protected or sensitive attribute: ' + ', '.join(f'`{f.name}`' for f in sensitive) + '. Using them, or fields that stand in for them, may be unlawful for some decisions. Below, the test split by their groups: compare the observed and predicted rates and the ROC AUC across groups; a model that is less accurate for one group, or predicts a rate far from the observed one there, treats it differently. To check a model trained without them, retrain with those columns removed from the CSV and compare the test figures.') if sensitive else 'No field name suggests a protected attribute (gender, age, race, religion, nationality, disability, marital status...); check the fields yourself, since others can stand in for one.'}

{checks}

## Limitations
- Trained on one file: the model knows only the populations, period and categories in it;
  unseen categories are answered with a warning and encoded as none of the known ones.
- Importance and explanations describe the model, not causes.
- Probabilities are {'Platt-calibrated on out-of-fold predictions' if bundle.calibration else 'as the model gives them'}; check them on recent data before acting on them.
- {_reproduce(m, meta, schema.target, output)}
{failed}"""


def write_reports(bundle: ModelBundle, result: TrainingResult, folder: Path,
                  output: Path = Path("model.bin"), seconds: float = math.inf) -> list[str]:
    """Write the report files into `folder`; their names. The card's figures are kept in the
    bundle too (`bundle.card`, for the service's page): save it after. `output`: where the
    bundle is written, for the card's command that reproduces it; `seconds`: the time the
    bootstrap may take beyond its minimum of rounds."""
    folder.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    started = time.perf_counter()
    effects = section("field importance", lambda: field_effects(bundle, result.test_frame,
                                                                 result.split_model),
                      failures, FieldEffects({}, "not computed"))
    plots, note = plots_or_note(bundle, result.test_y, result.test_proba, effects, folder,
                                failures, "test split")
    # the plots cost seconds whatever the rows; the bootstrap, last, gets what is left
    left = seconds - (time.perf_counter() - started)
    intervals = section("bootstrap intervals", lambda: bootstrap_intervals(
        result.test_y, result.test_proba, bundle.threshold, seed=bundle.metadata["seed"],
        seconds=left), failures, {})
    bundle.card = section("the card's figures", lambda: card_figures(
        bundle, result.test_y, result.test_proba, effects, intervals,
        columns_from_frame(bundle.schema, result.test_frame), "test split"), failures)
    card = model_card(bundle, result, intervals, effects, plots, note, output, failures)
    return [*_write_card(bundle, intervals, effects, failures, card, folder), *plots]


def plots_or_note(bundle: ModelBundle, y: np.ndarray, proba: np.ndarray,
                  effects: FieldEffects, folder: Path, failures: list[str],
                  rows: str) -> tuple[list, str]:
    """The plots written, or a note saying why there are none."""
    try:
        return _plots(bundle, y, proba, effects.importance, effects.how, folder, rows), ""
    except ImportError:
        return [], "(matplotlib is not installed: `make install` installs it)"
    except Exception as err:  # noqa: BLE001 - said in the card; the rest is still written
        failures.append(f"plots: {type(err).__name__}: {' '.join(str(err).split())}"[:300])
        return [], "(the plots could not be made: see the end of this card)"


def _write_card(bundle: ModelBundle, intervals: dict, effects: FieldEffects,
                failures: list[str], card: str, folder: Path) -> list[str]:
    (folder / "metrics.json").write_text(json.dumps({
        "model_version": bundle.version, "metrics": bundle.metrics,
        "test_intervals_95": intervals, "feature_importance": effects.importance,
        "feature_importance_method": effects.how, "feature_direction": effects.direction,
        "sensitive_fields": [f.name for f in sensitive_fields(bundle.schema)],
        "threshold": bundle.threshold, "threshold_rule": bundle.threshold_rule,
        "report_failures": failures}, indent=2) + "\n")
    (folder / "model_card.md").write_text(card)
    return ["metrics.json", "model_card.md"]


class _Served:
    """The served model as `permutation_effects` calls it: rows in, probabilities out."""

    def __init__(self, bundle: ModelBundle):
        self.predictor = Predictor(bundle)

    def predict_proba(self, rows: pd.DataFrame) -> np.ndarray:
        return self.predictor.probabilities(columns_from_frame(self.predictor.schema, rows))


def write_import_reports(bundle: ModelBundle, rows: pd.DataFrame, folder: Path) -> list[str]:
    """metrics.json, model_card.md and the plots of an imported model, from the labelled
    sample it was imported with (rows its user may have trained on: the card says so); the
    card's figures kept in the bundle as `write_reports` keeps them."""
    folder.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    schema = bundle.schema
    y = rows[schema.target].map({c: i for i, c in enumerate(bundle.classes)}).to_numpy()
    proba = _Served(bundle).predict_proba(rows)
    effects = section("field importance", lambda: field_effects(bundle, rows, _Served(bundle)),
                      failures, FieldEffects({}, "not computed"))
    intervals = section("bootstrap intervals", lambda: bootstrap_intervals(
        y, proba, bundle.threshold, seed=0), failures, {})
    plots, note = plots_or_note(bundle, y, proba, effects, folder, failures, "the sample")
    bundle.card = section("the card's figures", lambda: card_figures(
        bundle, y, proba, effects, intervals, columns_from_frame(schema, rows), "the sample"),
        failures)
    card = import_card(bundle, len(rows), intervals, effects, plots or note, failures)
    return [*_write_card(bundle, intervals, effects, failures, card, folder), *plots]


def import_card(bundle: ModelBundle, sample_rows: int, intervals: dict, effects: FieldEffects,
                plots: list[str] | str, failures: list[str]) -> str:
    m, meta, schema = bundle.metrics, bundle.metadata, bundle.schema
    metrics = _metrics_table(m["test"], intervals, "the sample")
    served = ("as data, by the same scorers as a model `train.py` made (no pickle)"
              if m["imported"]["served"] == "as data" else
              "through its own `predict_proba`: the bundle holds it pickled, and is served only "
              "with ALLOW_PICKLE=1 or a valid signature")
    plots_md = "\n".join(f"![{name}]({name})" for name in plots) \
        if isinstance(plots, list) else plots
    failed = ("\n## Parts of this report that failed\n"
              + "".join(f"- {failure}\n" for failure in failures)) if failures else ""
    sensitive = sensitive_fields(schema)
    return f"""# Model card: {schema.target!r}, imported model {bundle.version}

Imported {meta['created_at']} by `import_model.py` from `{meta['imported_from']['path']}`
(SHA-256 `{meta['imported_from']['sha256']}`): {m['imported']['kind']}, served {served}.
Libraries: {', '.join(f'{k} {v}' for k, v in meta['libraries'].items())}.

## Data
- Sample `{meta['data']['path']}`, SHA-256 `{meta['data']['sha256']}`: {sample_rows} rows; the
  schema (each field's kind and levels) comes from it and from what the model reads.
- Target `{schema.target}`, {bundle.task}: classes {', '.join(map(repr, bundle.classes))}.

## Quality on the sample
These rows were given to `import_model.py`; tabserve does not know whether the model was
trained on them. Figures from rows the model learnt flatter it: measure on rows it never saw
(`score.py` on a held-out file gives the probabilities to score).

{metrics}

Decision: {f"threshold {bundle.threshold:.4g} on the probability of {bundle.positive_class!r}" if bundle.threshold is not None else "the most probable class"}.

Most important fields ({effects.how}):
{_effects_table(effects)}

## Plots
{plots_md}

## Sensitive inputs
{('Fields whose names suggest a protected or sensitive attribute: ' + ', '.join(f'`{f.name}`' for f in sensitive) + '; using them, or fields that stand in for them, may be unlawful for some decisions.') if sensitive else 'No field name suggests a protected attribute; check the fields yourself, since others can stand in for one.'}
{failed}"""
