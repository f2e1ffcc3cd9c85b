"""XGBoost's trees in the forms that score them fastest, all exact (float32 comparisons and
default branches for missing values, as XGBoost does): one record walks them as arrays
(`TreeArrays`); a batch is table lookups (`TreeTables`) or the booster's own walk.
`BoosterScorer` picks per path; docs/performance.md says what each earns."""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np

from tabserve.model.fitted import BoostedTrees, Forest
from tabserve.model.xgboost_trees import loaded_booster, measured
from tabserve.serving.scorers.base import probabilities_from_margins, probability_matrix

TREE_TABLES = "tree_tables"  # its name for `speedups_off`
TREE_GROUPS = "tree_groups"  # ditto: a lookup per tree, not per group of small trees


class TreeArrays:
    """An XGBoost model's trees (or a scikit-learn forest's, `from_forest`) as arrays, walked
    for every tree at once with numpy.

    Exact: splits compare float32 values as XGBoost does, missing values follow each node's
    default branch, and the model's base margin is measured from the booster itself. For one
    record this skips the booster's fixed set-up per call.

    Nodes are numbered tree by tree in one flat array, with a node's two children side by side
    ("yes" first), so a split's outcome is its left child's number plus 0 or 1; a leaf points to
    itself, so a walk is `depth` lookups of "the next node" with no test for having arrived.
    Each numpy call counts (in a server, caches are cold: ~5 µs a call), so the walk makes few.
    """

    def __init__(self, trees: BoostedTrees):
        """XGBoost's trees from their checked arrays (a file's trees written before their base
        margin was stored have it measured here, which loads XGBoost)."""
        counts = trees.node_counts.astype(np.intp)
        self._allocate(len(counts), int(counts.max()))
        self.outputs = trees.outputs  # tree t adds to output t % outputs
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        tree_of = np.repeat(np.arange(len(counts)), counts)
        at = self.roots[tree_of] + np.arange(counts.sum()) - starts[tree_of]  # node → here
        split = trees.left >= 0
        self.left[at[split]] = self.roots[tree_of[split]] + trees.left[split]
        self.feature[at[split]] = trees.feature[split]
        self.threshold[at[split]] = trees.threshold[split]  # x < t goes "yes", as in XGBoost
        self.missing_no[at[split]] = trees.default_left[split] == 0
        self.leaf[at[~split]] = trees.value[~split]
        self.depth = _depth(trees.left, starts, tree_of)
        if trees.base_margin is None:
            trees = measured(trees)
        self.base_margin = np.asarray(trees.base_margin, np.float64)

    def _allocate(self, trees: int, size: int, leaf_width: int | None = None) -> None:
        count = trees * size
        self.roots = np.arange(trees, dtype=np.intp) * size
        self.feature = np.zeros(count, np.intp)
        self.threshold = np.full(count, np.nan, np.float32)  # at a leaf, `x >= NaN` is False
        self.left = np.arange(count)  # a leaf's next node is itself
        self.missing_no = np.zeros(count, bool)  # where a NaN goes (`NaN >= t` is False: "yes")
        self.leaf = np.zeros(count if leaf_width is None else (count, leaf_width), np.float64)

    @classmethod
    def from_forest(cls, forest: Forest) -> TreeArrays:
        """A scikit-learn forest's trees (RandomForest, ExtraTrees, as `model.fitted.Forest`),
        their leaves holding class fractions divided by the number of trees: the walk's sum is
        `predict_proba` of one record. scikit-learn reads values as float32 and sends
        `x <= t` left, so a split's "no" side starts at the smallest float32 above t; a NaN
        goes where the tree says."""
        arrays = cls.__new__(cls)
        counts = forest.node_counts.tolist()
        arrays._allocate(len(counts), max(counts), forest.n_classes)
        arrays.outputs, arrays.base_margin = forest.n_classes, np.zeros(forest.n_classes)
        arrays.depth = int(forest.depths().max())
        for root, (start, stop) in zip(arrays.roots.tolist(), tree_spans(forest)):
            left, right = forest.left[start:stop], forest.right[start:stop]
            # scikit-learn numbers a parent before its children, so the k-th split in that
            # order puts its two children at root + 1 + 2k and the one after
            split = np.flatnonzero(left >= 0)
            children = root + 1 + 2 * np.arange(len(split))
            at = np.empty(stop - start, np.intp)  # scikit-learn's node id → its place here
            at[0] = root
            at[left[split]], at[right[split]] = children, children + 1
            arrays.left[at[split]] = children
            arrays.feature[at[split]] = forest.feature[start:stop][split]
            threshold = forest.threshold[start:stop][split]
            above = threshold.astype(np.float32)
            above = np.where(above > threshold, above, np.nextafter(above, np.float32(np.inf)))
            # an infinite threshold parts the missing values from all numbers: every number goes
            # "yes" (left), as `x >= NaN` is False
            arrays.threshold[at[split]] = np.where(np.isinf(threshold), np.nan, above)
            arrays.missing_no[at[split]] = forest.missing_left[start:stop][split] == 0
            leaf = np.flatnonzero(left < 0)
            arrays.leaf[at[leaf]] = forest.value[start:stop][leaf] / len(counts)
        return arrays

    def _sum_leaves(self, x: np.ndarray, has_nan: bool) -> np.ndarray:
        """The leaves' sum per output for one record (float32 values, as XGBoost reads them)."""
        if self.depth > self.DEEP:
            return self._sum_leaves_by_level(x, has_nan)
        value = x.take(self.feature)
        go_no = value >= self.threshold
        if has_nan:
            go_no = np.where(np.isnan(value), self.missing_no, go_no)
        following = self.left + go_no
        node = self.roots
        for _ in range(self.depth):
            node = following.take(node)
        return np.add.reduce(self.leaf[node].reshape(-1, self.outputs), axis=0)

    # beyond this depth trees have so many nodes that testing only the nodes a walk reaches,
    # level by level, beats testing every node first (deep scikit-learn forests; XGBoost's
    # trees, depth 7 at most, stay below)
    DEEP = 12

    def _sum_leaves_by_level(self, x: np.ndarray, has_nan: bool) -> np.ndarray:
        node = self.roots
        for _ in range(self.depth):
            value = x.take(self.feature.take(node))
            go_no = value >= self.threshold.take(node)
            if has_nan:
                go_no = np.where(np.isnan(value), self.missing_no.take(node), go_no)
            node = self.left.take(node) + go_no
        return np.add.reduce(self.leaf[node].reshape(-1, self.outputs), axis=0)

    def margins_row(self, x: list[float]) -> np.ndarray:
        """Raw scores of one encoded record, as the booster's `output_margin=True` gives them
        (for a scikit-learn forest: its class probabilities)."""
        with np.errstate(over="ignore"):  # beyond float32 becomes ±inf, as XGBoost reads it
            values = np.array(x, np.float32)
        return self._sum_leaves(values, any(map(math.isnan, x))) + self.base_margin


class TreeTables:
    """A forest of small trees (at most 8 distinct splits each) scored for a batch as table
    lookups.

    Every distinct split of the forest is tested once for all records (a bit: does the record
    take the "no" branch). A tree's split bits form a byte, and a table made at load time holds
    the leaf that each value of the byte leads to, so each tree costs one lookup per record
    instead of a walk. Nodes of a tree that test the same split share its bit: a symmetric
    tree of depth 6 (CatBoost's), 63 nodes, needs 6. Exact as `TreeArrays` is: float32 comparisons, default branches
    for missing values, the base margin measured from the booster.
    """

    MAX_SPLITS = 8           # distinct splits per tree: their bits fill one byte
    # bits gathered per pass (slots × trees × records): passes of ~200 records keep their arrays
    # in cache and off fresh pages
    CHUNK_BYTES = 1 << 18

    def __init__(self, arrays: TreeArrays, grouped: bool = True):
        self.outputs, self.base_margin = arrays.outputs, arrays.base_margin
        left = arrays.left
        splits: dict[tuple, int] = {}           # (feature, threshold, NaN goes "no") → bit row
        slot_of = np.full(len(left), self.MAX_SPLITS)  # a leaf's bit: past the byte, always 0
        split_at = []                                 # per tree, the bit row of each split
        for root in arrays.roots.tolist():
            nodes = self._internal(root, left)
            key = zip(arrays.feature[nodes].tolist(), arrays.threshold[nodes].tolist(),
                      arrays.missing_no[nodes].tolist())
            rows = [splits.setdefault(k, len(splits)) for k in key]
            slot_of_row = {row: slot for slot, row in enumerate(dict.fromkeys(rows))}
            slot_of[nodes] = [slot_of_row[row] for row in rows]
            split_at.append(list(slot_of_row))
        # the bits of a tree's code: 7 for trees of depth 3 (at least one: a forest of stumps)
        self.slots = max(1, max(map(len, split_at), default=0))
        self.fits = self.slots <= self.MAX_SPLITS
        if not self.fits:
            return
        # slots × trees; a tree with fewer splits reads the last row, all zeros, for the rest
        self.split_at = np.array([rows + [len(splits)] * (self.slots - len(rows))
                                  for rows in split_at], np.intp).T.copy()
        feature, threshold, missing_no = zip(*splits) if splits else ((), (), ())
        self.feature = np.array(feature, np.intp)
        self.threshold = np.array(threshold, np.float32)[:, None]
        self.missing_no = np.array(missing_no, bool)
        # walk every tree for every byte at once: the leaf each byte leads to
        codes = np.arange(1 << self.slots)
        node = np.repeat(arrays.roots[:, None], len(codes), axis=1)
        for _ in range(arrays.depth):
            node = np.where(left[node] == node, node, left[node] + (codes >> slot_of[node] & 1))
        self._group(arrays.leaf[node], len(splits), grouped)
        # narrow offsets make narrow indices, which cost less to add to the codes than intp's
        index_type = np.uint16 if self.tables.size <= 1 << 16 else np.int32
        self.offsets = (np.arange(self.split_at.shape[1]) << self.slots).astype(index_type)[:, None]

    def _group(self, tables: np.ndarray, no_split: int, grouped: bool) -> None:
        """Trees whose splits fit one byte together share it: a byte and a lookup per group,
        its table the sum of their leaves (two trees of 3 splits: 6 bits, 64 sums). A group
        holds consecutive trees of one output, so group g still adds to output g % outputs;
        the last is filled with trees that read no split and add 0."""
        per_group = self.MAX_SPLITS // self.slots if grouped else 1
        outputs, bits = self.outputs, self.slots
        rounds = self.split_at.shape[1] // outputs
        pad = -rounds % per_group
        split_at = np.pad(self.split_at.reshape(bits, rounds, outputs), ((0, 0), (0, pad), (0, 0)),
                          constant_values=no_split)
        groups = (rounds + pad) // per_group
        self.split_at = (split_at.reshape(bits, groups, per_group, outputs)
                         .transpose(2, 0, 1, 3).reshape(per_group * bits, groups * outputs).copy())
        tables = np.pad(tables.reshape(rounds, outputs, 1 << bits), ((0, pad), (0, 0), (0, 0)))
        tables = tables.reshape(groups, per_group, outputs, 1 << bits)
        self.slots = per_group * bits
        codes = np.arange(1 << self.slots)
        summed = sum(tables[:, i][..., codes >> (i * bits) & (1 << bits) - 1]
                     for i in range(per_group))
        self.tables = summed.reshape(-1)  # group g's table starts at g << slots

    @staticmethod
    def _internal(root: int, left: np.ndarray) -> list[int]:
        """The split nodes of the tree at `root`."""
        nodes, stack = [], [root]
        while stack:
            node = stack.pop()
            if left[node] != node:
                nodes.append(node)
                stack += [left[node], left[node] + 1]
        return nodes

    def margins(self, matrix: np.ndarray) -> np.ndarray:
        """Raw scores (records × outputs), as the booster's `predict_type="margin"` gives them."""
        with np.errstate(over="ignore"):  # beyond float32 becomes ±inf, as XGBoost reads it
            columns = np.ascontiguousarray(matrix.T, dtype=np.float32)  # features × records
        trees = self.split_at.shape[1]
        step = max(8, self.CHUNK_BYTES // (self.slots * trees) // 8 * 8)
        # the splits that send a missing value "no" and meet one in this batch (usually none)
        nan_splits = np.flatnonzero(np.isnan(columns).any(axis=1)[self.feature] & self.missing_no)
        sums = [self._sums(columns[:, start:start + step], nan_splits)
                for start in range(0, columns.shape[1], step)]
        if not sums:  # no records
            return np.zeros((0, self.outputs)) + self.base_margin
        return np.concatenate(sums, axis=1).T + self.base_margin

    def _sums(self, columns: np.ndarray, nan_splits: np.ndarray) -> np.ndarray:
        """The leaves' sums (outputs × records) for a chunk of records (features × records)."""
        records = columns.shape[1]
        values = columns.take(self.feature, axis=0)  # one row per distinct split
        bits = np.zeros((len(values) + 1, -(-records // 8) * 8), bool)  # whole 8-byte words
        np.greater_equal(values, self.threshold, out=bits[:-1, :records])
        if len(nan_splits):
            bits[nan_splits, :records] |= np.isnan(values[nan_splits])
        # slots × trees × records bytes of 0/1, read as words: shifting a word by the slot
        # shifts each of its bytes' bit without carrying into the next byte
        gathered = bits.take(self.split_at, axis=0).view(np.uint64)
        code = gathered[0].copy()
        for slot in range(1, self.slots):
            code |= gathered[slot] << np.uint64(slot)
        codes = code.view(np.uint8)[:, :records]
        # every index is in range by construction; "clip" skips numpy's per-index bounds error
        leaves = self.tables.take(codes + self.offsets, mode="clip")  # trees × records
        return leaves.reshape(-1, self.outputs, records).sum(axis=0)


def tree_spans(forest: Forest) -> list[tuple[int, int]]:
    """Where each tree's nodes start and stop in the forest's arrays."""
    stops = np.cumsum(forest.node_counts).tolist()
    return list(zip([0, *stops[:-1]], stops))


def _depth(left: np.ndarray, starts: np.ndarray, tree_of: np.ndarray) -> int:
    """The deepest tree's depth (BoostedTrees' layout: a split lies before its children)."""
    depth = np.zeros(len(left), np.intp)
    split = np.flatnonzero(left >= 0)
    children = starts[tree_of[split]] + left[split]
    for parent, child in zip(split.tolist(), children.tolist()):
        depth[child] = depth[child + 1] = depth[parent] + 1
    return int(depth.max())


class BoosterScorer:
    """XGBoost's booster called directly (skips the scikit-learn wrapper's checks). One record
    walks the trees as arrays (`TreeArrays`); a batch is table lookups (`TreeTables`) when
    every tree is small, unless `speedups_off` names `TREE_TABLES` (the benchmark's ablation
    runs)."""

    def __init__(self, model: BoostedTrees, speedups_off: frozenset[str] = frozenset()):
        self.model = model
        self.arrays = TreeArrays(model)
        tables = TreeTables(self.arrays, TREE_GROUPS not in speedups_off)
        self.tables = tables if tables.fits and TREE_TABLES not in speedups_off else None
        if self.tables is None:  # batches go to the booster: ready before the first one
            self.booster = loaded_booster(model)

    @cached_property
    def booster(self):
        """XGBoost's booster, loaded (with XGBoost) for what the arrays do not do: batches of
        trees too large for tables, and explanations."""
        return loaded_booster(self.model)

    def margins_row(self, x: list[float]) -> list[float]:
        return self.arrays.margins_row(x).tolist()

    def row(self, x: list[float]) -> list[float]:
        return probabilities_from_margins(self.margins_row(x))

    def margins(self, matrix: np.ndarray) -> np.ndarray:
        if self.tables is not None:
            return self.tables.margins(matrix)
        margins = self.booster.inplace_predict(matrix, predict_type="margin")
        return np.asarray(margins, np.float64).reshape(len(matrix), -1)

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        return probability_matrix(self.margins(matrix))

    def contributions(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact tree SHAP values from the booster (`pred_contribs`); its bias is the base."""
        # XGBoost works in float32 and its DMatrix refuses what float32 cannot hold; a
        # clipped value takes the same branches as the number it stands for
        limit = float(np.finfo(np.float32).max)
        import xgboost

        raw = self.booster.predict(xgboost.DMatrix(np.clip(matrix, -limit, limit),
                                                   missing=np.nan), pred_contribs=True)
        if raw.ndim == 2:  # binary: records × (columns + bias)
            raw = raw[:, None, :]
        return raw[:, :, :-1].astype(np.float64), raw[:, :, -1].astype(np.float64)
