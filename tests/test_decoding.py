"""The plain path takes exactly the records the validator accepts without a warning; anything
else goes the general path, which names problems and warnings. Both give the same answers."""

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tabserve.model.validation import validate
from tabserve.serving.decoding import BodyDecoder
from tabserve.serving.codecs.json_answers import JsonAnswers
from tabserve.serving.core import Predictor


@pytest.fixture(scope="module")
def decoder(telco_bundle):
    return BodyDecoder(telco_bundle.schema, max_records=100)


@pytest.mark.parametrize("change", [
    {},
    {"totalcharges": None},                    # null where training had missing values
    {"seniorcitizen": True}, {"seniorcitizen": 1},
    {"tenure": 12}, {"tenure": 12.5},
])
def test_plain_records_take_the_plain_path(decoder, telco_record, change):
    record = {**telco_record, **change}
    assert decoder.decode(msgspec.json.encode(record)).row is not None
    assert decoder.decode(msgspec.json.encode([record, record])).plain is not None


@pytest.mark.parametrize("change", [
    {"contract": " two_year "},                # padded text: the validator trims it
    {"contract": "Ten year"},                   # unseen level: a warning
    {"seniorcitizen": 1.0}, {"seniorcitizen": " yes "},  # spellings the validator maps
    {"extra": 1},                               # unknown field: a warning
    {"tenure": "12"}, {"monthlycharges": None},  # errors
])
def test_other_records_take_the_general_path(decoder, telco_record, change):
    body = decoder.decode(msgspec.json.encode({**telco_record, **change}))
    assert body.row is None and body.plain is None and body.records is not None


def test_both_paths_answer_alike(decoder, telco_bundle, telco_record):
    answers = JsonAnswers(Predictor(telco_bundle))
    plain = answers.for_body(decoder.decode(msgspec.json.encode(telco_record)))[0]
    general = answers.for_records([{**telco_record, "contract": f" {telco_record['contract']} "}])
    assert msgspec.to_builtins(plain)["churn_probability"] == \
        pytest.approx(general[0]["churn_probability"], abs=1e-6)  # row path vs batch path


@pytest.mark.parametrize("home_owner, region", [
    ([True, False, 1, 0], ["north", "south", "east", "west"]),
    (["Yes", "No", True, 0], ["north", None, "east", None]),    # spellings and nulls
])
def test_a_plain_batch_types_its_columns_as_the_validator_does(loan_bundle, home_owner, region):
    """The plain path maps decoded values straight to codes and numbers; the validator
    checks each value first. Same columns, same answers."""
    decoder = BodyDecoder(loan_bundle.schema, max_records=10)
    records = [{"income": 40.0 + i if i else None, "debt": 10.0, "region": r, "home_owner": h}
               for i, (h, r) in enumerate(zip(home_owner, region))]
    assert set(records[0]) == set(loan_bundle.schema.names)
    body = decoder.decode(msgspec.json.encode(records))
    assert body.plain is not None
    validated = validate(loan_bundle.schema, records)
    assert not validated.problems and not validated.warnings
    for name, column in validated.columns.items():
        np.testing.assert_array_equal(np.asarray(body.plain[name], float),
                                      np.asarray(column, float), err_msg=name)
    answers = JsonAnswers(Predictor(loan_bundle))
    plain = msgspec.to_builtins(answers.for_body(body))
    assert plain == answers.for_records(records)


# values of every kind a client might send, near and far from what the loan schema accepts
ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([0.0, 1.0, 2.5]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["north", "south", " north", "North", "mars", "", "Yes", "No", "yes", "YES",
                     "TRUE", "f", "1", "0.0", " y ", "maybe"]))


@given(st.lists(st.fixed_dictionaries({"income": ANY_VALUE, "debt": ANY_VALUE,
                                       "region": ANY_VALUE, "home_owner": ANY_VALUE}),
                min_size=1, max_size=4))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_strict_types_accept_exactly_what_validates_cleanly(loan_bundle, records):
    """One validator: a body the plain path takes validates with no problem and no warning,
    to the same columns; a body it refuses has a problem, a warning, or text the validator
    had to trim or spell out (so the general path is needed to say so)."""
    schema = loan_bundle.schema
    decoder = BodyDecoder(schema, max_records=10)
    body = decoder.decode_plain(msgspec.json.encode(records))
    validated = validate(schema, records)
    clean = not validated.problems and not validated.warnings
    if body is not None:
        assert clean
        for name, column in validated.columns.items():
            np.testing.assert_array_equal(np.asarray(body.plain[name], float),
                                          np.asarray(column, float), err_msg=name)
    elif clean:  # refused, yet valid: only for a spelling the strict types leave to the
        # validator (padded or odd-case text, a boolean written 1.0/0.0)
        odd = [r[f.name] for r in records for f in schema.fields
               if f.kind.value == "boolean" and (r[f.name] not in f.boolean_table
                                                 or type(r[f.name]) is float)
               or f.kind.value == "categorical" and r[f.name] not in f.category_codes]
        assert odd, records
