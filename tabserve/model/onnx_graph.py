"""ONNX classifier graphs (as skl2onnx and onnxmltools write them), read as hostile input and
served by onnxruntime (docs/import.md).

A graph is data: protobuf, parsed by `onnx`, never code. What a file could still do to the
service is bounded before onnxruntime sees it: its size, the operators it may use (those that
classifier converters write, each of them bounded by its inputs: no loops, no subgraphs, no
shapes made from numbers, so no graph allocates more than its records and its own weights),
no custom domains or functions (no operator library is loaded), no tensor read from another
file. `onnx` and `onnxruntime` are imported here only, and only where an ONNX model is served.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_GRAPH_BYTES = 256 * 1024 * 1024
STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")
# what skl2onnx and onnxmltools write for classifiers and their preprocessing
ALLOWED_OPERATORS = frozenset({
    # ai.onnx.ml
    "ArrayFeatureExtractor", "Binarizer", "CastMap", "CategoryMapper", "DictVectorizer",
    "FeatureVectorizer", "Imputer", "LabelEncoder", "LinearClassifier", "LinearRegressor",
    "Normalizer", "OneHotEncoder", "Scaler", "SVMClassifier", "TreeEnsembleClassifier",
    "TreeEnsemble", "TreeEnsembleRegressor", "ZipMap",
    # ai.onnx: element-wise arithmetic, casts, joins and reductions along the records' axes
    "Abs", "Add", "And", "ArgMax", "ArgMin", "Cast", "CastLike", "Ceil", "Clip", "Concat",
    "Constant", "Div", "Equal", "Erf", "Exp", "Flatten", "Floor", "Gather", "GatherElements",
    "Gemm", "Greater", "GreaterOrEqual", "Identity", "IsInf", "IsNaN", "Less", "LessOrEqual",
    "Log", "LogSoftmax", "MatMul", "Max", "Mean", "Min", "Mul", "Neg", "Not", "Or", "Pow",
    "Reciprocal", "ReduceL2", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
    "ReduceSum", "ReduceSumSquare", "Relu", "Reshape", "Round", "Shape", "Sigmoid", "Sign",
    "Slice", "Softmax", "Softplus", "Split", "Sqrt", "Squeeze", "Sub", "Sum", "Tanh",
    "Transpose", "Unsqueeze", "Where", "Xor",
})
INPUT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
               "tensor(int64)": np.int64, "tensor(string)": object}


class GraphRefused(ValueError):
    """An ONNX file that is not served; the message says why, in one line."""


def checked_graph(data: bytes) -> Any:
    """The graph's `onnx.ModelProto`, once every rule above holds; `GraphRefused` names the
    first that does not."""
    import onnx
    from google.protobuf.message import DecodeError

    if len(data) > MAX_GRAPH_BYTES:
        raise GraphRefused(f"the ONNX graph has {len(data)} bytes (at most {MAX_GRAPH_BYTES})")
    try:
        model = onnx.ModelProto.FromString(data)
    except (DecodeError, RuntimeError, ValueError) as err:
        raise GraphRefused(f"it is not an ONNX model ({str(err)[:80] or 'unreadable'})") \
            from None
    if not model.HasField("graph") or not model.graph.node:
        raise GraphRefused("it is not an ONNX model: it holds no graph")
    _check_domains(model)
    _check_nodes(model.graph)
    _check_no_external_data(model.graph)
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, RuntimeError) as err:
        raise GraphRefused(f"its graph is not valid ONNX: {str(err).splitlines()[0][:160]}") \
            from None
    return model


def _check_domains(model) -> None:
    custom = sorted({o.domain for o in model.opset_import if o.domain not in STANDARD_DOMAINS})
    if custom:
        raise GraphRefused(f"its graph imports operators from {', '.join(custom[:3])}: only "
                           "ONNX's standard operators (ai.onnx, ai.onnx.ml) are served")
    if len(model.functions):
        raise GraphRefused("its graph defines functions of its own: not served")


def _check_nodes(graph) -> None:
    for node in graph.node:
        if node.domain not in STANDARD_DOMAINS:
            raise GraphRefused(f"its node {node.name or node.op_type!r} is from domain "
                               f"{node.domain!r}: only ai.onnx and ai.onnx.ml are served")
        if node.op_type not in ALLOWED_OPERATORS:
            raise GraphRefused(f"its graph uses the operator {node.op_type[:40]!r}, which "
                               "classifier converters do not write: not served")


def _check_no_external_data(graph) -> None:
    """No tensor is read from a file beside the graph (a path could name any file here)."""
    external = 1  # onnx.TensorProto.EXTERNAL
    tensors = list(graph.initializer) + [s.values for s in graph.sparse_initializer]
    tensors += [a.t for node in graph.node for a in node.attribute if a.HasField("t")]
    tensors += [t for node in graph.node for a in node.attribute for t in a.tensors]
    for tensor in tensors:
        if tensor.data_location == external or len(tensor.external_data):
            raise GraphRefused(f"its tensor {tensor.name[:40]!r} is stored in another file: "
                               "only self-contained graphs are served")


@dataclass(frozen=True)
class Feed:
    """One input of the graph: its name, the numpy type it takes, and its width (columns)."""

    name: str
    dtype: Any
    width: int | None


def graph_inputs(model) -> list[Feed]:
    """The graph's inputs (initializers aside), each a tensor of records by columns."""
    import onnx

    initialized = {t.name for t in model.graph.initializer}
    feeds = []
    for value in model.graph.input:
        if value.name in initialized:
            continue
        kind = value.type.WhichOneof("value")
        tensor = value.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_string(tensor.elem_type) if kind == "tensor_type" \
            else kind
        name = {"TensorProto.FLOAT": "tensor(float)", "TensorProto.DOUBLE": "tensor(double)",
                "TensorProto.INT64": "tensor(int64)", "TensorProto.STRING": "tensor(string)"
                }.get(dtype)
        dims = tensor.shape.dim if kind == "tensor_type" else []
        if name is None or len(dims) != 2:
            raise GraphRefused(f"its input {value.name!r} is not a table of records (a 2-d "
                               "tensor of float, double, int64 or string): not supported")
        width = dims[1].dim_value if dims[1].HasField("dim_value") else None
        feeds.append(Feed(value.name, INPUT_TYPES[name], width))
    if not feeds:
        raise GraphRefused("its graph has no input")
    return feeds


def graph_labels(model) -> list[int | str]:
    """The classes as the graph's labels (ZipMap's keys), in the order of its probabilities,
    from its classifier node."""
    for node in model.graph.node:
        if node.op_type.endswith("Classifier") or node.op_type == "ZipMap":
            for attribute in node.attribute:
                if attribute.name == "classlabels_strings":
                    return [s.decode() for s in attribute.strings]
                if attribute.name in ("classlabels_int64s", "classlabels_ints"):
                    return list(attribute.ints)
    raise GraphRefused("its graph has no classifier that names its classes (such as "
                       "TreeEnsembleClassifier or LinearClassifier): not a classifier")


class OnnxClassifier:
    """A checked graph run by onnxruntime, one thread (workers are processes): its
    probabilities for records of its input fields, each input from the field of its name, or
    a graph of one input from every field in order."""

    def __init__(self, data: bytes):
        import onnxruntime

        model = checked_graph(data)
        self.data = data
        self.labels = graph_labels(model)
        self.classes = [str(label) for label in self.labels]
        self.feeds = graph_inputs(model)
        self.by_name = len(self.feeds) > 1
        if self.by_name and any(feed.width != 1 for feed in self.feeds):
            raise GraphRefused("its inputs hold several columns each: give each field an input "
                               "of its own (skl2onnx's to_onnx(pipeline, X=frame) does), or all "
                               "of them one input")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.log_severity_level = 3  # its warnings are not the client's
        try:
            self.session = onnxruntime.InferenceSession(data, options,
                                                        providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - any refusal of onnxruntime's
            raise GraphRefused(f"onnxruntime cannot run the graph: "
                               f"{str(err).splitlines()[0][:160]}") from None
        self.output = _probabilities_output(self.session, len(self.classes))

    @property
    def fields(self) -> list[str] | None:
        """The fields it reads by name (None: one input of the sample's columns in order)."""
        return [feed.name for feed in self.feeds] if self.by_name else None

    def predict_proba(self, fields) -> np.ndarray:
        """Probabilities for the records of `fields` (a DataFrame, or arrays by field name)."""
        probabilities = self.outputs(fields)
        # float32's sums miss 1 by ~1e-7: the answers, and the metrics made of them, add up
        sums = probabilities.sum(axis=1, keepdims=True)
        return np.divide(probabilities, sums, out=probabilities, where=sums > 0)

    def outputs(self, fields) -> np.ndarray:
        """The graph's probabilities output as it is, a row per record."""
        if self.by_name:
            inputs = {feed.name: _column(np.asarray(fields[feed.name]), feed.dtype)
                      for feed in self.feeds}
        else:
            feed = self.feeds[0]
            inputs = {feed.name: np.column_stack(
                [_column(np.asarray(fields[name]), feed.dtype)[:, 0] for name in fields])}
        (probabilities,) = self.session.run([self.output], inputs)
        if isinstance(probabilities, list):  # ZipMap's maps, keyed by the labels
            probabilities = [[record[label] for label in self.labels]
                             for record in probabilities]
        return np.asarray(probabilities, dtype=np.float64)


def not_probabilities(outputs: np.ndarray) -> str | None:
    """What makes a graph's output not probabilities (scores of a LinearSVC, or of an SVC
    without probability=True, which converters write to the same output), or None."""
    if not np.all((outputs >= -1e-6) & (outputs <= 1 + 1e-6)):  # float32's rounding aside
        return "holds values outside [0, 1]"
    largest = float(np.max(np.abs(outputs.sum(axis=1) - 1), initial=0.0))
    if largest > 1e-4:
        return f"has rows that do not add up to 1 (by up to {largest:.3g})"
    return None


def _column(values: np.ndarray, dtype: Any) -> np.ndarray:
    """One field as a column of the input's type (a missing level as the text `nan`)."""
    if dtype is object:
        return np.array([str(v) for v in values], dtype=object)[:, None]
    return np.asarray(values, dtype=np.float64).astype(dtype)[:, None]


def _probabilities_output(session, n_classes: int) -> str:
    """The output that holds the probabilities: a map per record (ZipMap's) or a float table of
    one column per class; named `probabilities` when there are several."""
    candidates = [o.name for o in session.get_outputs()
                  if o.type.startswith("seq(map(")
                  or o.type in ("tensor(float)", "tensor(double)") and len(o.shape) == 2
                  and o.shape[1] in (n_classes, None, "None")]
    named = [name for name in candidates if "probabilit" in name]
    if named or candidates:
        return (named or candidates)[-1]
    raise GraphRefused("its graph has no output of class probabilities")
