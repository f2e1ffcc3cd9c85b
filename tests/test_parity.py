"""The served path (validate JSON records → encode → model) equals the fitted pipeline on
every training row."""

import numpy as np
import msgspec
import pytest

from conftest import ROOT
from tabserve.data import load_csv
from tabserve.predicting import Predictor


def records_from_csv(frame, schema):
    """Training rows as a JSON client would send them."""
    records = []
    for row in frame[schema.names].to_dict("records"):
        record = {}
        for f in schema.fields:
            value = row[f.name]
            if not isinstance(value, str):
                record[f.name] = None
            elif f.kind.value == "numeric":
                record[f.name] = float(value)
            else:
                record[f.name] = value
        records.append(record)
    return msgspec.json.decode(msgspec.json.encode(records))


@pytest.mark.parametrize("bundle_name, csv_name", [
    ("telco_bundle", None), ("loan_bundle", "loan_csv"), ("flower_bundle", "flower_csv"),
])
def test_served_probabilities_equal_the_pipeline(request, bundle_name, csv_name):
    bundle = request.getfixturevalue(bundle_name)
    csv = ROOT / "data" / "telco_churn.csv" if csv_name is None else \
        request.getfixturevalue(csv_name)
    frame = load_csv(csv)
    frame = frame[frame[bundle.schema.target].notna()]
    expected = bundle.pipeline.predict_proba(frame)
    answers = Predictor(bundle).predict(records_from_csv(frame, bundle.schema))
    served = np.array([[a["probabilities"][c] for c in bundle.classes] for a in answers])
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-6)
