"""OpenAPI document, Open Inference Protocol v2, explanations, request ids, metrics: through the
Flask test client."""

import pytest
from jsonschema import Draft202012Validator, ValidationError
from openapi_spec_validator import validate
from referencing import Registry, Resource

from helpers import fit_bundle, loan_frame, records_from_csv
from tabserve.web.app import create_app
from tabserve.tables import load_csv
from tabserve.web.config import Settings


def component_validator(document: dict, name: str) -> Draft202012Validator:
    """A JSON Schema validator for one of the document's components, $refs resolved."""
    registry = Registry().with_resource("urn:doc", Resource.opaque(document))
    schema = {"$ref": f"urn:doc#/components/schemas/{name}"}
    return Draft202012Validator(schema, registry=registry)


@pytest.mark.parametrize("client_name", ["client", "loan_client", "flower_client"])
def test_openapi_document_is_valid_and_describes_the_model(request, client_name):
    client = request.getfixturevalue(client_name)
    document = client.get("/openapi.json").get_json()
    validate(document)  # openapi-spec-validator: raises on an invalid document
    record = document["components"]["schemas"]["Record"]
    model = client.get("/model").get_json()
    assert record["required"] == [f["name"] for f in model["schema"]["fields"]]
    for f in model["schema"]["fields"]:
        prop = record["properties"][f["name"]]
        if f["kind"] == "categorical":
            assert [v for v in prop["enum"] if v is not None] == f["categories"]
        assert Draft202012Validator(prop).is_valid(None) == f["nullable"]
    component_validator(document, "Record").validate(record["example"])
    answer = client.post("/predict", json=record["example"]).get_json()
    component_validator(document, "Answer").validate(answer)
    problem = client.post("/predict", json={}).get_json()
    component_validator(document, "Problem").validate(problem)


def test_answer_schema_rejects_a_wrong_answer(client):
    document = client.get("/openapi.json").get_json()
    with pytest.raises(ValidationError, match="'Maybe' is not one of"):
        component_validator(document, "Answer").validate({"label": "Maybe"})


def response_validator(document: dict, path: str, status: str = "200") -> Draft202012Validator:
    """A JSON Schema validator for a path's POST response body, $refs resolved."""
    registry = Registry().with_resource("urn:doc", Resource.opaque(document))
    pointer = path.replace("/", "~1")
    return Draft202012Validator(
        {"$ref": f"urn:doc#/paths/{pointer}/post/responses/{status}/content/application~1json/schema"},
        registry=registry)


@pytest.mark.parametrize("target", ["label", "probabilities", "warnings", "model_version",
                                    "approved", "Loan Approved"])
def test_every_answer_validates_against_the_documented_response(tmp_path, target):
    """A binary target named like one of the answer's own keys: the document requires only the
    keys that are sent (no `<target>` and `<target>_probability` then)."""
    csv = tmp_path / "loans.csv"
    loan_frame().rename(columns={"approved": target}).to_csv(csv, index=False)
    bundle = fit_bundle(csv, target, candidates=["logistic_regression"], max_trials=1)
    client = create_app(bundle, Settings()).test_client()
    document = client.get("/openapi.json").get_json()
    records = records_from_csv(load_csv(csv).head(20), bundle.schema)
    answers = [client.post("/predict", json=records[0]),
               client.post("/predict", json=records),
               client.post("/predict", json={**records[1], "unknown": 1, "region": "mars"})]
    validator = response_validator(document, "/predict")
    for answer in answers:
        assert answer.status_code == 200
        validator.validate(answer.get_json())
    shown = answers[0].get_json()
    target_keys = target not in ("label", "probabilities", "warnings", "model_version")
    # keys spelt as the course's clients read them, whatever the target column's spelling
    key = {"Loan Approved": "loan_approved"}.get(target, target)
    assert (f"{key}_probability" in shown) == target_keys
    assert not target_keys or isinstance(shown[key], bool)
    assert answers[2].get_json()["warnings"]  # the warnings key, validated above
    # and the validator would refuse an answer lacking a documented key
    with pytest.raises(ValidationError):
        validator.validate({k: v for k, v in shown.items() if k != "model_version"})


def test_the_documented_boolean_spellings_are_the_accepted_ones(loan_bundle):
    """Every spelling the validator takes as it stands is in the OpenAPI document, and the
    document lists nothing the validator refuses."""
    from tabserve.model.validation import validate
    document = create_app(loan_bundle, Settings()).test_client().get("/openapi.json").get_json()
    field = loan_bundle.schema.field("home_owner")
    prop = Draft202012Validator(document["components"]["schemas"]["Record"]["properties"][
        field.name])
    documented = next(s["enum"] for s in prop.schema["anyOf"] if s.get("type") == "string")
    accepted = [k for k in field.boolean_table if isinstance(k, str)]
    assert sorted(documented) == sorted(accepted) and {"Yes", "no", "TRUE", "f"} <= set(accepted)
    for value in [*accepted, True, False, 0, 1, 1.0]:
        assert prop.is_valid(value)
        result = validate(loan_bundle.schema, [{**loan_bundle.example, field.name: value}])
        assert not result.problems and not result.warnings
    assert not prop.is_valid("maybe") and not prop.is_valid(2)


def test_index_points_at_docs_and_predict(client):
    endpoints = client.get("/").get_json()["endpoints"]
    assert {"POST /predict", "GET /docs", "GET /model", "GET /openapi.json"} <= set(endpoints)
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert b"/openapi.json" in page.data and b"cdn" not in page.data.lower()


def test_request_id_is_echoed_or_generated(client, telco_record):
    given = client.post("/predict", json=telco_record, headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    made = client.get("/health")
    assert len(made.headers["X-Request-ID"]) == 32
    hostile = client.get("/health", headers={"X-Request-ID": "x" * 500})
    assert hostile.headers["X-Request-ID"] != "x" * 500
    assert given.headers["X-Model-Version"] == given.get_json()["model_version"]


# --- Open Inference Protocol v2 ---

def tensors(records: list[dict], bundle) -> list[dict]:
    datatypes = {"numeric": "FP64", "categorical": "BYTES", "boolean": "INT64"}
    return [{"name": f.name, "shape": [len(records)], "datatype": datatypes[f.kind.value],
             "data": [r[f.name] for r in records]} for f in bundle.schema.fields]


def test_v2_health_and_metadata(client, telco_bundle):
    assert client.get("/v2/health/live").get_json() == {"live": True}
    assert client.get("/v2/health/ready").get_json() == {"ready": True}
    assert client.get("/v2").get_json()["name"] == "tabserve"
    meta = client.get("/v2/models/churn").get_json()
    assert meta["name"] == "churn" and meta["versions"] == [telco_bundle.version]
    assert {i["name"] for i in meta["inputs"]} == set(telco_bundle.schema.names)
    assert {i["datatype"] for i in meta["inputs"]} == {"FP64", "BYTES", "INT64"}
    assert client.get("/v2/models/churn/ready").get_json() == {"name": "churn", "ready": True}
    missing = client.get("/v2/models/other")
    assert missing.status_code == 404 and "other" in missing.get_json()["error"]


def test_v2_infer_equals_predict(client, telco_bundle, telco_record):
    records = [telco_record, {**telco_record, "tenure": 60, "contract": "two_year"}]
    expected = client.post("/predict", json=records).get_json()
    response = client.post("/v2/models/churn/infer",
                           json={"id": "r1", "inputs": tensors(records, telco_bundle)})
    assert response.status_code == 200
    body = response.get_json()
    assert body["model_name"] == "churn" and body["id"] == "r1"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["label"]["data"] == [a["label"] for a in expected]
    assert outputs["probabilities"]["shape"] == [2, 2]
    assert outputs["churn_probability"]["data"] == pytest.approx(
        [a["churn_probability"] for a in expected], abs=1e-12)


def test_v2_reads_loosely_spelled_levels_as_predict_does(client, telco_bundle, telco_record):
    loose = {**telco_record, "contract": "Month-to-month"}
    expected = client.post("/predict", json=telco_record).get_json()
    body = client.post("/v2/models/churn/infer",
                       json={"inputs": tensors([loose], telco_bundle)}).get_json()
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["churn_probability"]["data"] == pytest.approx(
        [expected["churn_probability"]], abs=1e-9)
    assert "read as the known category 'month-to-month'" in body["parameters"]["warnings"]


def test_model_name_is_configurable(telco_bundle):
    client = create_app(telco_bundle, Settings(model_name="churn-v1")).test_client()
    assert client.get("/v2/models/churn-v1/ready").status_code == 200
    assert client.get("/v2/models/churn/ready").status_code == 404


@pytest.mark.parametrize("body, message", [
    (b"not json", "not valid JSON"),
    (b'{"inputs": 3}', "list of 'inputs'"),
    (b'{"inputs": [{"name": "tenure"}]}', "'data' list"),
    (b'{"inputs": [{"name": "tenure", "shape": [1], "datatype": "FP64", "data": [1]}]}',
     "missing input tensors: gender"),
])
def test_v2_bad_requests(client, body, message):
    response = client.post("/v2/models/churn/infer", data=body, content_type="application/json")
    assert response.status_code == 400 and message in response.get_json()["error"]


def test_v2_invalid_values_name_the_field(client, telco_bundle, telco_record):
    inputs = tensors([telco_record], telco_bundle)
    next(t for t in inputs if t["name"] == "tenure")["data"] = ["twelve"]
    response = client.post("/v2/models/churn/infer", json={"inputs": inputs})
    assert response.status_code == 400
    assert "records[0].tenure: expected a number" in response.get_json()["error"]


# --- explanations ---

@pytest.mark.parametrize("csv_name, target", [("loan_csv", "approved"),
                                              ("flower_csv", "species")])
@pytest.mark.parametrize("candidate", ["logistic_regression", "xgboost", "blend"])
def test_explanations_add_up_to_the_raw_score(request, csv_name, target, candidate):
    csv = request.getfixturevalue(csv_name)
    bundle = fit_bundle(csv, target, candidates=[candidate],
                        max_trials=2 if candidate == "blend" else 1)
    client = create_app(bundle, Settings()).test_client()
    frame = load_csv(csv).head(40)
    records = records_from_csv(frame, bundle.schema)  # missing values included
    explanations = client.post("/explain", json=records).get_json()
    answers = client.post("/predict", json=records).get_json()
    # the model's own raw scores: log-odds (binary) or per-class margins
    matrix = bundle.pipeline[:-1].transform(frame)
    model = bundle.pipeline[-1]
    margins = model.predict(matrix, output_margin=True) if hasattr(model, "get_booster") \
        else model.decision_function(matrix)
    if bundle.calibration is not None:  # explanations add up to the calibrated log-odds
        margins = bundle.calibration.slope * margins + bundle.calibration.intercept
    for explanation, answer, margin in zip(explanations, answers, margins):
        assert explanation["label"] == answer["label"]
        if bundle.task == "binary":
            assert set(explanation["contributions"]) == set(bundle.schema.names)
            total = explanation["base_value"] + sum(explanation["contributions"].values())
            assert total == pytest.approx(explanation["raw_score"], abs=1e-5)
            assert explanation["raw_score"] == pytest.approx(float(margin), abs=1e-5)
        else:
            for k, label in enumerate(bundle.classes):
                total = explanation["base_value"][label] + \
                    sum(explanation["contributions"][label].values())
                assert total == pytest.approx(explanation["raw_score"][label], abs=1e-5)
                assert explanation["raw_score"][label] == pytest.approx(float(margin[k]),
                                                                        abs=1e-5)


def test_explain_names_a_model_kind_it_cannot_explain(loan_csv):
    bundle = fit_bundle(loan_csv, "approved", candidates=["random_forest"])
    response = create_app(bundle, Settings()).test_client().post("/explain", json=bundle.example)
    assert response.status_code == 501
    assert response.get_json()["detail"] == (
        "explanations are available for CatBoost, HistGradientBoosting, LightGBM, logistic "
        "regression and XGBoost models and blends of them; this model is a random forest")


def test_explain_validates_like_predict(client, telco_record):
    response = client.post("/explain", json={**telco_record, "tenure": "x"})
    assert response.status_code == 422 and response.get_json()["errors"][0]["field"] == "tenure"


# --- metrics in one process ---

def test_metrics_count_requests_labels_and_problems(telco_bundle, telco_record):
    client = create_app(telco_bundle, Settings()).test_client()
    client.post("/predict", json=[telco_record] * 3)
    client.post("/predict", json={**telco_record, "tenure": "x", "contract": 1})
    response = client.get("/metrics")
    text = response.get_data(as_text=True)
    assert response.headers["Content-Type"].count("charset") == 1
    assert 'tabserve_requests_total{endpoint="/predict",method="POST",status="200"} 1.0' in text
    assert 'tabserve_requests_total{endpoint="/predict",method="POST",status="422"} 1.0' in text
    assert "tabserve_records_predicted_total 3.0" in text
    assert 'tabserve_validation_failures_total{field="tenure"} 1.0' in text
    assert 'tabserve_validation_failures_total{field="contract"} 1.0' in text
    assert 'tabserve_request_duration_seconds_count{endpoint="/predict"} 2.0' in text


@pytest.mark.parametrize("path", ["/health", "/docs", "/nope"])
def test_security_headers_on_every_response(client, path):
    headers = client.get(path).headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]


def test_errors_leak_no_internals(client, telco_record):
    for response in (client.post("/predict", data=b"{", content_type="application/json"),
                     client.post("/predict", json={**telco_record, "tenure": "x"}),
                     client.get("/nope")):
        text = response.get_data(as_text=True)
        assert "Traceback" not in text and "site-packages" not in text
        assert "scikit-learn" not in text and "werkzeug" not in text.lower()
