"""Every endpoint and every bad-request case, through the Flask test client."""

import math

import msgspec
import pytest

from helpers import COURSE_CUSTOMER
from tabserve.web.app import create_app
from tabserve.web.config import Settings


def post(client, body, content_type="application/json"):
    data = body if isinstance(body, (bytes, str)) else msgspec.json.encode(body)
    return client.post("/predict", data=data, content_type=content_type)


def test_one_record_answers_one_object_with_course_fields(client, telco_record, telco_bundle):
    response = post(client, telco_record)
    assert response.status_code == 200
    answer = response.get_json()
    assert set(answer) == {"label", "probabilities", "churn_probability", "churn",
                           "model_version"}
    assert answer["label"] in ("yes", "no")
    assert isinstance(answer["churn"], bool)
    assert answer["churn"] == (answer["label"] == "yes")
    assert answer["churn_probability"] == pytest.approx(answer["probabilities"]["yes"])
    assert math.isclose(sum(answer["probabilities"].values()), 1.0, abs_tol=1e-6)
    assert answer["model_version"] == telco_bundle.version


def test_batch_answers_a_list_in_order(client, telco_record):
    long_tenure = {**telco_record, "tenure": 72, "contract": "two_year"}
    single = [post(client, r).get_json() for r in (telco_record, long_tenure)]
    response = post(client, [telco_record, long_tenure])
    assert response.status_code == 200
    batch = response.get_json()
    assert [a["label"] for a in batch] == [a["label"] for a in single]
    for in_batch, alone in zip(batch, single):  # equal within the parity bound: one record
        # walks the trees as arrays, a batch looks them up in tables (see serving.scorers.trees)
        assert in_batch["churn_probability"] == pytest.approx(alone["churn_probability"], abs=1e-6)
    assert single[0]["churn_probability"] > single[1]["churn_probability"]


def test_plain_bodies_skip_flask_and_answer_as_the_flask_route_does(client, telco_record,
                                                                    monkeypatch):
    from tabserve.web import app as web_app
    routed_bodies = []
    read_body = web_app._json_body
    monkeypatch.setattr(web_app, "_json_body",
                        lambda: routed_bodies.append(1) or read_body())
    for body in (telco_record, [telco_record, {**telco_record, "tenure": 1}]):
        direct = post(client, body)  # answered by PlainPredictions
        assert not routed_bodies
        routed = post(client, body, content_type="application/json; charset=utf-8")
        assert routed_bodies.pop()
        assert direct.status_code == routed.status_code == 200
        assert direct.get_data() == routed.get_data()
        assert ({k: v for k, v in direct.headers if k != "X-Request-ID"}
                == {k: v for k, v in routed.headers if k != "X-Request-ID"})


def test_a_body_the_plain_path_refuses_is_tried_on_it_once(client, telco_record, monkeypatch):
    """The route parses a refused body the general way only, not with the typed decoder again."""
    from tabserve.serving.decoding import BodyDecoder
    tried = []
    decode_plain = BodyDecoder.decode_plain
    monkeypatch.setattr(BodyDecoder, "decode_plain",
                        lambda self, raw: tried.append(raw) or decode_plain(self, raw))
    answer = post(client, {**telco_record, "extra": 1})
    assert answer.status_code == 200 and "unknown field 'extra'" in answer.get_json()["warnings"][0]
    assert len(tried) == 1


def test_warnings_for_unknown_fields_and_unseen_categories(client, telco_record):
    answer = post(client, {**telco_record, "contract": "Ten year", "customer_id": "x"}).get_json()
    assert "churn" in answer
    assert any("unseen category 'Ten year'" in w for w in answer["warnings"])
    assert any("unknown field 'customer_id'" in w for w in answer["warnings"])


def test_nullable_field_accepts_null(client, telco_record):
    assert post(client, {**telco_record, "totalcharges": None}).status_code == 200


def problems(response):
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == response.status_code and body["title"] and body["detail"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body


@pytest.mark.parametrize("body, content_type, status, detail", [
    (b"{not json", "application/json", 400, "not valid JSON"),
    (b"", "application/json", 400, "the body is empty"),
    (b" \n", "application/json", 400, "the body is empty"),
    (b"\xff\xfe", "application/json", 400, "not valid JSON"),
    (b'{"tenure": NaN}', "application/json", 400, "not valid JSON"),
    (b'{"tenure": 1e999}', "application/json", 400, "not valid JSON"),
    (b'"a string"', "application/json", 400, "got string"),
    (b"42", "application/json", 400, "got number"),
    (b"null", "application/json", 400, "got null"),
    (b"[]", "application/json", 400, "the batch is empty"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "nested too deeply"),
    (b'{"tenure": ' + b"[" * 5000 + b"]" * 5000 + b"}", "application/json", 400,
     "nested too deeply"),
    (b"[1, []]", "application/json", 400, "expected a JSON object, got number"),
    (b"{}", "text/plain", 415, "Content-Type: application/json"),
    (b"{}", "", 415, "Content-Type: application/json"),
])
def test_malformed_bodies(client, body, content_type, status, detail):
    response = post(client, body, content_type)
    assert response.status_code == status
    assert detail in problems(response)["detail"]


@pytest.mark.parametrize("change, field, message", [
    ({"tenure": "abc"}, "tenure", "expected a number, got string 'abc'"),
    ({"totalcharges": "29.85"}, "totalcharges", "send the number itself, without quotes (29.85)"),
    ({"contract": 5}, "contract", "expected a string, got number 5"),
    ({"contract": {"a": 1}}, "contract", "expected a string, got object"),
    ({"monthlycharges": None}, "monthlycharges", "null is not allowed"),
    ({"seniorcitizen": "sometimes"}, "seniorcitizen", "expected a boolean"),
])
def test_wrong_values_name_the_field(client, telco_record, change, field, message):
    response = post(client, {**telco_record, **change})
    assert response.status_code == 422
    body = problems(response)
    assert body["errors"] == [{"field": field, "message": body["errors"][0]["message"]}]
    assert message in body["errors"][0]["message"]
    assert body["detail"].startswith(f"{field}: ")


def test_missing_field(client, telco_record):
    record = dict(telco_record)
    del record["tenure"]
    body = problems(post(client, record))
    assert body["errors"] == [{"field": "tenure", "message": "required field is missing"}]


def test_batch_problems_name_the_record_index_and_all_fields(client, telco_record):
    bad = {**telco_record, "tenure": "x", "contract": 1}
    response = post(client, [telco_record, telco_record, bad])
    assert response.status_code == 422
    errors = problems(response)["errors"]
    assert {(e["index"], e["field"]) for e in errors} == {(2, "tenure"), (2, "contract")}


def test_batch_over_the_limit(client, telco_record):
    response = post(client, [telco_record] * 51)  # the fixture's limit is 50
    assert response.status_code == 413
    assert "limit of 50 (MAX_BATCH_RECORDS)" in problems(response)["detail"]


def test_body_over_the_size_limit(client):
    response = post(client, b"[" + b" " * 300_000 + b"]")  # the fixture's limit is 200,000
    assert response.status_code == 413
    assert "MAX_BODY_BYTES" in problems(response)["detail"]


def test_many_problems_are_capped_but_counted(telco_bundle):
    client = create_app(telco_bundle, Settings()).test_client()
    body = problems(post(client, [{}] * 20))
    assert len(body["errors"]) == 100 and body["errors_total"] == 20 * 19


def test_unknown_route_and_wrong_method_are_problem_json(client):
    assert problems(client.get("/nope"))["status"] == 404
    response = client.get("/predict")
    assert problems(response)["status"] == 405 and "POST" in response.headers["Allow"]
    assert problems(response)["detail"] == \
        "GET is not allowed on /predict: use POST with a JSON body"



def test_keys_alike_in_spelling_are_read_as_the_fields_with_one_warning(client, telco_record):
    exact = post(client, telco_record).get_json()
    sent = {{"seniorcitizen": "SeniorCitizen", "paymentmethod": "payment_method",
             "monthlycharges": "Monthly-Charges"}.get(k, k): v for k, v in telco_record.items()}
    for answer in (post(client, sent).get_json(), post(client, [telco_record, sent]).get_json()[1]):
        assert answer["churn_probability"] == pytest.approx(exact["churn_probability"], abs=1e-12)
        assert answer["warnings"] == ["fields read by their loose spelling: 'Monthly-Charges' as "
                                      "'monthlycharges', 'SeniorCitizen' as 'seniorcitizen', "
                                      "'payment_method' as 'paymentmethod'"]
    assert "warnings" not in post(client, [telco_record, sent]).get_json()[0]


def test_the_courses_customer_gets_the_courses_answer(client):
    """The default model is trained on the course's layout: its client's record, unchanged."""
    answer = post(client, COURSE_CUSTOMER).get_json()
    assert answer["churn"] is True and 0.5 <= answer["churn_probability"] <= 1
    assert "warnings" not in answer


def test_two_keys_alike_in_spelling_are_refused_by_name(client, telco_record):
    sent = {**telco_record, "SeniorCitizen": 0, "senior-citizen": 1}
    del sent["seniorcitizen"]
    errors = {e["field"]: e["message"] for e in problems(post(client, sent))["errors"]}
    assert errors == {"seniorcitizen": "required field is missing (got 'SeniorCitizen' or "
                                       "'senior-citizen', alike in spelling but ambiguous: "
                                       "send the field's exact name)"}


def test_levels_that_differ_only_in_spelling_are_read_as_the_known_level(client, telco_record):
    exact = post(client, telco_record).get_json()
    loose = {**telco_record, "contract": "Month-to-month", "paymentmethod": "Electronic check",
             "internetservice": " DSL "}
    for answer in (post(client, loose).get_json(), post(client, [loose, loose]).get_json()[1]):
        assert answer["churn_probability"] == pytest.approx(exact["churn_probability"], abs=1e-9)
        assert "'Month-to-month' for field 'contract' read as the known category " \
               "'month-to-month' (they differ only in case, spaces, '-' or '_')" in answer["warnings"]
        assert len(answer["warnings"]) == 3
    unseen = post(client, {**telco_record, "contract": "month-by-month"}).get_json()
    assert unseen["warnings"] == ["unseen category 'month-by-month' for field 'contract' "
                                  "(encoded as none of the known categories)"]


def test_levels_alike_in_loose_spelling_stay_apart():
    from tabserve.model.schema import Field, Kind
    f = Field("plan", Kind.CATEGORICAL, False, categories=("Pro", "pro", "Basic plan"))
    assert f.loose_codes == {"basicplan": 2}  # "PRO" could be either: it stays unseen


def test_numbers_outside_the_training_range_are_answered_with_a_warning(client, telco_record):
    answer = post(client, {**telco_record, "tenure": -5}).get_json()
    assert answer["warnings"] == ["-5 for field 'tenure' is outside the range seen in training "
                                  "(0 to 72): the answer there is an extrapolation"]
    batch = post(client, [telco_record, {**telco_record, "monthlycharges": 500}]).get_json()
    assert "warnings" not in batch[0]
    assert batch[1]["warnings"][0].startswith("500 for field 'monthlycharges' is outside")
    assert "warnings" not in post(client, {**telco_record, "tenure": 72}).get_json()


def test_a_batch_wrapped_in_an_object_says_a_batch_is_a_bare_list(client, telco_record):
    body = problems(post(client, {"records": [telco_record, telco_record]}))
    assert body["status"] == 400
    assert body["errors"] == [{"field": "records", "message": (
        "'records' is not a field of the model: a batch is a bare JSON list of records, "
        "[{...}, {...}], sent as the whole body")}]


def test_health_ready_model_and_index(client, telco_bundle):
    assert client.get("/health").get_json() == {"status": "ok"}
    assert client.get("/ready").get_json() == {"status": "ready",
                                               "model_version": telco_bundle.version}
    model = client.get("/model").get_json()
    assert model["target"] == "churn" and model["classes"] == ["no", "yes"]
    assert model["threshold"] == 0.5 and model["threshold_rule"]
    assert model["metrics"]["test"]["roc_auc"] > 0.8
    assert model["metadata"]["data"]["sha256"]
    fields = {f["name"]: f for f in model["schema"]["fields"]}
    assert fields["totalcharges"]["nullable"] is True
    assert "month-to-month" in fields["contract"]["categories"]
    index = client.get("/").get_json()
    assert "POST /predict" in index["endpoints"] and index["model_version"]


class BrokenEncoder:
    """An encoder that fails on every path, as a bug would."""

    def encode_row(self, row):
        raise RuntimeError("secret internals")

    def encode(self, columns):
        raise RuntimeError("secret internals")


@pytest.mark.parametrize("path, many", [("/predict", False), ("/predict", True),
                                        ("/explain", False)])
def test_unexpected_errors_are_a_plain_500(telco_bundle, monkeypatch, caplog, path, many):
    """One record (the plain path outside Flask), a batch and /explain: a bug is logged with
    its cause and answered with a 500 problem that leaks nothing."""
    app = create_app(telco_bundle, Settings())
    monkeypatch.setattr(app.extensions["tabserve"].predictor, "encoder", BrokenEncoder())
    body = [telco_bundle.example] * 3 if many else telco_bundle.example
    response = app.test_client().post(path, json=body)
    assert response.status_code == 500
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.get_json()["title"] == "Internal Server Error"
    assert "secret" not in response.get_data(as_text=True)
    assert "secret internals" in caplog.text  # in the log, with its cause


def test_non_churn_binary_model_answers_its_own_target(loan_client, loan_bundle):
    answer = post(loan_client, loan_bundle.example).get_json()
    assert {"approved", "approved_probability", "label", "probabilities"} <= set(answer)
    body = problems(post(loan_client, {**loan_bundle.example, "debt": "lots"}))
    assert body["errors"][0]["field"] == "debt"


def test_multiclass_model_answers_every_class(flower_client, flower_bundle):
    answer = post(flower_client, [flower_bundle.example]).get_json()[0]
    assert set(answer["probabilities"]) == {"setosa", "versicolor", "virginica"}
    assert answer["label"] == max(answer["probabilities"], key=answer["probabilities"].get)
    assert "species" not in answer and "species_probability" not in answer


def test_every_route_is_described_once_and_every_description_is_a_route(telco_bundle):
    """The OpenAPI document and `GET /`'s index come from `openapi.ENDPOINTS`: a route added
    to the app without its description (or a description left behind) fails here."""
    from tabserve.web.openapi import ENDPOINTS

    app = create_app(telco_bundle, Settings())
    served = {(method, rule.rule.replace("<name>", "{model}").replace("<version>", "{version}"))
              for rule in app.url_map.iter_rules() if rule.endpoint != "static"
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    described = [(e.method, e.path) for e in ENDPOINTS]
    assert len(described) == len(set(described))
    assert served == set(described)
    document = app.test_client().get("/openapi.json").get_json()
    operations = {(method.upper(), path) for path, ops in document["paths"].items()
                  for method in ops}
    version = telco_bundle.version
    assert operations == {(m, p.replace("{model}", "churn").replace("{version}", version))
                          for m, p in described}
