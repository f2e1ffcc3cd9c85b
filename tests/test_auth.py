"""API keys through the Flask test client: who gets in, what a refusal costs and says."""

import hashlib

import pytest
from openapi_spec_validator import validate

from tabserve.web.app import create_app
from tabserve.web.auth import ApiKeyError, ApiKeys
from tabserve.web.config import ConfigError, Settings

KEY, SECOND = "key-one-0123456789abcdef", "key-two-0123456789abcdef"
HASHED = "hashed-key-0123456789abcdef"  # given to the server only as its digest


@pytest.fixture()
def keyed(telco_bundle, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text(f"# rotated monthly\n{KEY}\n\n{SECOND}\n"
                    f"sha256:{hashlib.sha256(HASHED.encode()).hexdigest()}\n")
    settings = Settings.from_env({"API_KEYS_FILE": str(keys)})
    return create_app(telco_bundle, settings).test_client()


KEYED_ENDPOINTS = [("post", "/predict"), ("post", "/explain"), ("get", "/model"),
                   ("get", "/"), ("get", "/openapi.json"), ("get", "/metrics"),
                   ("get", "/v2"), ("get", "/v2/models/churn"), ("get", "/v2/models/churn/ready"),
                   ("post", "/v2/models/churn/infer"), ("get", "/nope")]


@pytest.mark.parametrize("method, path", KEYED_ENDPOINTS)
def test_every_endpoint_but_the_probes_needs_a_key(keyed, telco_record, method, path):
    send = getattr(keyed, method)
    body = {"json": telco_record} if method == "post" else {}
    for headers, wrong in (({}, False), ({"Authorization": "Bearer not-a-key"}, True),
                           ({"X-API-Key": KEY[:-1]}, True)):
        response = send(path, headers=headers, **body)
        # the Open Inference Protocol's clients read only its own error shape
        expected = "application/json" if path.startswith("/v2") else "application/problem+json"
        assert response.status_code == 401 and response.mimetype == expected
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="tabserve"')
        assert ('error="invalid_token"' in response.headers["WWW-Authenticate"]) == wrong
        assert KEY not in response.get_data(as_text=True)
    for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": SECOND},
                    {"X-API-Key": HASHED}):
        assert send(path, headers=headers, **body).status_code != 401


@pytest.mark.parametrize("path", ["/health", "/ready", "/v2/health/live", "/v2/health/ready",
                                  "/docs"])
def test_the_probes_and_the_docs_page_need_no_key(keyed, path):
    response = keyed.get(path)
    assert response.status_code == 200
    assert "churn" not in response.get_data(as_text=True)  # nothing about the model


def test_a_refusal_reads_no_body_and_costs_no_model_work(keyed, telco_bundle, monkeypatch):
    from tabserve.serving.decoding import BodyDecoder
    monkeypatch.setattr(BodyDecoder, "decode_plain", lambda *a: pytest.fail("decoded"))
    monkeypatch.setattr(BodyDecoder, "decode", lambda *a: pytest.fail("decoded"))
    response = keyed.post("/predict", data=b"{not json", content_type="application/json")
    assert response.status_code == 401  # not 400: the body was never looked at
    too_big = keyed.post("/predict", data=b"[" + b" " * 40_000_000 + b"]",
                         content_type="application/json")
    assert too_big.status_code == 413  # the size limit holds with or without a key


def test_metrics_can_be_left_open_for_a_scraper(telco_bundle):
    settings = Settings.from_env({"API_KEYS": KEY, "METRICS_WITHOUT_KEY": "1"})
    client = create_app(telco_bundle, settings).test_client()
    assert client.get("/metrics").status_code == 200
    assert client.get("/model").status_code == 401
    text = client.get("/metrics").get_data(as_text=True)
    assert 'endpoint="(unauthenticated)"' in text and KEY not in text


def test_the_openapi_document_declares_the_schemes(keyed):
    document = keyed.get("/openapi.json", headers={"X-API-Key": KEY}).get_json()
    validate(document)
    assert set(document["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert document["security"] == [{"bearer": []}, {"apiKey": []}]
    assert document["paths"]["/health"]["get"]["security"] == []
    assert "401" in document["paths"]["/predict"]["post"]["responses"]


def test_without_keys_nothing_changes(client):
    assert client.get("/model").status_code == 200
    assert "securitySchemes" not in client.get("/openapi.json").get_json()["components"]


@pytest.mark.parametrize("env, message", [
    ({"API_KEYS": "short"}, "entry 1: a key needs at least 16 characters"),
    ({"API_KEYS": f"{KEY},sha256:abc"}, "entry 2: sha256: needs 64 lowercase hex digits"),
    ({"API_KEYS": KEY, "API_KEYS_FILE": "/x"}, "not both"),
    ({"API_KEYS_FILE": "/nonexistent/keys"}, "cannot be read"),
    ({"API_KEYS": " , "}, "holds no key"),
])
def test_bad_key_settings_stop_the_service_with_one_line(env, message):
    with pytest.raises(ConfigError, match=message) as refused:
        Settings.from_env(env)
    assert KEY not in str(refused.value)
    with pytest.raises(ApiKeyError):
        ApiKeys.from_env(env)
