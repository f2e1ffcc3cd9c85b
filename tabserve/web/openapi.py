"""The OpenAPI 3.1 document of the service, generated from the loaded model's schema."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tabserve.model.bundle import ModelBundle
from tabserve.model.schema import Field, Kind
from tabserve.serving.core import AnswerShape
from tabserve.web.auth import ApiKeys
from tabserve.web.responses import is_open_inference

PROBLEM_RESPONSES = {
    "400": "The body is not JSON, or not a record or a list of records",
    "413": "The body or the batch is larger than the limit",
    "415": "The body is not sent as application/json",
    "422": "A record is invalid: every problem is listed with its field",
}

DRIFT_UNAVAILABLE = ("Drift is not counted: monitoring is off (MONITORING=off), or the model "
                     "was trained before bundles carried a reference profile")


@dataclass(frozen=True)
class Endpoint:
    """One route, described once: the OpenAPI document and `GET /`'s index are built from
    these. `{model}` in a path stands for the served model's name, `{version}` for its
    version."""

    method: str
    path: str
    operation_id: str
    summary: str
    answer: str  # what a 200 holds
    index: str | None = None  # the line in `GET /`'s index, for the endpoints it lists

    def route(self, model_name: str, version: str) -> str:
        return self.path.replace("{model}", model_name).replace("{version}", version)


SERVICE_ENDPOINTS = (
    Endpoint("POST", "/predict", "predict", "Predict one record or a batch",
             "One answer per record, in order",
             "one record (object) or a batch (list of objects)"),
    Endpoint("POST", "/explain", "explain", "Explain predictions: each field's contribution",
             "One explanation per record, in order",
             "each field's contribution to each prediction"),
    Endpoint("POST", "/score", "score", "Score a small CSV file as score.py does (at most "
             "MAX_BATCH_RECORDS rows; score.py for larger files)",
             "The scored rows and the rejects, each as CSV text",
             "a small CSV file: its scored rows and rejects"),
    Endpoint("GET", "/health", "health", "The process is up", "Alive", "alive"),
    Endpoint("GET", "/ready", "ready", "The model is loaded and answering", "Ready",
             "model loaded and answering"),
    Endpoint("GET", "/model", "model", "Schema, classes, threshold, metrics and metadata",
             "The model", "schema, classes, threshold, metrics, metadata"),
    Endpoint("GET", "/", "index", "Where to go from here: the model's page in a browser "
             "(Accept: text/html), else this index", "An index of the endpoints"),
    Endpoint("GET", "/openapi.json", "openapi", "This document", "OpenAPI 3.1",
             "the OpenAPI 3.1 document of this API"),
    Endpoint("GET", "/docs", "docs", "A page to try the model in a browser", "HTML",
             "a page to try the model in a browser"),
    Endpoint("GET", "/metrics", "metrics", "Prometheus metrics, summed over the workers",
             "Prometheus text format", "Prometheus metrics"),
    Endpoint("GET", "/drift", "drift", "How far the records served since the start (or the "
             "last reset) are from the training data", "Drift per field and of the scores",
             "how far the traffic is from the training data"),
    Endpoint("POST", "/drift/reset", "driftReset", "Start the drift report afresh "
             "(Prometheus' counters keep counting)", "Reset; how many records it had counted"),
    Endpoint("GET", "/v2/health/live", "v2Live", "Open Inference Protocol: live", "Live"),
    Endpoint("GET", "/v2/health/ready", "v2Ready", "Open Inference Protocol: ready", "Ready"),
    Endpoint("GET", "/v2", "v2Server", "Open Inference Protocol: server metadata", "Metadata"),
)
MODEL_ENDPOINTS = (
    Endpoint("GET", "/v2/models/{model}", "v2Model", "Open Inference Protocol: model metadata",
             "Metadata", "Open Inference Protocol v2"),
    Endpoint("GET", "/v2/models/{model}/ready", "v2ModelReady",
             "Open Inference Protocol: model ready", "Ready"),
    Endpoint("POST", "/v2/models/{model}/infer", "v2Infer",
             "Open Inference Protocol: infer (one input tensor per field)",
             "Label and class probabilities"),
)


def _of_the_version(e: Endpoint) -> Endpoint:
    """A model route's versioned twin, which answers for the served version only."""
    return Endpoint(e.method, e.path.replace("{model}", "{model}/versions/{version}"),
                    f"{e.operation_id}Version", f"{e.summary}, of the served version",
                    e.answer)


ENDPOINTS = (*SERVICE_ENDPOINTS, *MODEL_ENDPOINTS, *map(_of_the_version, MODEL_ENDPOINTS))


ENDPOINT = {e.operation_id: e.answer for e in ENDPOINTS}  # what each one's 200 holds


def endpoint_index(model_name: str, version: str) -> dict[str, str]:
    """`GET /`'s index: the endpoints a newcomer wants, by method and path."""
    return {f"{e.method} {e.route(model_name, version)}": e.index for e in ENDPOINTS
            if e.index}


def field_schema(f: Field) -> dict[str, Any]:
    """The JSON Schema of one input field."""
    nullable = " May be null: the training data had missing values." if f.nullable else ""
    if f.kind is Kind.NUMERIC:
        schema: dict[str, Any] = {
            "type": ["number", "null"] if f.nullable else "number",
            "description": f"Numeric; {f.minimum:g} to {f.maximum:g} in training.{nullable}"}
    elif f.kind is Kind.CATEGORICAL:
        schema = {
            "type": ["string", "null"] if f.nullable else "string",
            "enum": [*f.categories, *([None] if f.nullable else [])],
            "description": "Categorical: the levels seen in training. Another string is "
                           f"answered with a warning and encoded as none of them.{nullable}"}
    else:
        true, false = f.spellings
        spellings = sorted(k for k in f.boolean_table if isinstance(k, str))
        schema = {
            "anyOf": [{"type": "boolean"}, {"type": "number", "enum": [0, 1]},
                      {"type": "string", "enum": spellings},
                      *([{"type": "null"}] if f.nullable else [])],
            "description": f"Boolean-like: true/false, 1/0, {true!r}/{false!r}, or "
                           "yes/no, y/n, t/f, 1.0/0.0 as text; text in any case, surrounding "
                           f"spaces ignored.{nullable}"}
    return schema


def drift_schemas() -> dict[str, Any]:
    """The shapes of `GET /drift`'s answer (see `serving.drift.drift_report`)."""
    share = {"type": "number", "minimum": 0, "maximum": 1}
    bins = {"type": "array", "description": "Each bin's share now and in the training rows",
            "items": {"type": "object", "required": ["bin", "share", "reference_share"],
                      "properties": {"bin": {"type": "string"}, "share": share,
                                     "reference_share": share}}}
    drift = {
        "psi": {"type": ["number", "null"], "minimum": 0,
                "description": "Population stability index against the training rows; null "
                               "until enough records are counted"},
        "status": {"type": "string", "enum": ["stable", "moderate", "major", "too few records"],
                   "description": "stable below 0.1, moderate up to 0.25, major above"},
        "records": {"type": "integer", "minimum": 0}, "bins": bins}
    return {
        "FieldDrift": {"type": "object", "properties": {
            "field": {"type": "string"}, **drift, "missing_rate": share,
            "reference_missing_rate": share,
            "unseen_share": {**share, "description": "Share of records with a level training "
                                                     "never saw"},
            "unseen_levels": {"type": "array", "maxItems": 10, "items": {
                "type": "object", "required": ["level", "records", "share"], "properties": {
                    "level": {"type": "string", "description": "As sent, cut at 40 characters"},
                    "records": {"type": "integer", "minimum": 0}, "share": share}},
                "description": "The levels training never saw, most frequent first (each "
                               "worker keeps its 20 most frequent per field)"}},
            "required": ["field", "psi", "status", "records", "missing_rate",
                         "reference_missing_rate", "unseen_share", "unseen_levels", "bins"]},
        "DriftReport": {"type": "object", "properties": {
            "model_version": {"type": "string"},
            "records": {"type": "integer", "minimum": 0,
                        "description": "Records counted since the start or the last reset, "
                                       "over every worker"},
            "enough": {"type": "boolean",
                       "description": "Whether minimum_records have been counted"},
            "minimum_records": {"type": "integer", "minimum": 1},
            "detail": {"type": "string", "description": "Why nothing is judged yet"},
            "fields": {"type": "array", "items": {"$ref": "#/components/schemas/FieldDrift"},
                       "description": "Sorted by PSI, largest first, once enough"},
            "score": {"type": "object", "properties": drift,
                      "required": ["psi", "status", "records", "bins"]}},
            "required": ["model_version", "records", "enough", "minimum_records", "fields",
                         "score"]},
    }


def openapi_document(bundle: ModelBundle, *, max_batch: int, model_name: str,
                     keys: ApiKeys | None = None) -> dict[str, Any]:
    """Every endpoint, with the record, answer and problem shapes of this model, and with
    `keys`, the API key schemes each endpoint needs."""
    schema = bundle.schema
    target = schema.target
    record = {
        "type": "object",
        "description": f"One record: the input fields of the model that predicts {target!r}. "
                       "Fields the model does not use are answered with a warning.",
        "properties": {f.name: field_schema(f) for f in schema.fields},
        "required": schema.names,
        "additionalProperties": True,
        "example": bundle.example,
    }
    probabilities = {
        "type": "object", "description": "The probability of every class",
        "properties": {label: {"type": "number", "minimum": 0, "maximum": 1}
                       for label in bundle.classes},
        "required": bundle.classes,
    }
    answer_properties: dict[str, Any] = {
        "label": {"type": "string", "enum": bundle.classes, "description": "Predicted class"},
        "probabilities": {"$ref": "#/components/schemas/Probabilities"},
        "model_version": {"type": "string", "description": "Which model answered"},
        "warnings": {"type": "array", "items": {"type": "string"}},
    }
    required = ["label", "probabilities", "model_version"]
    shape = AnswerShape.of(bundle)
    if shape.target_keys:
        answer_properties[shape.target_probability] = {
            "type": "number", "minimum": 0, "maximum": 1,
            "description": f"Probability of the positive class {bundle.positive_class!r}"}
        answer_properties[shape.key] = {
            "type": "boolean",
            "description": f"True when the label is {bundle.positive_class!r} "
                           f"(probability >= {bundle.threshold})"}
        required += [shape.target_probability, shape.key]
    problem = {
        "type": "object", "description": "RFC 9457 problem details",
        "properties": {
            "type": {"type": "string"}, "title": {"type": "string"},
            "status": {"type": "integer"}, "detail": {"type": "string"},
            "errors": {"type": "array", "items": {
                "type": "object",
                "properties": {"field": {"type": ["string", "null"]},
                               "message": {"type": "string"},
                               "index": {"type": "integer", "minimum": 0}},
                "required": ["field", "message"]}},
            "errors_total": {"type": "integer"},
        },
        "required": ["type", "title", "status", "detail"],
    }
    explanation = {
        "type": "object",
        "description": "Additive contributions of each input field to the raw score (log-odds "
                       "for a binary model; per class otherwise): base_value plus the "
                       "contributions equals raw_score.",
        "properties": {"label": {"type": "string"}, "model_version": {"type": "string"},
                       "base_value": {}, "raw_score": {}, "contributions": {"type": "object"},
                       "warnings": {"type": "array", "items": {"type": "string"}}},
        "required": ["label", "base_value", "raw_score", "contributions", "model_version"],
    }

    def body(ref: str) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {
            "schema": {"oneOf": [{"$ref": "#/components/schemas/Record"},
                                 {"type": "array", "minItems": 1, "maxItems": max_batch,
                                  "items": {"$ref": "#/components/schemas/Record"}}]},
            "examples": {"one record": {"value": bundle.example},
                         "a batch": {"value": [bundle.example, bundle.example]}}}}}

    def answers(ref: str, what: str) -> dict[str, Any]:
        return {"200": {"description": what, "content": {"application/json": {"schema": {
            "oneOf": [{"$ref": ref}, {"type": "array", "items": {"$ref": ref}}]}}}},
                **{code: {"$ref": f"#/components/responses/Problem{code}"}
                   for code in PROBLEM_RESPONSES}}

    def plain_json(description: str) -> dict[str, Any]:
        return {"200": {"description": description,
                        "content": {"application/json": {"schema": {"type": "object"}}}}}

    def text(description: str, media_type: str) -> dict[str, Any]:
        return {"200": {"description": description,
                        "content": {media_type: {"schema": {"type": "string"}}}}}

    def drift_answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"200": {"description": description,
                        "content": {"application/json": {"schema": schema}}},
                "501": {"$ref": "#/components/responses/Problem501"}}

    oip_error = {"description": "Bad request", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}}}}
    v2_infer = {
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}},
            "application/octet-stream": {"schema": {
                "type": "string", "format": "binary",
                "description": "The binary tensor extension: the JSON request (inputs with "
                               "parameters.binary_data_size instead of data), then each such "
                               "input's bytes; the header Inference-Header-Content-Length "
                               "gives the JSON's length"}}}},
        "responses": {**plain_json(ENDPOINT["v2Infer"]), "400": oip_error,
                      "404": {**oip_error, "description": "No such model or version"}}}
    # what differs from a JSON object answer, by operation
    special: dict[str, dict[str, Any]] = {
        "predict": {"requestBody": body("Record"),
                    "responses": answers("#/components/schemas/Answer", ENDPOINT["predict"])},
        "explain": {"requestBody": body("Record"),
                    "responses": answers("#/components/schemas/Explanation",
                                         ENDPOINT["explain"])},
        "docs": {"responses": text("HTML", "text/html")},
        "index": {"responses": {"200": {
            "description": "An index of the endpoints (JSON), or the model's page (HTML) for "
                           "a browser", "content": {
                               "application/json": {"schema": {"type": "object"}},
                               "text/html": {"schema": {"type": "string"}}}}}},
        "score": {"requestBody": {"required": True, "content": {"text/csv": {"schema": {
            "type": "string", "description": "UTF-8, comma-separated, a header row naming "
                                             "at least the model's fields"}}}},
            "responses": {"200": {"description": ENDPOINT["score"], "content": {
                "application/json": {"schema": {
                    "type": "object",
                    "required": ["model_version", "rows", "scored", "rejected", "scored_csv",
                                 "rejects_csv"],
                    "properties": {
                        "model_version": {"type": "string"},
                        "rows": {"type": "integer"}, "scored": {"type": "integer"},
                        "rejected": {"type": "integer"},
                        "scored_csv": {"type": "string", "description": "the scored rows: "
                                       "the file's columns, then the answer columns"},
                        "rejects_csv": {"type": "string", "description": "the rejected "
                                        "rows: line, problems, then the file's columns"}}}}}},
                **{code: {"$ref": f"#/components/responses/Problem{code}"}
                   for code in PROBLEM_RESPONSES}}},
        "metrics": {"responses": text("Prometheus text format", "text/plain")},
        "drift": {"responses": drift_answer(ENDPOINT["drift"],
                                            {"$ref": "#/components/schemas/DriftReport"})},
        "driftReset": {"responses": drift_answer(ENDPOINT["driftReset"], {
            "type": "object", "required": ["status", "records_before"],
            "properties": {"status": {"const": "reset"},
                           "records_before": {"type": "integer", "minimum": 0}}})},
        "v2Infer": v2_infer, "v2InferVersion": v2_infer,
    }
    paths: dict[str, dict[str, Any]] = {}
    for e in ENDPOINTS:
        paths.setdefault(e.route(model_name, bundle.version), {})[e.method.lower()] = {
            "summary": e.summary, "operationId": e.operation_id,
            **special.get(e.operation_id, {"responses": plain_json(e.answer)})}
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": f"tabserve: predict {target!r}",
            "version": bundle.version,
            "description": f"A {bundle.task} classifier ({bundle.metrics.get('chosen')}) for "
                           f"{target!r}, classes {', '.join(map(repr, bundle.classes))}. "
                           "POST one record (an object) or a batch (a list) to /predict.",
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Record": record, "Probabilities": probabilities,
                "Answer": {"type": "object", "properties": answer_properties,
                           "required": required},
                "Explanation": explanation, "Problem": problem, **drift_schemas(),
                "InferenceRequest": {
                    "type": "object", "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "inputs": {"type": "array", "items": {
                            "type": "object", "required": ["name", "shape", "datatype"],
                            "properties": {"name": {"type": "string"},
                                           "shape": {"type": "array",
                                                     "items": {"type": "integer"}},
                                           "datatype": {"type": "string"},
                                           "data": {"type": "array"}}}},
                    }},
            },
            "responses": {
                f"Problem{code}": {"description": description, "content": {
                    "application/problem+json": {
                        "schema": {"$ref": "#/components/schemas/Problem"}}}}
                for code, description in {**PROBLEM_RESPONSES, "501": DRIFT_UNAVAILABLE}.items()
            },
        },
    }
    if keys is not None:
        _declare_keys(document, keys)
    return document


def _declare_keys(document: dict[str, Any], keys: ApiKeys) -> None:
    """Either scheme on every operation that needs a key, none on the others; 401 listed."""
    components = document["components"]
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "Authorization: Bearer <API key>"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}
    components["responses"]["Problem401"] = {
        "description": "No API key, or one that is not valid", "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    document["security"] = [{"bearer": []}, {"apiKey": []}]
    for path, operations in document["paths"].items():
        for operation in operations.values():
            if keys.needed(path) and is_open_inference(path):
                operation["responses"]["401"] = {
                    "description": "No API key, or one that is not valid",
                    "content": {"application/json": {"schema": {
                        "type": "object", "required": ["error"],
                        "properties": {"error": {"type": "string"}}}}}}
            elif keys.needed(path):
                operation["responses"]["401"] = {"$ref": "#/components/responses/Problem401"}
            else:
                operation["security"] = []
