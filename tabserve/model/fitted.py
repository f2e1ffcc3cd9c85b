"""The fitted model as data: what each kind of model the service scores is made of, as arrays
and numbers, so that a bundle holds no Python objects (`model.archive` writes it, the scorers in
`serving.scorers` are built from it).

Every kind checks itself against the encoded width and the number of classes (`check`): a
crafted or damaged file is refused in one line at load, before a scorer indexes an array out of
range or walks a tree that loops. `model.from_sklearn` makes these from fitted scikit-learn and
XGBoost objects (training, import); the arrays are theirs, so the answers are theirs.
"""

from __future__ import annotations

from typing import ClassVar, Union

import msgspec
import numpy as np


class ModelFileError(ValueError):
    """The model part of a bundle is inconsistent; the message says what, in one line."""


class Blob:
    """Bytes kept as a member of their own in the bundle (not inside its JSON)."""

    suffix: ClassVar[str] = ".bin"

    def __init__(self, data: bytes):
        self.data = bytes(data)

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other.data == self.data

    def __reduce__(self):  # read by `model.digest` for the version id; never pickled
        return type(self), (self.data,)


class Ubjson(Blob):
    """An XGBoost booster saved by XGBoost itself (`save_raw("ubj")`), in older bundles."""

    suffix = ".ubj"


class Pickled(Blob):
    """A pickle: read only when the server is told to trust it (see `model.bundle`)."""

    suffix = ".pkl"


class OnnxGraph(Blob):
    """An ONNX graph's protobuf bytes: data, checked by `model.onnx_graph` before it is run."""

    suffix = ".onnx"


def outputs_of(n_classes: int) -> int:
    """Raw scores per record: the log-odds of the positive class when binary, one per class
    otherwise."""
    return 1 if n_classes == 2 else n_classes


def _expect(ok: bool, message: str) -> None:
    if not ok:
        raise ModelFileError(message)


def _vector(array: np.ndarray, name: str, length: int, kind: str = "f") -> None:
    _expect(array.ndim == 1 and len(array) == length and array.dtype.kind in kind,
            f"{name} must be {length} values of kind {kind!r}; it holds {array.shape} "
            f"{array.dtype}")


# XGBoost objectives whose trees a served model may hold (their margins are what is scored)
BOOSTED_OBJECTIVES = ("binary:logistic", "multi:softprob", "multi:softmax")
# a model's numbers beyond this are taken for a forged file: no fitted model needs them
SANE = 1e30


def _finite(array: np.ndarray, name: str, bound: float = SANE) -> None:
    _expect(bool(np.all(np.abs(array) <= bound)),
            f"{name} holds values that are not finite or beyond ±{bound:g}")


class LinearModel(msgspec.Struct, tag="linear", frozen=True):
    """Imputation by fixed values, hinge terms (`sklearn_steps.Hinges`), standardisation and a
    logistic model: a record's raw scores are `((expanded - mean) / scale) @ coef.T + intercept`,
    `expanded` being the imputed record followed by its hinge terms."""

    name: ClassVar[str] = "logistic regression"
    fill: np.ndarray            # per encoded column
    hinge_columns: np.ndarray   # per hinge term: the encoded column it bends
    hinge_knots: np.ndarray
    mean: np.ndarray            # per expanded column
    scale: np.ndarray
    coef: np.ndarray            # outputs × expanded columns
    intercept: np.ndarray       # per output

    def check(self, width: int, n_classes: int) -> None:
        _vector(self.fill, "linear fill", width)
        hinges = len(self.hinge_knots)
        _vector(self.hinge_columns, "linear hinge columns", hinges, "iu")
        _vector(self.hinge_knots, "linear hinge knots", hinges)
        _expect(bool(np.all((self.hinge_columns >= 0) & (self.hinge_columns < width))),
                "a linear hinge term bends a column the encoder does not have")
        expanded, outputs = width + hinges, outputs_of(n_classes)
        _vector(self.mean, "linear mean", expanded)
        _vector(self.scale, "linear scale", expanded)
        _expect(bool(np.all(self.scale != 0)), "a linear scale is 0")
        _expect(self.coef.shape == (outputs, expanded) and self.coef.dtype.kind == "f",
                f"linear coefficients must be {outputs} × {expanded}; they are "
                f"{self.coef.shape}")
        _vector(self.intercept, "linear intercept", outputs)
        for name in ("fill", "hinge_knots", "mean", "scale", "coef", "intercept"):
            _finite(getattr(self, name), f"linear {name}")


class BoostedTrees(msgspec.Struct, tag="boosted_trees", frozen=True):
    """XGBoost's trees as arrays (`model.xgboost_trees` reads a booster into them and writes
    back the document XGBoost reads, for batches and explanations). Nodes are numbered tree by
    tree, each tree breadth-first with a split's two children side by side: the k-th split of a
    tree has its children at 1 + 2k and 2 + 2k, so a tree of s splits has 1 + 2s nodes. Tree t
    adds to output t % outputs; a split sends `x < threshold` (float32) left, a missing value
    where `default_left` says; a leaf's `value` is what it adds. `cover` (the hessian sums
    under each node) weighs tree SHAP. `base_score` is XGBoost's, as its objective reads it;
    `base_margin` (per output) is what XGBoost's margin holds beyond the leaves, measured from
    the booster when the trees were written (`xgboost_trees.measured`), so serving needs no
    XGBoost to score them; None in files written before it was stored. XGBoost reads them
    only as `xgboost_trees.loaded_booster` writes them."""

    name: ClassVar[str] = "XGBoost"
    n_classes: int
    n_features: int
    objective: str
    base_score: list[float]
    node_counts: np.ndarray     # per tree
    left: np.ndarray            # per node, within its tree; -1 at a leaf
    feature: np.ndarray         # at a split: the column it reads
    threshold: np.ndarray       # at a split (float32)
    default_left: np.ndarray    # at a split: whether a missing value goes left
    value: np.ndarray           # at a leaf: its value (float32); at a split, its base weight
    cover: np.ndarray           # float32
    base_margin: Union[list[float], None] = None

    @property
    def outputs(self) -> int:
        return outputs_of(self.n_classes)

    def check(self, width: int, n_classes: int) -> None:
        _expect(self.n_features == width and self.n_classes == n_classes,
                f"the XGBoost model reads {self.n_features} columns for {self.n_classes} "
                f"classes; the schema encodes {width} columns for {n_classes}")
        _expect(self.objective in BOOSTED_OBJECTIVES,
                f"the XGBoost model's objective is {self.objective[:40]!r}; served objectives "
                f"are {', '.join(BOOSTED_OBJECTIVES)}")
        base = np.asarray(self.base_score, np.float64)
        _expect(len(base) in (1, self.outputs), f"the XGBoost model has {len(base)} base "
                                                f"scores for {self.outputs} outputs")
        _finite(base, "the XGBoost base score", 1e6)
        if self.base_margin is not None:
            margin = np.asarray(self.base_margin, np.float64)
            _expect(margin.shape == (self.outputs,), f"the XGBoost model has "
                    f"{len(margin)} base margins for {self.outputs} outputs")
            _finite(margin, "the XGBoost base margin", 1e6)
        if self.objective == "binary:logistic":
            _expect(bool(np.all((base > 0) & (base < 1))),
                    "the XGBoost base score of a binary model must lie between 0 and 1")
        counts = self.node_counts
        _expect(counts.ndim == 1 and len(counts) > 0 and counts.dtype.kind in "iu"
                and bool(np.all(counts > 0)) and len(counts) % self.outputs == 0,
                f"an XGBoost model needs trees of one node or more, {self.outputs} a round")
        nodes = int(counts.sum())
        _vector(self.left, "XGBoost left", nodes, "iu")
        _vector(self.feature, "XGBoost feature", nodes, "iu")
        _vector(self.default_left, "XGBoost default_left", nodes, "ub")
        for name in ("threshold", "value", "cover"):
            _vector(getattr(self, name), f"XGBoost {name}", nodes)
        # a threshold that parts missing values from every number is float32's largest
        _finite(self.threshold, "XGBoost threshold", float(np.finfo(np.float32).max))
        _finite(self.value, "XGBoost value")
        _finite(self.cover, "XGBoost cover")
        self._check_layout()

    def _check_layout(self) -> None:
        """Every tree breadth-first, children in pairs (see the class): a tree of s splits has
        1 + 2s nodes, the k-th split's left child is 1 + 2k and the split lies before it, so
        every node is reached once, from a node before it (no loop, nothing out of range)."""
        counts = self.node_counts.astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        tree_of = np.repeat(np.arange(len(counts)), counts)
        local = np.arange(len(tree_of)) - starts[tree_of]
        split = self.left >= 0
        _expect(bool(np.all(split | (self.left == -1))), "an XGBoost leaf's left child is not -1")
        splits_per_tree = np.bincount(tree_of, weights=split, minlength=len(counts))
        _expect(bool(np.all(counts == 1 + 2 * splits_per_tree.astype(np.int64))),
                "an XGBoost tree's nodes are not its splits' children and its root")
        before = np.concatenate([[0], np.cumsum(split)[:-1]])  # splits before each node
        rank = before - before[starts][tree_of]                 # k: the split's rank in its tree
        at = np.flatnonzero(split)
        _expect(bool(np.all((self.left[at] == 1 + 2 * rank[at]) & (local[at] <= 2 * rank[at]))),
                "an XGBoost tree is not numbered breadth-first with children in pairs")
        _expect(bool(np.all((self.feature[at] >= 0) & (self.feature[at] < self.n_features))),
                "an XGBoost split reads a column the encoder does not have")
        _expect(bool(np.all(self.default_left <= 1)), "XGBoost default_left must be 0 or 1")


class XGBoostFile(msgspec.Struct, tag="xgboost", frozen=True):
    """A booster as XGBoost saved it (UBJSON), as bundles held them before `BoostedTrees`:
    read by this package's bounded reader (`model.ubjson`), never by XGBoost, and turned into
    `BoostedTrees` as the bundle loads (`model.xgboost_trees.upgraded`)."""

    name: ClassVar[str] = "XGBoost"
    booster: Ubjson
    n_classes: int
    n_features: int

    def check(self, width: int, n_classes: int) -> None:
        raise ModelFileError("an XGBoost booster in its own format was not converted")


class Forest(msgspec.Struct, tag="forest", frozen=True):
    """A scikit-learn random forest (or extra trees, or one imported decision tree): its trees'
    nodes, tree after tree, each tree numbered as scikit-learn numbers it (a parent before its
    children; -1 for a leaf's children), its leaves holding class fractions. A record's
    probabilities are the mean of its leaves' fractions."""

    n_classes: int
    n_features: int
    node_counts: np.ndarray     # per tree
    left: np.ndarray            # per node, within its tree; -1 at a leaf
    right: np.ndarray
    feature: np.ndarray         # at a split: the column it reads
    threshold: np.ndarray       # at a split: `x <= threshold` goes left
    missing_left: np.ndarray    # at a split: whether a missing value goes left
    value: np.ndarray           # nodes × classes

    @property
    def name(self) -> str:
        return "decision tree" if len(self.node_counts) == 1 else "random forest"

    def check(self, width: int, n_classes: int) -> None:
        _expect(self.n_features == width and self.n_classes == n_classes,
                f"the forest reads {self.n_features} columns for {self.n_classes} classes; "
                f"the schema encodes {width} columns for {n_classes}")
        counts = self.node_counts
        _expect(counts.ndim == 1 and len(counts) > 0 and counts.dtype.kind in "iu"
                and bool(np.all(counts > 0)), "a forest needs trees of one node or more")
        nodes = int(counts.sum())
        for name in ("left", "right", "feature"):
            _vector(getattr(self, name), f"forest {name}", nodes, "iu")
        _vector(self.threshold, "forest threshold", nodes)
        _vector(self.missing_left, "forest missing_left", nodes, "ub")
        _expect(self.value.shape == (nodes, n_classes) and self.value.dtype.kind == "f",
                f"forest values must be {nodes} × {n_classes}; they are {self.value.shape}")
        _finite(self.value, "forest values", 1 + 1e-9)  # class fractions
        # scikit-learn parts missing values from all numbers with an infinite threshold
        _expect(not bool(np.any(np.isnan(self.threshold))), "a forest threshold is NaN")
        self.depths()  # every tree is a tree

    def depths(self) -> np.ndarray:
        """Each tree's depth, found by walking all trees level by level; refuses nodes that
        are not one tree each (a child numbered before its parent, outside its tree, reached
        twice or never), which could make a walk loop or read out of range."""
        counts = self.node_counts.astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        tree_of = np.repeat(np.arange(len(counts)), counts)
        split = self.left >= 0
        _expect(bool(np.all(split == (self.right >= 0))),
                "a forest node has one child: nodes have two or none")
        # scikit-learn's walk knows a leaf by -1 alone (any other negative child loops it)
        _expect(bool(np.all(split | ((self.left == -1) & (self.right == -1)))),
                "a forest leaf's children are not -1")
        at = np.flatnonzero(split)
        for children in (self.left[at], self.right[at]):
            _expect(bool(np.all((children > at - starts[tree_of[at]])
                                & (children < counts[tree_of[at]]))),
                    "a forest node's child lies outside its tree or before it")
        _expect(bool(np.all((self.feature[at] >= 0) & (self.feature[at] < self.n_features))),
                "a forest split reads a column the encoder does not have")
        reached = np.zeros(len(tree_of), np.int64)
        depth = np.zeros(len(counts), np.int64)
        level = starts
        while len(level):
            reached[level] += 1
            depth[np.unique(tree_of[level])] += 1
            inner = level[split[level]]
            offset = starts[tree_of[inner]]
            level = np.concatenate([self.left[inner] + offset, self.right[inner] + offset])
        _expect(bool(np.all(reached == 1)), "a forest node is reached twice or never")
        return depth - 1


class PickledSteps(msgspec.Struct, tag="pickled", frozen=True):
    """Fitted scikit-learn steps that are not translated to data (a custom transformer, say),
    pickled: served through their own `predict_proba`, and read only when trusted."""

    name: ClassVar[str] = "scikit-learn pipeline"
    steps: Pickled
    n_features: int

    def check(self, width: int, n_classes: int) -> None:
        _expect(self.n_features == width, f"the pickled steps read {self.n_features} columns; "
                                          f"the schema encodes {width}")


MarginModel = Union[LinearModel, BoostedTrees, XGBoostFile]


class BlendModel(msgspec.Struct, tag="blend", frozen=True):
    """Members whose raw scores are mixed by weight (`model.blend`)."""

    name: ClassVar[str] = "blend"
    members: list[MarginModel]
    weights: list[float]

    def check(self, width: int, n_classes: int) -> None:
        _expect(len(self.members) == len(self.weights) > 0,
                f"a blend has {len(self.members)} members and {len(self.weights)} weights")
        weights = np.asarray(self.weights, np.float64)
        _expect(bool(np.all((weights >= 0) & (weights <= 1)))
                and abs(float(weights.sum()) - 1) < 1e-6,
                "a blend's weights must be shares between 0 and 1 that add up to 1")
        for member in self.members:
            member.check(width, n_classes)


InnerModel = Union[LinearModel, BoostedTrees, XGBoostFile, Forest]


class LevelCodes(msgspec.Struct, frozen=True):
    """The model columns that hold a level's code, as an `OrdinalEncoder` made them: per such
    column, its code when none of its field's levels is set (an unseen level) and when its
    field is missing; per known level, its encoded 0/1 column and its code."""

    columns: np.ndarray     # the model columns that are codes
    unknown: np.ndarray     # per such column: an unseen level's code (NaN: missing)
    missing: np.ndarray     # per such column: a missing value's code (NaN: missing)
    missing_at: np.ndarray  # per such column: its field's "is missing" encoded column, or -1
    level_of: np.ndarray    # per level: which of `columns` it codes (an index into it)
    level_at: np.ndarray    # per level: its encoded 0/1 column
    code: np.ndarray        # per level: its code

    def check(self, width: int, model_columns: int) -> None:
        count, levels = len(self.columns), len(self.level_at)
        _vector(self.columns, "coded columns", count, "iu")
        for name in ("unknown", "missing"):
            _vector(getattr(self, name), f"codes' {name}", count)
        _vector(self.missing_at, "codes' missing columns", count, "iu")
        for name, kind in (("level_of", "iu"), ("level_at", "iu"), ("code", "f")):
            _vector(getattr(self, name), f"codes' {name}", levels, kind)
        _expect(bool(np.all((self.columns >= 0) & (self.columns < model_columns))
                     & np.all((self.missing_at >= -1) & (self.missing_at < width))
                     & np.all((self.level_of >= 0) & (self.level_of < count))
                     & np.all((self.level_at >= 0) & (self.level_at < width))),
                "an imported model's level codes point outside its columns")


class Adapted(msgspec.Struct, tag="adapted", frozen=True):
    """A model trained elsewhere on its own columns (`import_model.py`), behind the steps that
    make them from the encoded record: each of its columns is one encoded column (a number or
    a level's 0/1) or a level's code (`codes`), a missing value filled, then centred and
    scaled, as the user's `DictVectorizer`, `OneHotEncoder`, `OrdinalEncoder`, `SimpleImputer`,
    `StandardScaler` or `MinMaxScaler` made it: `(fill if missing else x - center) / scale`."""

    name: ClassVar[str] = "imported model"
    source: np.ndarray      # per model column: the encoded column it reads (a code's: one of
    #                         its field's levels, to credit explanations to)
    fill: np.ndarray        # per model column: the value of a missing one (NaN: left missing)
    center: np.ndarray
    scale: np.ndarray
    model: InnerModel
    codes: LevelCodes | None = None

    @property
    def inner_name(self) -> str:
        return self.model.name

    def check(self, width: int, n_classes: int) -> None:
        columns = len(self.source)
        _vector(self.source, "adapted source", columns, "iu")
        _expect(bool(np.all((self.source >= 0) & (self.source < width))),
                "an imported model reads a column the encoder does not have")
        for name in ("fill", "center", "scale"):
            _vector(getattr(self, name), f"adapted {name}", columns)
        _expect(bool(np.all(self.scale != 0)), "an imported model's scale is 0")
        for name in ("center", "scale"):
            _finite(getattr(self, name), f"adapted {name}")
        _expect(not bool(np.any(np.isinf(self.fill))), "an imported model's fill is infinite")
        if self.codes is not None:
            self.codes.check(width, columns)
        self.model.check(columns, n_classes)


class OwnModel(msgspec.Struct, tag="own", frozen=True):
    """A model trained elsewhere whose steps have no data form (a custom transformer, a
    classifier tabserve does not rebuild): pickled whole, served through its own
    `predict_proba` on its input fields rebuilt from the encoded record, and read only when
    trusted (`import_model.py`). A field is a number (its encoded column) or levels (one 0/1
    column each, from `columns[i]` on, and its "is missing" column, or -1). A missing level is
    given as NaN, or as `missing_text` to a model that reads no missing level (CatBoost's
    categorical features)."""

    name: ClassVar[str] = "imported model (served through its own predict_proba)"
    model: Pickled
    fields: list[str]           # the model's input fields, in the order it reads them
    columns: list[int]          # per field: its number's encoded column, or its first level's
    levels: list[list[str]]     # per field: its levels in encoded order ([] for a number)
    missing: list[int]          # per field: its "is missing" column (-1: none)
    takes_records: bool         # a DictVectorizer reads dicts (a missing value left out)
    missing_text: Union[str, None] = None

    def check(self, width: int, n_classes: int) -> None:
        _expect(self.missing_text is None or len(self.missing_text) <= 64,
                "an imported model's text for a missing level is over 64 characters")
        count = len(self.fields)
        _expect(len(self.columns) == len(self.levels) == len(self.missing) == count > 0,
                "an imported model's fields, columns and levels differ in number")
        for at, levels, missing in zip(self.columns, self.levels, self.missing):
            _expect(0 <= at and at + max(len(levels), 1) <= width and -1 <= missing < width,
                    "an imported model reads a column the encoder does not have")


class OnnxModel(OwnModel, tag="onnx", frozen=True):
    """An imported ONNX classifier graph, run by onnxruntime on its input fields rebuilt as an
    `OwnModel`'s are (a level as its text): each field the graph's input of its name, or all
    of them, in order, its one input. Data, not code: checked as hostile input at load
    (`model.onnx_graph`), and read without any trust."""

    name: ClassVar[str] = "imported ONNX graph (served by onnxruntime)"
    model: OnnxGraph

    def check(self, width: int, n_classes: int) -> None:
        from tabserve.model.onnx_graph import GraphRefused, OnnxClassifier

        super().check(width, n_classes)
        try:
            classifier = OnnxClassifier(self.model.data)
        except ImportError:
            raise ModelFileError("it is an ONNX graph, and onnxruntime is not installed here: "
                                 "pip install onnxruntime onnx (an image built with this model "
                                 "as its model.bin installs them)") from None
        except GraphRefused as err:
            raise ModelFileError(str(err)) from None
        _expect(len(classifier.classes) == n_classes,
                f"its ONNX graph has {len(classifier.classes)} classes; the bundle {n_classes}")
        _expect(classifier.by_name and sorted(classifier.fields) == sorted(self.fields)
                or not classifier.by_name and classifier.feeds[0].width in (None, len(self.fields)),
                "its ONNX graph's inputs are not the bundle's fields")


FittedModel = Union[LinearModel, BoostedTrees, XGBoostFile, Forest, BlendModel, Adapted,
                    PickledSteps, OnnxModel, OwnModel]
