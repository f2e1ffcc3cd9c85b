"""The plain path takes exactly the records the validator accepts without a warning; anything
else goes the general path, which names problems and warnings. Both give the same answers."""

import msgspec
import numpy as np
import pytest

from tabserve.model.validation import validate
from tabserve.serving.decoding import BodyDecoder
from tabserve.serving.predicting import Predictor


@pytest.fixture(scope="module")
def decoder(telco_bundle):
    return BodyDecoder(telco_bundle.schema, max_records=100)


@pytest.mark.parametrize("change", [
    {},
    {"total_charges": None},                    # null where training had missing values
    {"senior_citizen": True}, {"senior_citizen": 1},
    {"tenure": 12}, {"tenure": 12.5},
])
def test_plain_records_take_the_plain_path(decoder, telco_record, change):
    record = {**telco_record, **change}
    assert decoder.decode(msgspec.json.encode(record)).row is not None
    assert decoder.decode(msgspec.json.encode([record, record])).plain is not None


@pytest.mark.parametrize("change", [
    {"contract": " Two year "},                 # padded text: the validator trims it
    {"contract": "Ten year"},                   # unseen level: a warning
    {"senior_citizen": 1.0}, {"senior_citizen": " yes "},  # spellings the validator maps
    {"extra": 1},                               # unknown field: a warning
    {"tenure": "12"}, {"monthly_charges": None},  # errors
])
def test_other_records_take_the_general_path(decoder, telco_record, change):
    body = decoder.decode(msgspec.json.encode({**telco_record, **change}))
    assert body.row is None and body.plain is None and body.records is not None


def test_both_paths_answer_alike(decoder, telco_bundle, telco_record):
    predictor = Predictor(telco_bundle)
    plain = predictor.predict_body(decoder.decode(msgspec.json.encode(telco_record)))[0]
    general = predictor.predict([{**telco_record, "contract": f" {telco_record['contract']} "}])
    assert msgspec.to_builtins(plain)["churn_probability"] == \
        pytest.approx(general[0]["churn_probability"], abs=1e-6)  # row path vs batch path


@pytest.mark.parametrize("home_owner, region", [
    ([True, False, 1, 0], ["north", "south", "east", "west"]),  # booleans read as bytes
    (["Yes", "No", True, 0], ["north", None, "east", None]),    # spellings and nulls: looked up
])
def test_a_plain_batch_types_its_columns_as_the_validator_does(loan_bundle, home_owner, region):
    """The plain path reads levels and booleans off packed bytes; the validator maps each
    value in Python. Same columns, same answers."""
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
    predictor = Predictor(loan_bundle)
    plain = msgspec.to_builtins(predictor.predict_body(body))
    assert plain == predictor.predict(records)
