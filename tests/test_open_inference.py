"""The Open Inference Protocol as its official clients speak it: Triton's `tritonclient` (HTTP
with binary tensors, and gRPC) and KServe's SDK (REST and gRPC, run from .venv-kserve as a
separate process: its gRPC stubs and tritonclient's register the same protobuf package), each
on its default path, against the Flask app and the real gunicorn with GRPC_PORT."""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from helpers import (PYTHON, ROOT, free_port, process_fixture, start_gunicorn, stop, wait_for,
                     workers)
from tabserve.model.schema import Kind
from tabserve.serving.codecs.tensors import ByteLevels
from tabserve.web.app import create_app
from tabserve.web.config import Settings
from tabserve.web.auth import ApiKeys

NUMPY = {"FP64": np.float64, "INT64": np.int64, "BYTES": np.object_}
HEADER = "Inference-Header-Content-Length"
KSERVE_PYTHON = ROOT / ".venv-kserve" / "bin" / "python"
KEY = "a-test-key-of-32-characters-long"


def fields(bundle) -> list[tuple[str, str]]:
    """Each field and its datatype, as the model's metadata declares them (a boolean written
    1/0 in training is INT64, one written yes/no is BYTES: the example record's values)."""
    metadata = create_app(bundle, Settings()).test_client().get(
        f"/v2/models/{bundle.schema.target}").get_json()
    declared = [(tensor["name"], tensor["datatype"]) for tensor in metadata["inputs"]]
    assert dict(declared)["seniorcitizen"] == "INT64" and dict(declared)["partner"] == "BYTES"
    return declared


def triton_inputs(module, records: list[dict], bundle, binary: bool = True) -> list:
    """The records as tritonclient's InferInputs, set from numpy as its users do."""
    inputs = []
    for name, datatype in fields(bundle):
        tensor = module.InferInput(name, [len(records)], datatype)
        values = np.array([np.nan if r[name] is None else r[name] for r in records],
                          dtype=NUMPY[datatype])
        if module is triton_http:
            tensor.set_data_from_numpy(values, binary_data=binary)
        else:
            tensor.set_data_from_numpy(values)
        inputs.append(tensor)
    return inputs


def varied(record: dict, count: int) -> list[dict]:
    return [{**record, "tenure": i % 72, "monthlycharges": 20.0 + i,
             "contract": ("month-to-month", "one_year", "two_year")[i % 3],
             "totalcharges": None if i % 7 == 0 else 20.0 * i} for i in range(count)]


def post_triton(client, inputs, outputs=None, parameters=None, path="/v2/models/churn/infer"):
    """POST a body tritonclient encoded, as its `infer` would; the response, and the result
    as tritonclient parses it (None for an error)."""
    body, json_size = triton_http.InferenceServerClient.generate_request_body(
        inputs, outputs=outputs, parameters=parameters)
    headers = {HEADER: str(json_size)} if json_size is not None else {}
    response = client.post(path, data=body, headers=headers,
                           content_type="application/octet-stream")
    if response.status_code != 200:
        return response, None
    length = response.headers.get(HEADER)
    result = triton_http.InferenceServerClient.parse_response_body(
        response.data, header_length=None if length is None else int(length))
    return response, result


def assert_same_answers(outputs: dict, expected: list[dict]) -> None:
    """Each output tensor against /predict's answers, to 1e-9."""
    assert [v.decode() if isinstance(v, bytes) else v for v in np.ravel(outputs["label"])] \
        == [a["label"] for a in expected]
    assert np.allclose(np.ravel(outputs["churn_probability"]),
                       [a["churn_probability"] for a in expected], rtol=0, atol=1e-9)
    probabilities = np.asarray(outputs["probabilities"]).reshape(len(expected), 2)
    assert np.allclose(probabilities, [[a["probabilities"]["no"], a["probabilities"]["yes"]]
                                       for a in expected], rtol=0, atol=1e-9)


# --- HTTP, the Flask app: bodies as tritonclient writes and reads them ---

def test_tritonclient_default_path_binary_both_ways(client, telco_bundle, telco_record):
    records = varied(telco_record, 20)
    expected = client.post("/predict", json=records).get_json()
    response, result = post_triton(client, triton_inputs(triton_http, records, telco_bundle))
    assert response.status_code == 200, response.data[:300]
    assert int(response.headers[HEADER]) < len(response.data)
    assert response.mimetype == "application/octet-stream"
    head = result.get_response()
    assert all("data" not in o and o["parameters"]["binary_data_size"] > 0
               for o in head["outputs"])
    assert_same_answers({o["name"]: result.as_numpy(o["name"]) for o in head["outputs"]},
                        expected)


def test_binary_tensors_answer_as_json_tensors_with_odd_values_and_problems(
        client, telco_bundle, telco_record):
    """Binary data is read into typed columns (numbers by numpy, known levels by `ByteLevels`),
    JSON tensors as lists: the same answers, warnings and problems, record by record."""
    odd = [{"contract": "Month-to-month"}, {"paymentmethod": "cash"}, {"tenure": 500},
           {"partner": "YES"}, {"partner": "no"}, {"seniorcitizen": 1},
           {"totalcharges": None}, {"gender": ""}, {"contract": "one_year\0"}]
    records = varied(telco_record, 30)
    for i, record in enumerate(records):  # every level and spelling, in turn
        for j, f in enumerate(telco_bundle.schema.fields):
            if f.kind is Kind.CATEGORICAL:
                record[f.name] = f.categories[(i + j) % len(f.categories)]
            elif f.kind is Kind.BOOLEAN:
                record[f.name] = (i + j) % 2 if isinstance(record[f.name], int) else \
                    f.spellings[(i + j) % 2]
    for i, change in enumerate(odd):
        records[3 * i] = {**records[3 * i], **change}
    answers = []
    for binary in (True, False):
        response, result = post_triton(client, triton_inputs(triton_http, records, telco_bundle,
                                                             binary=binary))
        assert response.status_code == 200, response.data[:300]
        answers.append((result.as_numpy("label").tolist(), result.as_numpy("probabilities"),
                        result.get_response()["parameters"]["warnings"]))
    assert answers[0][0] == answers[1][0] and answers[0][2] == answers[1][2]
    assert np.array_equal(answers[0][1], answers[1][1])
    warned = {int(i) for i in re.findall(r"records\[(\d+)\]", answers[0][2])}
    assert warned == {0, 3, 6, 21, 24}  # "YES", "no", 1 and null are valid as they stand
    bad = [*records[:4], {**records[4], "partner": "maybe"}, {**records[5], "tenure": math.inf}]
    errors = [post_triton(client, triton_inputs(triton_http, bad, telco_bundle, binary=binary)
                          )[0].get_json()["error"] for binary in (True, False)]
    assert errors[0] == errors[1]
    assert "records[4].partner" in errors[0] and "records[5].tenure" in errors[0]


LEVELS = ["Month-to-month", "One year", "Two year", "é", "x" * 255]


@pytest.mark.parametrize("raw", [
    b"\x08\0\0\0" + "é".encode() + b"\x08\0\0\0One year",  # lengths that do not chain
    b"\x08\0\0\0One year\x08\0\0\0Two yea",                     # the last one cut short
    b"\x08\0\0\0One year\x08\0\0\0Two year\0",                 # a byte after it
    b"\x08\0\0\0One year\x08\0\0",                               # a length cut short
])
def test_byte_levels_refuse_data_that_is_not_whole_known_texts(raw):
    assert ByteLevels({level: code for code, level in enumerate(LEVELS)}).read(raw) is None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(LEVELS), st.text(max_size=300)), max_size=12),
       st.binary(max_size=3))
def test_byte_levels_read_exactly_what_one_by_one_reading_gives_or_nothing(texts, tail):
    """Texts of known levels are read whole or not at all: never a wrong value, whatever the
    other texts (NULs, empty, 256 bytes and more) or bytes trailing the last element."""
    reader = ByteLevels({level: code for code, level in enumerate(LEVELS)})
    raw = b"".join(len(t.encode()).to_bytes(4, "little") + t.encode() for t in texts) + tail
    read = reader.read(raw)
    if not tail and len(texts) >= 2 and all(t in LEVELS for t in texts):
        assert read is not None
    if read is not None:
        assert not tail and read.tolist() == [LEVELS.index(t) for t in texts]


def test_requested_outputs_each_binary_or_json(client, telco_bundle, telco_record):
    records = varied(telco_record, 3)
    expected = client.post("/predict", json=records).get_json()
    wanted = [triton_http.InferRequestedOutput("churn_probability", binary_data=True),
              triton_http.InferRequestedOutput("label", binary_data=False)]
    _, result = post_triton(client, triton_inputs(triton_http, records, telco_bundle,
                                                  binary=False), outputs=wanted)
    head = result.get_response()
    assert [o["name"] for o in head["outputs"]] == ["churn_probability", "label"]
    assert "data" not in head["outputs"][0] and head["outputs"][1]["data"] == \
        [a["label"] for a in expected]
    assert np.allclose(result.as_numpy("churn_probability"),
                       [a["churn_probability"] for a in expected], rtol=0, atol=1e-9)


def test_json_tensors_answer_json_and_warnings_are_one_string(client, telco_bundle,
                                                              telco_record):
    loose = {**telco_record, "contract": "Month-to-month"}
    inputs = [{"name": n, "datatype": d, "shape": [1], "data": [loose[n]]}
              for n, d in fields(telco_bundle)]
    inputs.append({"name": "nickname", "datatype": "BYTES", "shape": [1], "data": ["x"]})
    response = client.post("/v2/models/churn/infer", json={"inputs": inputs})
    assert response.mimetype == "application/json" and HEADER not in response.headers
    warnings = response.get_json()["parameters"]["warnings"]
    assert isinstance(warnings, str)
    assert "unknown input 'nickname' ignored" in warnings
    assert "read as the known category 'month-to-month'" in warnings


def test_unknown_requested_output_is_a_400_naming_it(client, telco_bundle, telco_record):
    response, _ = post_triton(client, triton_inputs(triton_http, [telco_record], telco_bundle),
                              outputs=[triton_http.InferRequestedOutput("churn_score")])
    assert response.status_code == 400
    assert "unknown output 'churn_score'" in response.get_json()["error"]
    assert "'churn_probability'" in response.get_json()["error"]


def test_nan_from_a_json_tensor_is_a_missing_value_where_the_field_allows(
        client, telco_bundle, telco_record):
    expected = client.post("/predict", json={**telco_record, "totalcharges": None}).get_json()
    record = {**telco_record, "totalcharges": None}  # tritonclient writes NaN into the JSON
    response, result = post_triton(client, triton_inputs(triton_http, [record], telco_bundle,
                                                         binary=False))
    assert response.status_code == 200, response.data[:300]
    assert_same_answers({n: result.as_numpy(n) for n in ("label", "churn_probability",
                                                         "probabilities")}, [expected])
    for value, field in ((math.inf, "totalcharges"), (math.nan, "tenure")):
        response, _ = post_triton(client, triton_inputs(
            triton_http, [{**telco_record, field: value}], telco_bundle, binary=False))
        assert response.status_code == 400
        assert f"records[0].{field}: expected a finite number" in response.get_json()["error"]


def test_versioned_routes_answer_for_the_served_version_only(client, telco_bundle,
                                                              telco_record):
    version = telco_bundle.version
    base = f"/v2/models/churn/versions/{version}"
    assert client.get(base).get_json()["versions"] == [version]
    assert client.get(f"{base}/ready").get_json() == {"name": "churn", "ready": True}
    response, result = post_triton(client, triton_inputs(triton_http, [telco_record],
                                                         telco_bundle), path=f"{base}/infer")
    assert response.status_code == 200 and result.get_response()["model_version"] == version
    for path in ("/v2/models/churn/versions/0", "/v2/models/churn/versions/0/ready"):
        missing = client.get(path)
        assert missing.status_code == 404
        assert missing.get_json() == {"error": f"version '0' of model 'churn' not found; this "
                                               f"server serves version '{version}'"}
    response, _ = post_triton(client, triton_inputs(triton_http, [telco_record], telco_bundle),
                              path="/v2/models/churn/versions/0/infer")
    assert response.status_code == 404


@pytest.mark.parametrize("method, path, status", [
    ("get", "/v2/models/churn/config", 404),          # tritonclient's get_model_config
    ("post", "/v2/repository/index", 404),             # its get_model_repository_index
    ("get", "/v2/models/churn/stats", 404),            # its get_inference_statistics
    ("get", "/v2/models/other", 404),
    ("post", "/v2/models/other/versions/1/infer", 404),
    ("get", "/v2/models/churn/infer", 405),
    ("delete", "/v2/models/churn", 405),
])
def test_every_error_under_v2_is_the_protocols(client, method, path, status):
    response = getattr(client, method)(path)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert set(response.get_json()) == {"error"} and response.get_json()["error"]


def test_without_a_key_v2_answers_the_protocols_error(telco_bundle):
    keyed = create_app(telco_bundle, Settings(api_keys=ApiKeys.from_env({"API_KEYS": KEY}))
                       ).test_client()
    response = keyed.get("/v2/models/churn")
    assert response.status_code == 401 and "needs an API key" in response.get_json()["error"]
    assert keyed.get("/v2/models/churn", headers={"X-API-Key": KEY}).status_code == 200


@pytest.mark.parametrize("tamper, message", [
    (lambda head, raw: (head, raw[:-3]), "does not fit the"),
    (lambda head, raw: (head, raw + b"\0"), "bytes after the binary data"),
    (lambda head, raw: (str(len(raw) + 1), raw), "must be the length of the JSON"),
    (lambda head, raw: ("x", raw), "must be the length of the JSON"),
])
def test_malformed_binary_bodies_are_400s(client, telco_bundle, telco_record, tamper,
                                          message):
    body, json_size = triton_http.InferenceServerClient.generate_request_body(
        triton_inputs(triton_http, [telco_record], telco_bundle))
    header, body = tamper(str(json_size), body)
    response = client.post("/v2/models/churn/infer", data=body, headers={HEADER: header})
    assert response.status_code == 400 and message in response.get_json()["error"]


@pytest.mark.parametrize("datatype, raw, message", [
    ("BYTES", b"\x05\0\0\0abc", "runs past the end"),
    ("BYTES", b"\x02\0", "ends inside an element's length"),
    ("BYTES", b"\x02\0\0\0\xff\xfe", "is not UTF-8"),
    ("FP64", b"\0" * 7, "not a whole number of FP64 elements"),
    ("COMPLEX", b"\0" * 8, "datatype 'COMPLEX' is not one of"),
])
def test_binary_tensors_that_do_not_fit_their_datatype_are_400s(client, telco_bundle,
                                                                telco_record, datatype, raw,
                                                                message):
    inputs = [{"name": n, "datatype": d, "shape": [1], "data": [telco_record[n]]}
              for n, d in fields(telco_bundle) if n != "contract"]
    inputs.append({"name": "contract", "datatype": datatype, "shape": [1],
                   "parameters": {"binary_data_size": len(raw)}})
    head = json.dumps({"inputs": inputs}).encode()
    response = client.post("/v2/models/churn/infer", data=head + raw,
                           headers={HEADER: str(len(head))})
    assert response.status_code == 400
    assert "input 'contract'" in response.get_json()["error"]
    assert message in response.get_json()["error"]


def test_one_record_answers_alike_on_the_row_path_and_the_column_path(telco_bundle,
                                                                    telco_record):
    """`tensor_rows` (one record valid as it stands scores as lists) changes no answer, no
    warning and no drift count: the same requests against the app with it switched off."""
    apps = [create_app(telco_bundle, Settings(speedups_off=off)).test_client()
            for off in (frozenset(), frozenset({"tensor_rows"}))]
    records = [*varied(telco_record, 12), {**telco_record, "contract": "One year"},
               {**telco_record, "tenure": 500}, {**telco_record, "paymentmethod": "cash"}]
    for record in records:
        answers = []
        for app in apps:
            response, result = post_triton(app, triton_inputs(triton_http, [record],
                                                              telco_bundle))
            assert response.status_code == 200
            head = result.get_response()
            answers.append((result.as_numpy("label").tolist(),
                            result.as_numpy("probabilities").tolist(),
                            head.get("parameters", {}).get("warnings")))
        assert answers[0][0] == answers[1][0] and answers[0][2] == answers[1][2]
        assert np.allclose(answers[0][1], answers[1][1], rtol=0, atol=1e-12)
    drift = [app.get("/drift").get_json() for app in apps]
    assert drift[0]["records"] == drift[1]["records"] == len(records)
    assert drift[0]["fields"] == drift[1]["fields"]


def test_inference_answers_alike_before_flask_and_through_its_route(telco_bundle,
                                                                   telco_record):
    """`inference_before_flask` (a request that succeeds is answered before Flask) changes no
    byte of any answer, no status, no drift count and no metric label: the same requests
    against the app with it switched off, failures included (both go to the route)."""
    apps = [create_app(telco_bundle, Settings(speedups_off=off)).test_client()
            for off in (frozenset(), frozenset({"inference_before_flask"}))]
    records = varied(telco_record, 5)
    bodies = []
    for binary in (True, False):
        for sent in (records[:1], records, [{**records[0], "contract": "One year"}],
                     [{**records[0], "tenure": math.inf}]):
            body, json_size = triton_http.InferenceServerClient.generate_request_body(
                triton_inputs(triton_http, sent, telco_bundle, binary=binary))
            bodies.append((body, {} if json_size is None else {HEADER: str(json_size)}))
    bodies += [(b"{", {}), (b'{"inputs": []}', {}), (b"[]" * 10, {HEADER: "1"})]
    answers = [[], []]
    for i, (body, headers) in enumerate(bodies):
        for answered, app in zip(answers, apps):
            for path in ("/v2/models/churn/infer", "/v2/models/other/infer"):
                response = app.post(path, data=body, headers={**headers, "X-Request-ID":
                                                              f"r{i}"})
                answered.append((response.status_code, response.data,
                                 response.headers.get("Content-Type"),
                                 response.headers.get(HEADER)))
    assert answers[0] == answers[1]
    assert {status for status, *_ in answers[0]} == {200, 400, 404}
    drift = [app.get("/drift").get_json() for app in apps]
    assert drift[0] == drift[1] and drift[0]["records"] == 1 + 5 + 1 + 1 + 5 + 1
    metrics = [app.get("/metrics").get_data(as_text=True) for app in apps]
    for text in metrics:
        assert re.search(r'tabserve_requests_total\{endpoint="/v2/models/<name>/infer",'
                         r'method="POST",status="200"\} 6.0', text)


def test_json_tensors_answer_alike_with_levels_read_typed_and_as_lists(telco_bundle,
                                                                      telco_record):
    """`tensor_levels` (a JSON tensor of exact levels or booleans as they stand read straight
    into codes and flags) changes no byte of any answer, no status and no drift count: the
    same bodies against the app with it switched off, odd values, nested shapes, a NaN, nulls
    and broken tensors included; and the batch of known levels does take the typed way."""
    apps = [create_app(telco_bundle, Settings(speedups_off=off)).test_client()
            for off in (frozenset(), frozenset({"tensor_levels"}))]
    records = varied(telco_record, 80)  # past TYPED_FROM_BYTES: a few records go as lists
    odd = [{**records[0], "contract": "Month-to-month"}, {**records[1], "partner": "YES"},
           {**records[2], "partner": None}, {**records[3], "gender": 3},
           {**records[4], "seniorcitizen": True}, *records[5:]]

    def body(sent: list[dict], **extra) -> dict:
        return {"inputs": [{"name": name, "shape": [len(sent)], "datatype": datatype,
                            "data": [r[name] for r in sent]}
                           for name, datatype in fields(telco_bundle)], **extra}

    nested = body(records)
    for tensor in nested["inputs"]:
        tensor["data"], tensor["shape"] = [[v] for v in tensor["data"]], [len(records), 1]
    no_data = body(records)
    del no_data["inputs"][2]["data"]
    null_data = body(records)
    null_data["inputs"][3]["data"] = None
    bodies = [json.dumps(body(records)).encode(), json.dumps(body(odd)).encode(),
              json.dumps(body(records, id="mine", outputs=[{"name": "label"}])).encode(),
              json.dumps(body(records, parameters={"binary_data_output": True})).encode(),
              json.dumps(nested).encode(), json.dumps(no_data).encode(),
              json.dumps(null_data).encode(),
              json.dumps(body(records)).encode().replace(b"20.0,", b"NaN,", 1),
              json.dumps(body(records[:1])).encode(), b'{"inputs": [{"name": 3}]}']
    answers = [[], []]
    for i, raw in enumerate(bodies):
        for answered, app in zip(answers, apps):
            response = app.post("/v2/models/churn/infer", data=raw,
                                content_type="application/json",
                                headers={"X-Request-ID": f"r{i}"})
            answered.append((response.status_code, response.data))
    assert answers[0] == answers[1]
    assert {status for status, _ in answers[0]} == {200, 400}
    drift = [app.get("/drift").get_json() for app in apps]
    assert drift[0] == drift[1]
    from tabserve.model.validation import KnownCodes
    from tabserve.serving.codecs.tensors import TYPED_FROM_BYTES, typed_json_request
    assert len(bodies[0]) >= TYPED_FROM_BYTES
    typed = {t.name: t.column for t in typed_json_request(bodies[0], telco_bundle.schema)[1]}
    kinds = {f.name: f.kind for f in telco_bundle.schema.fields}
    assert all(isinstance(typed[name], KnownCodes) for name, kind in kinds.items()
               if kind is Kind.CATEGORICAL)
    assert all(isinstance(typed[name], np.ndarray) for name, kind in kinds.items()
               if kind is Kind.BOOLEAN)


def test_server_metadata_lists_the_binary_extension(client):
    assert client.get("/v2").get_json()["extensions"] == ["binary_tensor_data"]


# --- the real gunicorn, HTTP and gRPC ---

@process_fixture(scope="module")
def oip_server():
    """gunicorn with two workers serving HTTP and, on GRPC_PORT, gRPC."""
    grpc_port = free_port()
    process, url = start_gunicorn(ROOT / "model.bin", GRPC_PORT=str(grpc_port))
    address = f"127.0.0.1:{grpc_port}"
    client = triton_grpc.InferenceServerClient(address)
    wait_for(lambda: _live(client), 60, "gRPC to answer ServerLive")
    yield process, url, address
    client.close()
    assert stop(process) == 0


def _live(client) -> bool:
    try:
        return client.is_server_live()
    except InferenceServerException:
        return False


def test_tritonclient_over_http_and_grpc_as_its_users_call_it(oip_server, telco_bundle,
                                                              telco_record):
    _, url, address = oip_server
    records = varied(telco_record, 50)
    expected = requests.post(f"{url}/predict", json=records, timeout=10).json()
    version = telco_bundle.version
    for module, where in ((triton_http, url.removeprefix("http://")), (triton_grpc, address)):
        client = module.InferenceServerClient(where)
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("churn") and client.is_model_ready("churn", version)
        assert not client.is_model_ready("churn", "0")
        metadata = client.get_model_metadata("churn")
        names = metadata["inputs"] if isinstance(metadata, dict) else metadata.inputs
        assert [i["name"] if isinstance(i, dict) else i.name for i in names] == \
            telco_bundle.schema.names
        for model_version in ("", version):
            result = client.infer("churn", triton_inputs(module, records, telco_bundle),
                                  model_version=model_version)
            assert_same_answers({n: result.as_numpy(n) for n in
                                 ("label", "churn_probability", "probabilities")}, expected)
        client.close()


def test_grpc_refusals_name_the_problem_and_are_counted(oip_server, telco_bundle,
                                                        telco_record):
    _, url, address = oip_server
    client = triton_grpc.InferenceServerClient(address)
    cases = [
        ({"model_name": "other"}, telco_record, "NOT_FOUND", "model 'other' not found"),
        ({"model_name": "churn", "model_version": "0"}, telco_record, "NOT_FOUND",
         "version '0' of model 'churn' not found"),
        ({"model_name": "churn"}, {**telco_record, "tenure": math.inf}, "INVALID_ARGUMENT",
         "records[0].tenure: expected a finite number"),
        ({"model_name": "churn", "outputs": [triton_grpc.InferRequestedOutput("score")]},
         telco_record, "INVALID_ARGUMENT", "unknown output 'score'"),
    ]
    for arguments, record, status, message in cases:
        with pytest.raises(InferenceServerException) as refused:
            client.infer(inputs=triton_inputs(triton_grpc, [record], telco_bundle),
                         **arguments)
        assert refused.value.status() == f"StatusCode.{status}"
        assert message in refused.value.message()
    metrics = requests.get(f"{url}/metrics", timeout=10).text
    infer = 'endpoint="/inference.GRPCInferenceService/ModelInfer",method="GRPC"'
    assert f'tabserve_requests_total{{{infer},status="404"}} 2.0' in metrics
    assert f'tabserve_requests_total{{{infer},status="400"}} 2.0' in metrics
    assert 'tabserve_validation_failures_total{field="tenure"} 1.0' in metrics
    client.close()


def test_grpc_calls_are_logged_counted_for_drift_and_carry_request_ids(oip_server,
                                                                       telco_bundle,
                                                                       telco_record):
    process, url, address = oip_server
    before = requests.get(f"{url}/drift", timeout=10).json()["records"]
    client = triton_grpc.InferenceServerClient(address)
    result = client.infer("churn", triton_inputs(triton_grpc, varied(telco_record, 7),
                                                 telco_bundle),
                          headers={"x-request-id": "grpc-test-7"})
    assert result.get_response().id == "grpc-test-7"
    assert requests.get(f"{url}/drift", timeout=10).json()["records"] == before + 7
    line = wait_for(lambda: next((json.loads(l) for l in process.log_path.read_text()
                                  .splitlines() if '"grpc-test-7"' in l), None),
                    30, "the gRPC call's access line")
    assert line["path"] == "/inference.GRPCInferenceService/ModelInfer"
    assert line["records"] == 7 and line["status"] == 200 and line["grpc_status"] == "OK"
    assert line["model_version"] == telco_bundle.version
    client.close()


@pytest.mark.process
def test_grpc_with_api_keys(telco_bundle, telco_record):
    grpc_port = free_port()
    process, url = start_gunicorn(ROOT / "model.bin", GRPC_PORT=str(grpc_port), API_KEYS=KEY,
                                  WEB_CONCURRENCY="1")
    client = triton_grpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    try:
        assert wait_for(lambda: _live(client), 60, "gRPC to answer ServerLive")  # open, as probes
        inputs = triton_inputs(triton_grpc, [telco_record], telco_bundle)
        for headers, status in (({}, "UNAUTHENTICATED"),
                                ({"authorization": "Bearer not-the-key-0123456789"},
                                 "UNAUTHENTICATED")):
            with pytest.raises(InferenceServerException) as refused:
                client.infer("churn", inputs, headers=headers)
            assert refused.value.status() == f"StatusCode.{status}"
            assert "'authorization: Bearer <key>'" in refused.value.message()
        for headers in ({"authorization": f"Bearer {KEY}"}, {"x-api-key": KEY}):
            assert client.infer("churn", inputs, headers=headers).as_numpy("label").size == 1
    finally:
        client.close()
        assert stop(process) == 0


def _refused(address: str) -> bool:
    """Whether a new connection to gRPC is refused: a fresh channel per call, so one refusal
    never spreads to later calls through a channel's reconnect back-off. A call cut short by
    a server that is stopping (CANCELLED, or UNAVAILABLE after the connection was made: gRPC
    clients retry those) is not a refusal."""
    with grpc.insecure_channel(address) as channel:
        live = channel.unary_unary("/inference.GRPCInferenceService/ServerLive")
        try:
            live(b"", timeout=10)  # an empty ServerLiveRequest
        except grpc.RpcError as err:
            return err.code() == grpc.StatusCode.UNAVAILABLE and "refused" in err.details()
    return False


@pytest.mark.process
def test_grpc_keeps_listening_while_sighup_replaces_the_workers(telco_bundle):
    """HTTP's socket is the master's; gRPC's port is bound by each worker. New connections
    made one after another through a SIGHUP reload are never refused: the old workers stop
    serving gRPC only once a new one does (`web.handover`)."""
    grpc_port = free_port()
    process, url = start_gunicorn(ROOT / "model.bin", GRPC_PORT=str(grpc_port))
    address = f"127.0.0.1:{grpc_port}"
    try:
        wait_for(lambda: not _refused(address), 60, "gRPC to listen")
        old = set(workers(process.pid))
        refusals, attempts = 0, 0

        def replaced() -> bool:
            nonlocal refusals, attempts
            refusals += _refused(address)
            attempts += 1
            now = set(workers(process.pid))
            return len(now) == 2 and not now & old and attempts >= 50

        process.send_signal(signal.SIGHUP)
        wait_for(replaced, 60, "the new workers", every=0.005)
        refusals += sum(_refused(address) for _ in range(20))  # the new workers alone
        assert refusals == 0, f"{refusals} of {attempts + 20} connections refused"
    finally:
        assert stop(process) == 0


@pytest.mark.process
def test_sigterm_stops_grpc_and_http_cleanly(telco_bundle, telco_record):
    grpc_port = free_port()
    process, url = start_gunicorn(ROOT / "model.bin", GRPC_PORT=str(grpc_port))
    client = triton_grpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    wait_for(lambda: _live(client), 60, "gRPC to answer ServerLive")
    assert stop(process) == 0
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    with pytest.raises(grpc.FutureTimeoutError):  # nothing listens on the port any more
        grpc.channel_ready_future(channel).result(timeout=2)
    channel.close()
    assert "Traceback" not in Path(process.error_path).read_text()


# --- KServe's SDK, REST and gRPC, from its own virtualenv ---

def run_kserve_client(spec: dict) -> dict:
    assert KSERVE_PYTHON.exists(), "KServe's SDK is missing: run `make install`"
    done = subprocess.run([str(KSERVE_PYTHON), str(ROOT / "tests/clients/kserve/oip_client.py")],
                          input=json.dumps(spec), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.process
def test_kserve_sdk_over_rest_and_grpc_with_api_keys(telco_bundle, telco_record):
    grpc_port = free_port()
    process, url = start_gunicorn(ROOT / "model.bin", GRPC_PORT=str(grpc_port), API_KEYS=KEY)
    try:
        records = [*varied(telco_record, 9), {**telco_record, "contract": "One year"}]
        expected = requests.post(f"{url}/predict", json=records, timeout=10,
                                 headers={"X-API-Key": KEY}).json()
        spec = {"rest": url, "grpc": f"127.0.0.1:{grpc_port}", "model": "churn",
                "records": [{k: (math.nan if v is None else v) for k, v in r.items()}
                            for r in records],
                "fields": fields(telco_bundle), "api_key": KEY}
        results = wait_for(lambda: (lambda r: r if "error" not in r["grpc"] else None)(
            run_kserve_client(spec)), 60, "KServe's SDK to be answered over gRPC")
        for transport in ("rest", "grpc"):
            answer = results[transport]
            assert answer["ready"] is True and answer["id"] == "kserve-1"
            assert_same_answers(answer["outputs"], expected)
            assert "records[9]: 'One year' for field 'contract' read as the known category " \
                   "'one_year'" in answer["warnings"]
        assert "error" in run_kserve_client({**spec, "api_key": None})["grpc"]
    finally:
        assert stop(process) == 0


def test_the_docs_client_examples_run_as_written(oip_server):
    """docs/api.md's tritonclient and KServe SDK examples, against the test server's ports."""
    _, url, address = oip_server
    section = (ROOT / "docs/api.md").read_text().split("## Open Inference Protocol v2")[1]
    triton, kserve = re.findall(r"```python\n(.*?)```", section, re.S)
    host = url.removeprefix("http://")
    for code, python in ((triton, PYTHON), (kserve, KSERVE_PYTHON)):
        code = code.replace("localhost:9696", host).replace("localhost:9697", address)
        done = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        numbers = [float(n) for n in re.findall(r"0\.\d+", done.stdout)]
        assert len(numbers) == 2 and all(0 < n < 1 for n in numbers), done.stdout
    # the curl example's body, whole: every tensor the model takes, answered as /predict is
    body = json.loads(re.search(r"<<'JSON'\n(.*?)\nJSON\n", section, re.S)[1])
    answer = requests.post(f"{url}/v2/models/churn/infer", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    record = requests.get(f"{url}/model", timeout=30).json()["example"]
    expected = requests.post(f"{url}/predict", json=record, timeout=30).json()
    probability = next(o for o in answer.json()["outputs"] if o["name"] == "churn_probability")
    assert probability["data"] == [expected["churn_probability"]]
