"""The fitted model steps in a form with little per-call overhead, for serving.

scikit-learn re-validates its input on every call, which costs ~300 µs for a single record
through impute → scale → LogisticRegression: more than everything else in a request. The
forms here compute the same numbers (the parity test holds them to 1e-6 of the pipeline's
`predict_proba` on every training row) and fall back to the pipeline for any step layout
they do not know.
"""

from __future__ import annotations

import copy
import json
import math
import operator
import struct
from collections.abc import Callable

import numpy as np
from scipy.special import expit, softmax
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from tabserve.blend import TINY, Blend
from tabserve.encoding import Hinges

# A scorer maps an encoded matrix to class probabilities (float64, rows × classes) when
# called, and one encoded record (a list) to its probabilities with `row`. Scorers of single
# models also give raw scores (log-odds when binary, else a margin per class) with `margins`
# and `margins_row`, which a blend adds up (see `BlendScorer`).
Scorer = Callable[[np.ndarray], np.ndarray]


def probability_matrix(margins: np.ndarray) -> np.ndarray:
    """Class probabilities (rows × classes) from raw scores (rows × 1 when binary)."""
    if margins.shape[1] == 1:
        positive = expit(margins[:, 0])
        return np.column_stack([1.0 - positive, positive])
    return softmax(margins, axis=1)


def probabilities_from_margins(margins: list[float]) -> list[float]:
    """Class probabilities from one record's raw scores: the log-odds of the positive class
    (binary) or a margin per class. Plain Python: one record costs less without numpy."""
    if len(margins) == 1:
        score = margins[0]
        positive = 1.0 / (1.0 + math.exp(-score)) if score >= 0 else \
            math.exp(score) / (1.0 + math.exp(score))
        return [1.0 - positive, positive]
    top = max(margins)
    exps = [math.exp(margin - top) for margin in margins]
    total = sum(exps)
    return [e / total for e in exps]


class LinearScorer:
    """Median imputation, optional hinge terms (see `encoding.Hinges`), standardisation and a
    logistic model folded into one affine map of the imputed, hinged record."""

    def __init__(self, imputer: SimpleImputer, scaler: StandardScaler, model: LogisticRegression,
                 hinges: Hinges | None = None):
        self.fill = imputer.statistics_.astype(np.float64)
        self.hinge_columns = hinges.columns_ if hinges is not None else np.zeros(0, np.intp)
        self.hinge_knots = hinges.knots_ if hinges is not None else np.zeros(0)
        # the encoded column behind each column of the expanded record (for explanations)
        self.source_columns = np.concatenate([np.arange(len(self.fill)), self.hinge_columns])
        width = len(self.source_columns)
        mean = scaler.mean_ if scaler.with_mean else np.zeros(width)
        self.mean = mean  # of the expanded training matrix: the explanations' reference record
        scale = scaler.scale_ if scaler.with_std else np.ones(width)
        # ((x - mean) / scale) @ coef.T + intercept  ==  x @ weights + bias
        self.weights = (model.coef_ / scale).T
        self.bias = model.intercept_ - (mean / scale) @ model.coef_.T

        # plain-Python copies for `row`: one record costs less without numpy's per-call overhead
        self._fill_list = self.fill.tolist()
        self._hinge_list = list(zip(self.hinge_columns.tolist(), self.hinge_knots.tolist()))
        self._weights_lists = self.weights.T.tolist()
        self._bias_list = np.atleast_1d(self.bias).tolist()

    def expand(self, matrix: np.ndarray) -> np.ndarray:
        """Encoded records, imputed and with their hinge terms: what the weights apply to."""
        filled = np.where(np.isnan(matrix), self.fill, matrix)
        hinges = np.maximum(filled[:, self.hinge_columns] - self.hinge_knots, 0.0)
        return np.hstack([filled, hinges])

    def margins_row(self, x: list[float]) -> list[float]:
        """Raw scores of one encoded record (log-odds when binary)."""
        x = [fill if value != value else value for value, fill in zip(x, self._fill_list)]
        x += [max(x[column] - knot, 0.0) for column, knot in self._hinge_list]
        return [bias + sum(map(operator.mul, weights, x))
                for weights, bias in zip(self._weights_lists, self._bias_list)]

    def row(self, x: list[float]) -> list[float]:
        """Class probabilities for one encoded record."""
        return probabilities_from_margins(self.margins_row(x))

    def margins(self, matrix: np.ndarray) -> np.ndarray:
        """`expand(matrix) @ weights + bias`, without copying the matrix when nothing is
        missing or into one expanded matrix."""
        filled = np.where(np.isnan(matrix), self.fill, matrix) if np.isnan(matrix).any() \
            else matrix
        hinges = np.maximum(filled[:, self.hinge_columns] - self.hinge_knots, 0.0)
        width = len(self.fill)
        return filled @ self.weights[:width] + hinges @ self.weights[width:] + self.bias

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        return probability_matrix(self.margins(matrix))


class TreeArrays:
    """An XGBoost model's trees (or a scikit-learn forest's, `from_forest`) as arrays, walked
    for every tree at once with numpy.

    Exact: splits compare float32 values as XGBoost does, missing values follow each node's
    default branch, and the model's base margin is measured from the booster itself. For one
    record this costs a fraction of the booster's fixed set-up per call; for large batches the
    booster's own C++ walk is faster, so `BoosterScorer` uses each where it wins.

    Nodes are numbered tree by tree in one flat array, with a node's two children side by side
    ("yes" first), so a split's outcome is its left child's number plus 0 or 1; a leaf points to
    itself, so a walk is `depth` lookups of "the next node" with no test for having arrived.
    Each numpy call counts (in a server, caches are cold: ~5 µs a call), so the walk makes few.
    """

    def __init__(self, booster, n_classes: int):
        trees = [json.loads(dump) for dump in booster.get_dump(dump_format="json")]
        self._allocate(len(trees), max(_count_nodes(tree) for tree in trees))
        self.depth = max(self._fill(root, tree, [root + 1])
                         for root, tree in zip(self.roots.tolist(), trees))
        self.outputs = 1 if n_classes == 2 else n_classes  # tree t adds to output t % outputs
        reference = np.zeros(booster.num_features(), np.float32)
        from xgboost import DMatrix
        margin = booster.predict(DMatrix(reference[None, :]), output_margin=True).reshape(-1)
        self.base_margin = margin - self._sum_leaves(reference, has_nan=False)

    def _allocate(self, trees: int, size: int, leaf_width: int | None = None) -> None:
        count = trees * size
        self.roots = np.arange(trees, dtype=np.intp) * size
        self.feature = np.zeros(count, np.intp)
        self.threshold = np.full(count, np.nan, np.float32)  # at a leaf, `x >= NaN` is False
        self.left = np.arange(count)  # a leaf's next node is itself
        self.missing_no = np.zeros(count, bool)  # where a NaN goes (`NaN >= t` is False: "yes")
        self.leaf = np.zeros(count if leaf_width is None else (count, leaf_width), np.float64)

    @classmethod
    def from_forest(cls, forest) -> TreeArrays:
        """A scikit-learn forest's trees (RandomForest, ExtraTrees), their leaves holding class
        fractions divided by the number of trees: the walk's sum is `predict_proba` of one
        record. scikit-learn reads values as float32 and sends `x <= t` left, so a split's
        "no" side starts at the smallest float32 above t; a NaN goes where the tree says."""
        arrays = cls.__new__(cls)
        trees = [estimator.tree_ for estimator in forest.estimators_]
        arrays._allocate(len(trees), max(tree.node_count for tree in trees), forest.n_classes_)
        arrays.outputs, arrays.base_margin = forest.n_classes_, np.zeros(forest.n_classes_)
        arrays.depth = max(tree.max_depth for tree in trees)
        for root, tree in zip(arrays.roots.tolist(), trees):
            # scikit-learn numbers a parent before its children, so the k-th split in that
            # order puts its two children at root + 1 + 2k and the one after
            split = np.flatnonzero(tree.children_left >= 0)
            children = root + 1 + 2 * np.arange(len(split))
            at = np.empty(tree.node_count, np.intp)  # scikit-learn's node id → its place here
            at[0] = root
            at[tree.children_left[split]], at[tree.children_right[split]] = children, children + 1
            arrays.left[at[split]] = children
            arrays.feature[at[split]] = tree.feature[split]
            threshold = tree.threshold[split]
            above = threshold.astype(np.float32)
            above = np.where(above > threshold, above, np.nextafter(above, np.float32(np.inf)))
            # an infinite threshold parts the missing values from all numbers: every number goes
            # "yes" (left), as `x >= NaN` is False
            arrays.threshold[at[split]] = np.where(np.isinf(threshold), np.nan, above)
            arrays.missing_no[at[split]] = tree.missing_go_to_left[split] == 0
            leaf = np.flatnonzero(tree.children_left < 0)
            arrays.leaf[at[leaf]] = tree.value[leaf, 0, :forest.n_classes_] / len(trees)
        return arrays

    def _fill(self, at: int, node: dict, free: list[int]) -> int:
        """Put `node` at `at` and its subtree from `free[0]` on; the subtree's depth."""
        if "leaf" in node:
            self.leaf[at] = node["leaf"]
            return 0
        yes = self.left[at] = free[0]
        free[0] += 2
        self.feature[at] = int(node["split"].removeprefix("f"))
        self.threshold[at] = node["split_condition"]  # x < t goes "yes", as in XGBoost
        self.missing_no[at] = node["missing"] == node["no"]
        child = {c["nodeid"]: c for c in node["children"]}
        return 1 + max(self._fill(yes, child[node["yes"]], free),
                       self._fill(yes + 1, child[node["no"]], free))

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
    # level by level, beats testing every node first (measured on a RandomForest of 300
    # trees of depth ~20: 0.13 against 1 ms); XGBoost's trees, depth 7 at most, stay below
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

    def margins(self, x: list[float]) -> np.ndarray:
        """Raw scores of one encoded record, as the booster's `output_margin=True` gives them
        (for a scikit-learn forest: its class probabilities)."""
        with np.errstate(over="ignore"):  # beyond float32 becomes ±inf, as XGBoost reads it
            values = np.array(x, np.float32)
        return self._sum_leaves(values, any(map(math.isnan, x))) + self.base_margin


class TreeCode:
    """A small forest as one generated Python function of nested `if`s, for one record.

    In a server, caches are cold between requests, and each of the array walk's numpy calls
    pays for it; plain comparisons cost less there until the forest grows large (+13%
    requests/s for the default model's 183 trees of depth 3, in an A/B run of the real
    service against the array walk). Exact: the record's values
    are rounded to float32 (`struct`) before they are compared with the float32 thresholds, as
    XGBoost does, and a missing value takes each node's default branch.
    """

    # trees × depth; larger forests are walked as arrays. In-process with cold caches the two
    # are even at the default model's 549 and the arrays lead by 20% at 1,000 and beyond
    MAX_VISITS = 1000

    def __init__(self, arrays: TreeArrays, width: int):
        self.format = f"{width}f"
        self.base_margin = arrays.base_margin.tolist()
        feature, left, leaf = arrays.feature.tolist(), arrays.left.tolist(), arrays.leaf.tolist()
        threshold = arrays.threshold.astype(np.float64).tolist()  # exact: float32 in a double
        missing_no = arrays.missing_no.tolist()

        def node(i: int, indent: str, output: int) -> None:
            if left[i] == i:
                lines.append(f"{indent}s{output} += {leaf[i]!r}")
                return
            test = f"x[{feature[i]}] < {threshold[i]!r}"  # NaN < t is False: the "no" branch
            lines.append(f"{indent}if {test}:" if missing_no[i] else
                         f"{indent}if not x[{feature[i]}] >= {threshold[i]!r}:")
            node(left[i], indent + " ", output)
            lines.append(f"{indent}else:")
            node(left[i] + 1, indent + " ", output)

        outputs = range(arrays.outputs)
        lines = ["def walk(x):", *(f" s{k} = 0.0" for k in outputs)]
        for tree, root in enumerate(arrays.roots.tolist()):
            node(root, " ", tree % arrays.outputs)
        lines.append(f" return ({''.join(f's{k}, ' for k in outputs)})")
        namespace: dict = {}
        exec(compile("\n".join(lines), "<trees>", "exec"), namespace)  # noqa: S102 - our own code
        self.walk = namespace["walk"]

    @classmethod
    def fits(cls, arrays: TreeArrays) -> bool:
        return len(arrays.roots) * arrays.depth <= cls.MAX_VISITS

    def margins(self, x: list[float]) -> list[float]:
        """Raw scores of one encoded record, as the booster's `output_margin=True` gives them."""
        values = struct.unpack(self.format, struct.pack(self.format, *x))
        return [score + base for score, base in zip(self.walk(values), self.base_margin)]


class TreeTables:
    """A forest of small trees (at most 8 splits each) scored for a batch as table lookups.

    Every distinct split of the forest is tested once for all records (a bit: does the record
    take the "no" branch). A tree's split bits form a byte, and a table made at load time holds
    the leaf that each value of the byte leads to, so each tree costs one lookup per record
    instead of a walk. Exact as `TreeArrays` is: float32 comparisons, default branches
    for missing values, the base margin measured from the booster. For the default Telco model
    (183 trees of depth 3) a batch of 1,000 costs ~0.5 ms here against ~1.0 ms in the booster.
    """

    MAX_SPLITS = 8           # per tree: its bits fill one byte
    # bits gathered per pass (slots × trees × records): passes of ~200 records keep their arrays
    # in cache and off fresh pages (with one pass of 1,000 a batch took 3× longer once warm)
    CHUNK_BYTES = 1 << 18

    def __init__(self, arrays: TreeArrays):
        self.outputs, self.base_margin = arrays.outputs, arrays.base_margin
        left = arrays.left
        splits: dict[tuple, int] = {}           # (feature, threshold, NaN goes "no") → bit row
        slot_of = np.full(len(left), self.MAX_SPLITS)  # a leaf's bit: past the byte, always 0
        split_at = []                                 # per tree, the bit row of each split
        for root in arrays.roots.tolist():
            nodes = self._internal(root, left)
            for slot, node in enumerate(nodes):
                slot_of[node] = slot
            key = zip(arrays.feature[nodes].tolist(), arrays.threshold[nodes].tolist(),
                      arrays.missing_no[nodes].tolist())
            split_at.append([splits.setdefault(k, len(splits)) for k in key])
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
        self.tables = arrays.leaf[node].reshape(-1)  # tree t's table starts at t << slots
        # narrow offsets make narrow indices: adding them to the codes costs a fifth of intp's
        index_type = np.uint16 if self.tables.size <= 1 << 16 else np.int32
        self.offsets = (np.arange(len(split_at)) << self.slots).astype(index_type)[:, None]

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


def _count_nodes(tree: dict) -> int:
    return 1 + sum(_count_nodes(child) for child in tree.get("children", ()))


class BoosterScorer:
    """XGBoost's booster called directly (skips the scikit-learn wrapper's checks). One record
    is scored by the trees as code (`TreeCode`) or, for large forests, as arrays
    (`TreeArrays`); a batch by table lookups (`TreeTables`) when every tree is small."""

    def __init__(self, model):
        # a copy: its thread count changes, and the bundle's model must stay as saved (its
        # bytes are the model version)
        self.booster = model.get_booster().copy()
        self.booster.set_param({"nthread": 1})  # one thread per worker process
        self.arrays = TreeArrays(self.booster, len(model.classes_))
        self.code = TreeCode(self.arrays, self.booster.num_features()) \
            if TreeCode.fits(self.arrays) else None
        tables = TreeTables(self.arrays)
        self.tables = tables if tables.fits else None

    def margins_row(self, x: list[float]) -> list[float]:
        if self.code is not None:
            return self.code.margins(x)
        return self.arrays.margins(x).tolist()

    def row(self, x: list[float]) -> list[float]:
        return probabilities_from_margins(self.margins_row(x))

    def margins(self, matrix: np.ndarray) -> np.ndarray:
        if self.tables is not None:
            return self.tables.margins(matrix)
        margins = self.booster.inplace_predict(matrix, predict_type="margin")
        return np.asarray(margins, np.float64).reshape(len(matrix), -1)

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        return probability_matrix(self.margins(matrix))


def compile_steps(steps: Pipeline) -> Scorer:
    """The fastest exact scorer for the pipeline steps after the encoder."""
    kinds = [type(step) for _, step in steps.steps]
    fitted = [step for _, step in steps.steps]
    if kinds in ([SimpleImputer, StandardScaler, LogisticRegression],
                 [SimpleImputer, Hinges, StandardScaler, LogisticRegression]):
        imputer, *hinges, scaler, model = fitted
        if imputer.strategy in ("median", "mean") and not imputer.add_indicator:
            return LinearScorer(imputer, scaler, model, *hinges)
    if len(kinds) == 1 and hasattr(steps.steps[0][1], "get_booster"):
        return BoosterScorer(steps.steps[0][1])
    if kinds == [Blend]:
        blend = steps.steps[0][1]
        return BlendScorer([compile_steps(member) for member in blend.members], blend.weights)
    name, model = steps.steps[-1]
    if hasattr(model, "n_jobs"):
        # workers are processes: one thread each, set on a shallow copy (the fitted trees
        # are shared) so the bundle's model stays as saved
        model = copy.copy(model)
        model.n_jobs = 1
        steps = Pipeline([*steps.steps[:-1], (name, model)])
    if len(kinds) == 1 and isinstance(model, (RandomForestClassifier, ExtraTreesClassifier)):
        return ForestScorer(steps)
    return PipelineScorer(steps)


class PipelineScorer:
    """Any other fitted steps, called through scikit-learn."""

    def __init__(self, steps: Pipeline):
        self.steps = steps

    def row(self, x: list[float]) -> list[float]:
        return self(np.array([x]))[0].tolist()

    def margins_row(self, x: list[float]) -> list[float]:
        return self.margins(np.array([x]))[0].tolist()

    def margins(self, matrix: np.ndarray) -> np.ndarray:
        logs = np.log(np.clip(self(matrix), TINY, 1.0))
        return logs[:, 1:] - logs[:, :1] if logs.shape[1] == 2 else logs

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        return np.asarray(self.steps.predict_proba(matrix), dtype=np.float64)


class ForestScorer(PipelineScorer):
    """A scikit-learn forest: one record walks its trees as arrays (`TreeArrays.from_forest`;
    0.13 ms instead of ~10 ms for 300 trees through `predict_proba`, which calls each tree in
    turn). A batch calls each tree's own C walk, as the forest does, without joblib's set-up
    per tree (~60 µs): 41 → 26 ms for 1,000 Telco records and 300 trees, the same numbers."""

    def __init__(self, steps: Pipeline):
        super().__init__(steps)
        self.forest = steps.steps[0][1]
        self.arrays = TreeArrays.from_forest(self.forest)

    def row(self, x: list[float]) -> list[float]:
        return self.arrays.margins(x).tolist()  # the leaves hold fractions: the sum is proba

    def margins_row(self, x: list[float]) -> list[float]:
        logs = np.log(np.clip(self.arrays.margins(x), TINY, 1.0))
        return (logs[1:] - logs[:1] if len(logs) == 2 else logs).tolist()

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        # scikit-learn refuses numbers beyond float32's range (its cast makes them infinite);
        # every split sends them where it sends float32's largest, as the walk of `row` does
        limit = np.finfo(np.float32).max
        # the forest's `predict_proba` step by step: its input check's float32 copy, each
        # tree's fractions added up in order, the mean (so the sums are the same to the bit)
        records = np.ascontiguousarray(np.clip(matrix, -limit, limit), dtype=np.float32)
        total = np.zeros((len(records), self.forest.n_classes_))
        for tree in self.forest.estimators_:
            total += tree.predict_proba(records, check_input=False)
        return total / len(self.forest.estimators_)


class BlendScorer:
    """Each member of a `blend.Blend` in its own fast form, mixed as the blend mixes them."""

    def __init__(self, members: list, weights: list[float]):
        self.members = members
        self.weights = weights

    def row(self, x: list[float]) -> list[float]:
        """The weighted sum of the members' raw scores: the same as mixing their probabilities
        in log space (`blend.combine`), with fewer logs and exps."""
        margins = [member.margins_row(x) for member in self.members]
        mixed = [sum(weight * m[k] for weight, m in zip(self.weights, margins))
                 for k in range(len(margins[0]))]
        return probabilities_from_margins(mixed)

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        return probability_matrix(sum(weight * member.margins(matrix)
                                      for weight, member in zip(self.weights, self.members)))


class CalibratedScorer:
    """A binary scorer followed by the bundle's Platt scaling (see `decision`)."""

    def __init__(self, inner, calibration):
        self.inner = inner
        self.calibration = calibration

    def row(self, x: list[float]) -> list[float]:
        positive = self.calibration.apply_one(self.inner.row(x)[1])
        return [1.0 - positive, positive]

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        positive = self.calibration.apply(self.inner(matrix)[:, 1])
        return np.column_stack([1.0 - positive, positive])
