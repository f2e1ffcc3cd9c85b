"""Reference (the ceiling): Flask answering a constant, without reading the model or the body."""

from flask import Flask, Response

app = Flask(__name__)
ANSWER = b'{"churn_probability": 0.5, "churn": false}'


@app.get("/health")
def health():
    return Response(b'{"status": "ok"}', mimetype="application/json")


@app.post("/predict")
def predict():
    return Response(ANSWER, mimetype="application/json")
