"""Reference (the baseline): the ML Zoomcamp course's predict.py, DictVectorizer → predict_proba,
with a list of customers accepted too. COURSE_MODEL names the pickle (dv, model) the benchmark
trained on the same data with the same model family as the served bundle."""

import os
import pickle

from flask import Flask, jsonify, request

with open(os.environ["COURSE_MODEL"], "rb") as f:
    dv, model = pickle.load(f)

app = Flask("churn")


@app.get("/health")
def health():
    return jsonify({"status": "ok"})


@app.post("/predict")
def predict():
    customers = request.get_json()
    batch = isinstance(customers, list)
    X = dv.transform(customers if batch else [customers])
    probabilities = model.predict_proba(X)[:, 1]
    answers = [{"churn_probability": float(p), "churn": bool(p >= 0.5)} for p in probabilities]
    return jsonify(answers if batch else answers[0])
