"""Schema inference and request validation, as tables."""

import math

import numpy as np
import pandas as pd
import pytest

from tabserve.model.frames import columns_from_frame
from tabserve.model.schema import MISSING_CODE, UNSEEN_CODE, Dropped, Kind, Schema
from tabserve.model.validation import validate
from tabserve.training.schema_inference import infer_schema, ordered_levels

N = 40


def column(values) -> pd.Series:
    """A training column as `load_csv` gives it: strings, NA for missing."""
    return pd.Series([None if v is None else str(v) for v in values], dtype=object)


def infer_one(values):
    frame = pd.DataFrame({"x": column(values), "y": column(["a", "b"] * (len(values) // 2))})
    schema = infer_schema(frame, "y")
    return schema.fields[0] if schema.fields else schema.dropped[0]


@pytest.mark.parametrize("values, kind, nullable", [
    ([1.5, 2.25, 3, 4] * (N // 4), Kind.NUMERIC, False),
    ([1, 2, None, 4] * (N // 4), Kind.NUMERIC, True),
    ([0, 1] * (N // 2), Kind.BOOLEAN, False),
    (["Yes", "No"] * (N // 2), Kind.BOOLEAN, False),
    (["true", "FALSE", None, "True"] * (N // 4), Kind.BOOLEAN, True),
    (["red", "green", "blue", "red"] * (N // 4), Kind.CATEGORICAL, False),
    (["Male", "Female"] * (N // 2), Kind.CATEGORICAL, False),
    (["1", "2", "3+", "1"] * (N // 4), Kind.CATEGORICAL, False),
    (["a", None, "a", "a"] * (N // 4), Kind.CATEGORICAL, True),
])
def test_kind_inference(values, kind, nullable):
    f = infer_one(values)
    assert (f.kind, f.nullable) == (kind, nullable)


@pytest.mark.parametrize("values, reason", [
    ([7] * N, "constant"),
    ([None] * N, "every value is missing"),
    (list(range(100, 100 + N)), "identifier"),
    ([f"cust-{i}" for i in range(N)], "identifier"),
])
def test_useless_columns_are_dropped_with_a_reason(values, reason):
    dropped = infer_one(values)
    assert isinstance(dropped, Dropped) and reason in dropped.reason


def test_unique_floats_are_not_mistaken_for_an_identifier():
    assert infer_one([i + 0.5 for i in range(N)]).kind is Kind.NUMERIC


def test_categories_are_kept_most_frequent_first():
    f = infer_one(["b", "a", "b", "c"] * (N // 4))
    assert f.categories == ("b", "a", "c")


def test_boolean_spellings_are_remembered():
    assert infer_one(["Yes", "No"] * (N // 2)).spellings == ("Yes", "No")


@pytest.fixture(scope="module")
def schema() -> Schema:
    frame = pd.DataFrame({
        "age": column([30, 40, None, 50] * 10),
        "income": column([1.5, 2.5, 3.5, 4.5] * 10),
        "colour": column(["red", "blue", "red", "green"] * 10),
        "member": column(["Yes", "No"] * 20),
        "target": column(["a", "b"] * 20),
    })
    return infer_schema(frame, "target")


GOOD = {"age": 30, "income": 2.0, "colour": "red", "member": "Yes"}


@pytest.mark.parametrize("change, field, message", [
    ({"income": "abc"}, "income", "expected a number, got string 'abc'"),
    # as a CSV or the Kaggle telco file spells them: say what JSON wants instead
    ({"income": "29.85"}, "income",
     "expected a number, got string '29.85': send the number itself, without quotes (29.85)"),
    ({"income": " "}, "income", "this field needs a number"),
    ({"age": " "}, "age", "send null for a missing value"),
    ({"income": None}, "income", "null is not allowed"),
    ({"income": True}, "income", "expected a number, got boolean true"),
    ({"income": {"a": 1}}, "income", "expected a number, got object"),
    ({"income": [1]}, "income", "expected a number, got array"),
    ({"income": math.inf}, "income", "expected a finite number"),
    ({"income": math.nan}, "income", "expected a finite number"),
    ({"age": math.inf}, "age", "expected a finite number"),
    ({"colour": 5}, "colour", "expected a string, got number 5"),
    ({"colour": None}, "colour", "null is not allowed"),
    ({"member": "maybe"}, "member", "expected a boolean"),
    ({"member": 2}, "member", "expected a boolean"),
    ({"member": [True]}, "member", "got array"),
])
def test_invalid_values_are_named(schema, change, field, message):
    result = validate(schema, [{**GOOD, **change}], indexed=False)
    assert len(result.problems) == 1
    problem = result.problems[0]
    assert problem.field == field and problem.index is None
    assert message in problem.message


@pytest.mark.parametrize("member, expected", [
    ("Yes", 1.0), ("no", 0.0), (" YES ", 1.0), (True, 1.0), (False, 0.0), (1, 1.0), (0, 0.0),
    ("true", 1.0),
])
def test_boolean_spellings_accepted(schema, member, expected):
    result = validate(schema, [{**GOOD, "member": member}])
    assert not result.problems and result.columns["member"][0] == expected


def test_null_is_allowed_where_training_had_missing_values(schema):
    result = validate(schema, [{**GOOD, "age": None}])
    assert not result.problems and np.isnan(result.columns["age"][0])


def test_missing_fields_are_all_reported_with_record_index(schema):
    result = validate(schema, [GOOD, {"colour": "red"}])
    assert {(p.index, p.field) for p in result.problems} == {(1, "age"), (1, "income"),
                                                             (1, "member")}
    assert all("required field is missing" in p.message for p in result.problems)
    assert str(result.problems[0]).startswith("records[1].")


def test_unknown_fields_and_unseen_categories_are_warnings(schema):
    result = validate(schema, [{**GOOD, "colour": " purple ", "shoe_size": 42, "target": "a"}])
    assert not result.problems
    warnings = " | ".join(result.warnings[0])
    assert "unseen category 'purple'" in warnings
    assert "unknown field 'shoe_size'" in warnings
    assert "the target is not an input" in warnings


def test_categories_compare_after_trimming(schema):
    result = validate(schema, [{**GOOD, "colour": "  blue "}])
    colour = schema.field("colour")
    assert not result.warnings
    assert colour.categories[result.columns["colour"][0]] == "blue"


def test_categorical_codes_for_unseen_and_null():
    frame = pd.DataFrame({"c": column(["a", "b", None, "a"] * 10), "t": column(["x", "y"] * 20)})
    schema = infer_schema(frame, "t")
    codes = validate(schema, [{"c": "a"}, {"c": "zzz"}, {"c": None}, {"c": "b"}]).columns["c"]
    assert codes.tolist() == [0, UNSEEN_CODE, MISSING_CODE, 1]
    assert columns_from_frame(schema, frame)["c"][:4].tolist() == [0, 1, MISSING_CODE, 0]


def test_levels_written_as_whole_numbers_are_found_by_number():
    """An imported encoder that learnt 0/1 or codes: JSON numbers find their level, an
    unseen number is an unseen level (a warning), text works as before."""
    from tabserve.model.schema import Field

    field = Field("grade", Kind.CATEGORICAL, False, categories=("1", "0", "12"))
    schema = Schema(target="t", fields=(field,))
    result = validate(schema, [{"grade": 1}, {"grade": 0.0}, {"grade": "12"}, {"grade": 5},
                               {"grade": 2.5}])
    assert not result.problems
    assert result.columns["grade"].tolist() == [0, 1, 2, UNSEEN_CODE, UNSEEN_CODE]
    assert "unseen category 5 for field 'grade'" in " ".join(result.warnings[3])
    words = Schema(target="t", fields=(Field("c", Kind.CATEGORICAL, False,
                                             categories=("1", "a")),))
    assert "expected a string, got number 1" in validate(words, [{"c": 1}]).problems[0].message


def test_validation_matches_training_columns(schema):
    """A record and the same row read from a CSV give identical columns."""
    frame = pd.DataFrame([{"age": "30", "income": "2.0", "colour": "red", "member": "Yes"}])
    from_frame = columns_from_frame(schema, frame)
    from_record = validate(schema, [GOOD]).columns
    for name in schema.names:
        assert list(from_frame[name]) == list(from_record[name])


@pytest.mark.parametrize("levels, order", [
    (["Low", "High", "Medium"], ("Low", "Medium", "High")),
    (["10+ years", "< 1 year", "1-2 years", "3-5 years"],
     ("< 1 year", "1-2 years", "3-5 years", "10+ years")),
    (["xl", "S", "M"], ("S", "M", "xl")),
    (["red", "green", "blue"], ()),              # no order in the words
    (["A1", "A2", "B1"], ()),                    # no leading numbers
    (["1 year", "1-2 years", "3 years"], ()),    # two levels start with the same number
    (["low", "high"], ()),                       # two levels: one-hot already says it all
])
def test_ordered_levels_are_found_from_words_or_leading_numbers(levels, order):
    assert ordered_levels(levels) == order


def test_a_declared_order_must_list_every_level_of_a_text_column():
    frame = pd.DataFrame({"grade": ["B", "A", "C", "B"] * 10, "y": ["1", "0"] * 20})
    schema = infer_schema(frame, "y", ordinal={"grade": ["C", "B", "A"]})
    assert schema.field("grade").order == ("C", "B", "A")
    assert schema.field("grade").describe()["order"] == ["C", "B", "A"]
    with pytest.raises(ValueError, match="also holds 'C'"):
        infer_schema(frame, "y", ordinal={"grade": ["B", "A"]})
    with pytest.raises(ValueError, match="names no column"):
        infer_schema(frame, "y", ordinal={"grades": ["C", "B", "A"]})
