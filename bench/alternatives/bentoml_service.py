"""BentoML serving the course model (DictVectorizer → the bundle's XGBoost), for
`bench/run.py --alternatives`. Runs in its own venv; COURSE_MODEL names the pickle."""

import os
import pickle
from typing import Any

import bentoml


@bentoml.service(workers=2)
class Churn:
    def __init__(self):
        with open(os.environ["COURSE_MODEL"], "rb") as f:
            self.dv, self.model = pickle.load(f)

    @bentoml.api
    def predict(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        probabilities = self.model.predict_proba(self.dv.transform(records))[:, 1]
        return [{"churn_probability": float(p), "churn": bool(p >= 0.5)} for p in probabilities]
