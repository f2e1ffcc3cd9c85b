"""ONNX graphs as a model kind (issue 43): graphs as skl2onnx writes them imported with
`import_model.py --model model.onnx`, served by onnxruntime with the answers of the user's own
onnxruntime session, through the app, gunicorn and score.py, without any trust; and graphs
that could harm the service refused in one line, at import and from a planted bundle."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pandas as pd
import pytest
import requests

from helpers import (ONNX_NUMBERS, ONNX_SAMPLE_ROWS, PYTHON, ROOT, as_float32, course_frame,
                     free_port, one_input_per_field, rewrite_payload, start_gunicorn, stop,
                     wait_for)
from tabserve.model.bundle import ModelBundle, ModelLoadError
from tabserve.model.fitted import OnnxModel
from tabserve.tables import load_csv
from tabserve.training.importing import import_model
from tabserve.web.app import create_app
from tabserve.web.config import Settings

SAMPLE_ROWS, NUMBERS = ONNX_SAMPLE_ROWS, ONNX_NUMBERS
# onnxruntime computes in float32 and its trees sum in an order that depends on the batch's
# size: the same graph answers the same records to float32's resolution near 1
FLOAT32 = 1e-6


def one_input_of_every_field(frame):
    """A multiclass RandomForest converted from an array: one float input of every column in
    order, the probabilities as a tensor (ZipMap off)."""
    from sklearn.ensemble import RandomForestClassifier
    from skl2onnx import to_onnx

    train = frame[NUMBERS].iloc[:SAMPLE_ROWS].to_numpy(np.float32)
    forest = RandomForestClassifier(n_estimators=30, max_depth=8, random_state=0).fit(
        train, frame.contract.iloc[:SAMPLE_ROWS])
    return to_onnx(forest, train[:1], options={id(forest): {"zipmap": False}}), \
        NUMBERS + ["contract"]


GRAPHS = {"one input per field, LogisticRegression, binary": one_input_per_field,
          "one input of every field, RandomForest, multiclass": one_input_of_every_field}


def _with_missing_numbers(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[frame.index % 7 == 3, "totalcharges"] = np.nan
    return frame


def own_answers(graph, frame: pd.DataFrame) -> np.ndarray:
    """The user's own onnxruntime session on the frame, fed as its inputs say."""
    import onnxruntime

    session = onnxruntime.InferenceSession(graph.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    types = {"tensor(float)": np.float32, "tensor(double)": np.float64,
             "tensor(int64)": np.int64, "tensor(string)": object}
    if len(inputs) == 1:
        feed = {inputs[0].name: frame.to_numpy(types[inputs[0].type])}
    else:
        feed = {i.name: frame[[i.name]].to_numpy().astype(types[i.type]) for i in inputs}
    _, probabilities = session.run(None, feed)
    if isinstance(probabilities, list):
        return np.array([list(record.values()) for record in probabilities])
    return np.asarray(probabilities, dtype=np.float64)


@pytest.fixture(scope="module", params=GRAPHS, ids=list(GRAPHS))
def imported(request, tmp_path_factory):
    """A graph as the user saves it, its sample, the bundle imported from them, and the rows
    held out."""
    folder = tmp_path_factory.mktemp("onnx")
    frame = _with_missing_numbers(course_frame())
    graph, columns = GRAPHS[request.param](frame)
    (folder / "model.onnx").write_bytes(graph.SerializeToString())
    frame[columns].iloc[:SAMPLE_ROWS].to_csv(folder / "sample.csv", index=False)
    result = import_model(folder / "model.onnx", load_csv(folder / "sample.csv"), columns[-1])
    result.bundle.save(folder / "model.bin")
    return folder, graph, columns, frame[columns[:-1]].iloc[SAMPLE_ROWS:], result


def _records(rows: pd.DataFrame) -> list[dict]:
    return [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
            for r in rows.to_dict(orient="records")]


def test_an_onnx_graph_is_served_with_its_own_answers_without_trust(imported):
    """Read back with no trust at all (a graph is data); every held-out row answered as the
    user's own session answers it, one record as in a batch (to float32's 1e-6); /v2 too."""
    folder, graph, _, held_out, result = imported
    served = ModelBundle.load(folder / "model.bin")
    assert isinstance(served.model, OnnxModel) and not served.holds_pickle
    assert result.bundle.metrics["imported"]["served"] == "by onnxruntime"
    # its answers depend on the runtime's version (float32 sums): recorded, and compared with
    # the server's own as a pickle's libraries are
    import onnx
    import onnxruntime

    libraries = served.metadata["libraries"]
    assert (libraries["onnxruntime"], libraries["onnx"]) == (onnxruntime.__version__,
                                                             onnx.__version__)
    expected = own_answers(graph, as_float32(held_out))
    client = create_app(served, Settings()).test_client()
    records = _records(held_out)
    answers = client.post("/predict", json=records).get_json()
    got = np.array([[a["probabilities"][c] for c in served.classes] for a in answers])
    np.testing.assert_allclose(got, expected, rtol=0, atol=FLOAT32)
    for record, answer in list(zip(records, answers))[:20]:
        one = client.post("/predict", json=record).get_json()
        assert one["probabilities"] == pytest.approx(answer["probabilities"], abs=FLOAT32)
    v2 = client.post(f"/v2/models/{served.schema.target}/infer", json={"inputs": [
        {"name": name, "shape": [1], "datatype": "BYTES" if isinstance(value, str) else "FP64",
         "data": [value]} for name, value in records[0].items()]})
    assert v2.status_code == 200, v2.get_json()


def test_a_record_the_graph_cannot_read_is_a_4xx_naming_the_field(imported):
    folder, *_ = imported
    client = create_app(ModelBundle.load(folder / "model.bin"), Settings()).test_client()
    record = dict(ModelBundle.load(folder / "model.bin").example, tenure="long")
    answer = client.post("/predict", json=record)
    assert answer.status_code == 422 and "tenure" in json.dumps(answer.get_json())


@pytest.mark.process
def test_an_onnx_bundle_is_served_by_gunicorn_grpc_and_score_py_without_trust(imported,
                                                                             tmp_path):
    folder, graph, _, held_out, _ = imported
    rows = held_out.iloc[:400]
    expected = own_answers(graph, as_float32(rows))
    bundle = ModelBundle.load(folder / "model.bin")
    rows.to_csv(tmp_path / "in.csv", index=False)
    done = subprocess.run([PYTHON, "score.py", "--model", str(folder / "model.bin"), "--input",
                           str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={k: v for k, v in os.environ.items() if k != "ALLOW_PICKLE"})
    assert done.returncode == 0, done.stderr
    scored = pd.read_csv(tmp_path / "out.csv")
    np.testing.assert_allclose(scored[[f"probability_{c}" for c in bundle.classes]], expected,
                               rtol=0, atol=FLOAT32)
    grpc_port = free_port()
    process, url = start_gunicorn(folder / "model.bin", GRPC_PORT=str(grpc_port))
    try:
        answers = requests.post(f"{url}/predict", json=_records(rows), timeout=60).json()
        declared = requests.get(f"{url}/v2/models/{bundle.schema.target}",
                                timeout=10).json()["inputs"]
        by_grpc = _grpc_probabilities(f"127.0.0.1:{grpc_port}", bundle, declared, rows)
    finally:
        stop(process)
    got = np.array([[a["probabilities"][c] for c in bundle.classes] for a in answers])
    np.testing.assert_allclose(got, expected, rtol=0, atol=FLOAT32)
    np.testing.assert_allclose(by_grpc, expected, rtol=0, atol=FLOAT32)


def _grpc_probabilities(address: str, bundle, declared: list[dict], rows: pd.DataFrame):
    """The rows sent by Triton's gRPC client, as its users build tensors from the model's
    metadata; the probabilities it reads back, a row per record."""
    import tritonclient.grpc as triton_grpc
    from tritonclient.utils import InferenceServerException

    client = triton_grpc.InferenceServerClient(address)

    def live() -> bool:
        try:
            return client.is_server_live()
        except InferenceServerException:
            return False

    wait_for(live, 60, "gRPC to answer ServerLive")
    inputs = []
    for tensor in declared:
        values = rows[tensor["name"]].to_numpy()
        kind = {"FP64": np.float64, "INT64": np.int64, "BYTES": np.object_}[tensor["datatype"]]
        inferred = triton_grpc.InferInput(tensor["name"], [len(rows)], tensor["datatype"])
        inferred.set_data_from_numpy(values.astype(kind))
        inputs.append(inferred)
    result = client.infer(bundle.schema.target, inputs)
    client.close()
    return result.as_numpy("probabilities").reshape(len(rows), len(bundle.classes))


# --- hostile graphs: one line at import, and from a planted bundle ----------------------------

def _graph(nodes, inputs, outputs, initializers=(), opsets=(("", 17), ("ai.onnx.ml", 3)),
           functions=()):
    from onnx import helper

    graph = helper.make_graph(nodes, "hostile", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets],
                             functions=list(functions))


def _classifier_with(extra_nodes=(), extra_initializers=(), opsets=(("", 17), ("ai.onnx.ml", 3)),
                     node_domain="ai.onnx.ml", functions=()):
    """A LinearClassifier of three numbers, with nodes, tensors or imports a graph could add."""
    from onnx import TensorProto, helper

    classifier = helper.make_node("LinearClassifier", ["X"], ["label", "probabilities"],
                                  domain=node_domain, coefficients=[0.1, 0.2, 0.3, -0.1, -0.2,
                                                                    -0.3],
                                  intercepts=[0.0, 0.0], classlabels_ints=[0, 1],
                                  post_transform="SOFTMAX")
    return _graph([*extra_nodes, classifier],
                  [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
                  [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
                   helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])],
                  extra_initializers, opsets, functions)


def _external_tensor():
    from onnx import TensorProto, helper

    tensor = helper.make_tensor("weights", TensorProto.FLOAT, [3], [0.0, 0.0, 0.0])
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="weights.bin")  # beside the server's cwd
    return tensor


def _custom_op():
    from onnx import helper
    return helper.make_node("Exec", ["X"], ["Y"], domain="com.attacker")


def _loop_graph():
    """A graph that makes a tensor of a size it chooses (ConstantOfShape): a memory bomb."""
    from onnx import TensorProto, helper

    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [1_000_000, 1_000_000])
    return _classifier_with(
        [helper.make_node("ConstantOfShape", ["shape"], ["huge"])], [shape])


def _regressor_graph():
    from onnx import TensorProto, helper

    node = helper.make_node("LinearRegressor", ["X"], ["Y"], domain="ai.onnx.ml",
                            coefficients=[0.1, 0.2, 0.3])
    return _graph([node], [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
                  [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])])


def _scores_graph():
    """A LinearSVC of three classes, which skl2onnx converts with its decision scores as the
    probabilities."""
    from sklearn.svm import LinearSVC
    from skl2onnx import to_onnx

    x = np.array([[1, 3, 5], [2, 4, 6], [0, 1, 0], [5, 1, 2], [9, 9, 9], [8, 9, 7]], np.float32)
    return to_onnx(LinearSVC().fit(x, [0, 1, 0, 1, 2, 2]), x[:1])


HOSTILE = {
    "not ONNX": (lambda: b"\x08\x07garbage" * 100, "is not an ONNX model"),
    "an operator from another domain": (
        lambda: _classifier_with(opsets=(("", 17), ("ai.onnx.ml", 3), ("com.attacker", 1)),
                                 extra_nodes=[_custom_op()]),
        "imports operators from com.attacker"),
    "a tensor read from another file": (
        lambda: _classifier_with(extra_initializers=[_external_tensor()]),
        "its tensor 'weights' is stored in another file"),
    "an operator that sizes its own output": (
        _loop_graph, "uses the operator 'ConstantOfShape', which classifier converters do not "
                     "write"),
    "a regressor": (_regressor_graph, "has no classifier that names its classes"),
    "scores, not probabilities": (_scores_graph, "the ONNX graph's probabilities output holds "
                                                 "values outside [0, 1] on the sample"),
}
NOT_PLANTED = ("a regressor", "scores, not probabilities")  # found by import, by its answers


def _graph_bytes(make) -> bytes:
    made = make()
    return made if isinstance(made, bytes) else made.SerializeToString()


@pytest.mark.process
@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_a_hostile_graph_is_refused_at_import_in_one_line(tmp_path, case):
    make, message = HOSTILE[case]
    (tmp_path / "model.onnx").write_bytes(_graph_bytes(make))
    pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0], "c": [5.0, 6.0], "y": [0, 1]}).to_csv(
        tmp_path / "sample.csv", index=False)
    out = tmp_path / "out.bin"
    done = subprocess.run([PYTHON, "import_model.py", "--model", str(tmp_path / "model.onnx"),
                           "--data", str(tmp_path / "sample.csv"), "--target", "y", "--output",
                           str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert not out.exists()


@pytest.mark.parametrize("case", [c for c in HOSTILE if c not in NOT_PLANTED])
def test_a_hostile_graph_planted_in_a_bundle_is_refused_at_load(imported, tmp_path, case):
    """A bundle whose graph member was swapped (its checksum made to fit) is refused in one
    line before onnxruntime runs it."""
    folder, *_ = imported
    path = tmp_path / "model.bin"
    path.write_bytes((folder / "model.bin").read_bytes())
    make, message = HOSTILE[case]

    def planted(members: dict) -> dict:
        (name,) = [n for n in members if n.endswith(".onnx")]
        return {**members, name: _graph_bytes(make)}

    rewrite_payload(path, planted)
    with pytest.raises(ModelLoadError) as refusal:
        ModelBundle.load(path)
    assert message in str(refusal.value) and "\n" not in str(refusal.value)


def test_a_graph_the_header_does_not_declare_is_refused(imported, tmp_path):
    """The header's ` onnx` is what the Dockerfile reads to install onnxruntime: a payload
    holding a graph that the header hides is refused."""
    folder, *_ = imported
    path = tmp_path / "model.bin"
    path.write_bytes((folder / "model.bin").read_bytes())
    rewrite_payload(path, lambda members: members,
                    lambda fields: [f for f in fields if f != b"onnx"])
    with pytest.raises(ModelLoadError, match="holds an ONNX graph that its header does not "
                                             "declare"):
        ModelBundle.load(path)
