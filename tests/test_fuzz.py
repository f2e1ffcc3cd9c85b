"""Property-based tests: whatever JSON a client sends, the answer is a prediction or a 4xx that
names the field, never a 5xx."""

import os

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tabserve.web.app import create_app
from tabserve.web.config import Settings

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)
# `make test-unit` asks for fewer examples (TABSERVE_FUZZ_EXAMPLES) to stay quick; CI runs 300
FUZZ = settings(max_examples=int(os.environ.get("TABSERVE_FUZZ_EXAMPLES", 300)), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.data(), value=JSON)
def test_any_value_in_any_field(telco_bundle, data, value):
    client = create_app(telco_bundle, Settings()).test_client()
    field = data.draw(st.sampled_from(telco_bundle.schema.names))
    record = {**telco_bundle.example, field: value}
    response = client.post("/predict", data=msgspec.json.encode(record),
                           content_type="application/json")
    assert response.status_code in (200, 422), response.get_data(as_text=True)
    body = response.get_json()
    if response.status_code == 422:
        assert [e["field"] for e in body["errors"]] == [field]
    else:
        assert 0 <= body["churn_probability"] <= 1


@FUZZ
@given(body=JSON)
def test_any_json_body(telco_bundle, body):
    client = create_app(telco_bundle, Settings()).test_client()
    for path in ("/predict", "/explain", "/v2/models/churn/infer"):
        response = client.post(path, data=msgspec.json.encode(body),
                               content_type="application/json")
        assert 400 <= response.status_code < 500 or response.status_code == 200
        assert "Traceback" not in response.get_data(as_text=True)


@FUZZ
@given(raw=st.binary(max_size=200))
def test_any_bytes(telco_bundle, raw):
    client = create_app(telco_bundle, Settings()).test_client()
    response = client.post("/predict", data=raw, content_type="application/json")
    assert response.status_code in (200, 400, 422)
