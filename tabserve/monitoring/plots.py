"""Small bar charts of binned distributions: the training rows' (the model card), and beside
them the rows of a new file (`monitor.py`'s report). Needs matplotlib (Pipfile's tools)."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

# a figure shows at most this many fields: 752 took 100 s to plot in training's report and
# 4 minutes (1.3 GB) in monitor.py's, where reading the data took 3 s
PLOTTED_FIELDS = 30


def plot_distributions(distributions: list[dict[str, Any]], path: Path, title: str) -> None:
    """`distributions_figure`, written to `path` as PNG."""
    distributions_figure(distributions, title).savefig(path, dpi=90)


def distributions_figure(distributions: list[dict[str, Any]], title: str):
    """One small chart per distribution: `{"field", "bins": [{"bin", "reference_share",
    "share" (optional)}], "psi" (optional)}`, in a grid under `title`."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display

    columns = 3
    rows = math.ceil(len(distributions) / columns)
    # constrained layout keeps the title above the first row and makes room for the labels
    fig = Figure(figsize=(4.2 * columns, 3.0 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax, dist in zip(axes.flat, distributions):
        bins = [b for b in dist["bins"] if b["reference_share"] or b.get("share")]
        at = range(len(bins))
        compared = "share" in dist["bins"][0]
        width = 0.4 if compared else 0.8
        ax.bar([x - width / 2 if compared else x for x in at],
               [b["reference_share"] for b in bins], width, label="training", color="#9db4d3")
        if compared:
            ax.bar([x + width / 2 for x in at], [b["share"] for b in bins], width,
                   label="now", color="#d9534f")
        psi = dist.get("psi")
        ax.set_title(dist["field"] + (f"  (PSI {psi:.3f})" if psi is not None else ""),
                     fontsize=9)
        ax.set_xticks(list(at))
        ax.set_xticklabels([_bin_label(b["bin"]) for b in bins], rotation=60, ha="right",
                           fontsize=6, rotation_mode="anchor")
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(distributions):]:
        ax.set_visible(False)
    if distributions and "share" in distributions[0]["bins"][0]:
        axes.flat[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=11)
    return fig


def _bin_label(name: str) -> str:
    """A bin's name on at most two lines of 18 characters (`0.0132631 to < 0.0241` whole),
    broken at a space or after a `_` (`no_internet_` / `service`), cut with an ellipsis only
    beyond that."""
    lines = textwrap.wrap(name.replace("_", "_ "), 18, max_lines=2, placeholder="…")
    return "\n".join(line.replace("_ ", "_") for line in lines) or name
