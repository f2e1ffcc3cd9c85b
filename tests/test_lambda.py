"""AWS Lambda: the handler in process, fed the events of each source Lambda serves HTTP from,
answering as the real gunicorn does; then the Lambda image for real, its runtime interface
client driven through a stand-in for Lambda's Runtime API (tests/lambda_runtime_api.py).

The event shapes follow AWS's documentation of each payload format: API Gateway REST API
(proxy integration, payload 1.0, with `multiValueHeaders`), HTTP API (payload 2.0), Function
URL (2.0, with its own domain and IAM authorizer block) and Application Load Balancer (with
and without multi-value headers).
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from types import SimpleNamespace

import pytest
import requests

from helpers import (BROUGHT_KINDS, ROOT, brought_bundle, build, docker, logs, process_fixture,
                     records_from_csv, wait_for)
from lambda_runtime_api import RuntimeApi
from tabserve.tables import load_csv
from tabserve.web.aws_lambda import (PAYLOAD_LIMIT_BYTES, InitError, LambdaRequests,
                                     answer_fits, lambda_handler_from_env)

SOURCES = ("rest_api", "http_api", "function_url", "alb", "alb_multi_value")


def _headers_v1(headers: dict[str, str]) -> dict[str, str]:
    return {"Host": "abc123.execute-api.us-east-1.amazonaws.com", "User-Agent": "curl/8.5.0",
            "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Port": "443",
            "X-Forwarded-Proto": "https", **headers}


def rest_api_event(method, path, body, headers, encoded):
    """API Gateway REST API, Lambda proxy integration (payload 1.0) on `/{proxy+}`."""
    headers = _headers_v1(headers)
    return {
        "resource": "/{proxy+}", "path": path, "httpMethod": method,
        "headers": headers, "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")}, "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "resourceId": "x1y2z3",
            "resourcePath": "/{proxy+}", "httpMethod": method, "path": f"/prod{path}",
            "stage": "prod", "protocol": "HTTP/1.1", "requestId": str(uuid.uuid4()),
            "requestTime": "28/Nov/2026:12:00:00 +0000", "requestTimeEpoch": 1795867200000,
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "curl/8.5.0"},
        },
        "body": body, "isBase64Encoded": encoded,
    }


def _event_v2(method, path, body, headers, encoded, domain, context_extra):
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": {"host": domain, "user-agent": "curl/8.5.0",
                    "x-forwarded-for": "203.0.113.7", "x-forwarded-port": "443",
                    "x-forwarded-proto": "https",
                    **{k.lower(): v for k, v in headers.items()}},
        "requestContext": {
            "accountId": "123456789012", "apiId": domain.split(".")[0], "domainName": domain,
            "domainPrefix": domain.split(".")[0], "requestId": str(uuid.uuid4()),
            "routeKey": "$default", "stage": "$default",
            "time": "28/Nov/2026:12:00:00 +0000", "timeEpoch": 1795867200000,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.7", "userAgent": "curl/8.5.0"},
            **context_extra,
        },
        **({"body": body} if body is not None else {}), "isBase64Encoded": encoded,
    }


def http_api_event(method, path, body, headers, encoded):
    """API Gateway HTTP API (payload 2.0), `$default` route and stage."""
    return _event_v2(method, path, body, headers, encoded,
                     "r2d2c3po.execute-api.us-east-1.amazonaws.com", {})


def function_url_event(method, path, body, headers, encoded):
    """A Function URL with AuthType AWS_IAM (payload 2.0): the caller's IAM identity."""
    return _event_v2(method, path, body, headers, encoded,
                     "a1b2c3d4e5f6g7h8.lambda-url.us-east-1.on.aws", {"authorizer": {"iam": {
                         "accessKey": "AKIAIOSFODNN7EXAMPLE", "accountId": "123456789012",
                         "callerId": "AIDACKCEVSQ6C2EXAMPLE", "principalOrgId": None,
                         "userArn": "arn:aws:iam::123456789012:user/analyst",
                         "userId": "AIDACKCEVSQ6C2EXAMPLE"}}})


def _alb_headers(headers: dict[str, str]) -> dict[str, str]:
    return {"host": "tabserve-alb-123456789.us-east-1.elb.amazonaws.com",
            "user-agent": "curl/8.5.0", "x-forwarded-for": "203.0.113.7",
            "x-forwarded-port": "80", "x-forwarded-proto": "http",
            "x-amzn-trace-id": "Root=1-6756a1b2-0123456789abcdef01234567",
            **{k.lower(): v for k, v in headers.items()}}


def _alb_context() -> dict:
    return {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:"
                                      "targetgroup/tabserve/49e9d65c45c6791a"}}


def alb_event(method, path, body, headers, encoded):
    """An Application Load Balancer target group of type lambda."""
    return {"requestContext": _alb_context(), "httpMethod": method, "path": path,
            "queryStringParameters": {}, "headers": _alb_headers(headers),
            "body": body or "", "isBase64Encoded": encoded}


def alb_multi_value_event(method, path, body, headers, encoded):
    """The same, with the target group's multi-value headers turned on."""
    return {"requestContext": _alb_context(), "httpMethod": method, "path": path,
            "multiValueQueryStringParameters": {},
            "multiValueHeaders": {k: [v] for k, v in _alb_headers(headers).items()},
            "body": body or "", "isBase64Encoded": encoded}


def event(source: str, method: str, path: str, body=None, encoded: bool = False,
          headers: dict[str, str] | None = None) -> dict:
    """The event `source` sends for an HTTP request; a JSON body unless `body` is bytes."""
    headers = dict(headers or {})
    raw = None
    if body is not None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    text = None if raw is None else (base64.b64encode(raw).decode() if encoded
                                     else raw.decode())
    return globals()[f"{source}_event"](method, path, text, headers, encoded)


def context(request_id: str | None = None) -> SimpleNamespace:
    """What awslambdaric passes as the context, as far as the app reads it."""
    return SimpleNamespace(aws_request_id=request_id or str(uuid.uuid4()),
                           function_name="tabserve", memory_limit_in_mb="1769")


def answer(response: dict) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of a handler's response, any format."""
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    headers.update({k.lower(): v[-1] for k, v in (response.get("multiValueHeaders") or {}).items()})
    body = response.get("body") or ""
    raw = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()
    return response["statusCode"], headers, raw


@pytest.fixture(scope="module")
def handler():
    return lambda_handler_from_env({"MODEL_PATH": str(ROOT / "model.bin")})


@pytest.fixture(scope="module")
def telco_rows(telco_bundle) -> list[dict]:
    frame = load_csv(ROOT / "data" / "telco_churn.csv").head(40)
    return records_from_csv(frame, telco_bundle.schema)


def cases(record: dict, rows: list[dict]) -> list[tuple[str, str, object]]:
    infer = {"inputs": [{"name": k, "shape": [1], "datatype": "BYTES", "data": [v]}
                        for k, v in record.items()]}
    return [
        ("POST", "/predict", record),
        ("POST", "/predict", rows),
        ("POST", "/predict", {**record, "tenure": "twelve"}),  # 422 naming the field
        ("POST", "/predict", [record, {**record, "contract": None}]),
        ("POST", "/explain", rows[:3]),
        ("POST", "/v2/models/churn/infer", infer),
        ("GET", "/model", None),
        ("GET", "/openapi.json", None),
        ("GET", "/v2/models/churn", None),
        ("GET", "/ready", None),
        ("GET", "/", None),
        ("GET", "/no-such-path", None),  # 404
        ("GET", "/predict", None),  # 405
    ]


CASE_IDS = ["one", "batch", "422", "batch-422", "explain", "v2-infer", "model", "openapi",
            "v2-metadata", "ready", "index", "404", "405"]


@pytest.mark.parametrize("case", range(len(CASE_IDS)), ids=CASE_IDS)
@pytest.mark.parametrize("source", SOURCES)
def test_every_source_answers_as_gunicorn_does(handler, telco_server, telco_record, telco_rows,
                                               source, case):
    method, path, body = cases(telco_record, telco_rows)[case]
    request_id = str(uuid.uuid4())  # Lambda's, and the one gunicorn is given (v2 answers it)
    status, headers, raw = answer(handler(event(source, method, path, body),
                                          context(request_id)))
    expected = requests.request(method, f"{telco_server}{path}", timeout=30,
                                headers={"X-Request-ID": request_id},
                                **({"json": body} if body is not None else {}))
    assert status == expected.status_code
    assert headers["content-type"] == expected.headers["Content-Type"]
    assert headers["x-model-version"] == expected.headers["X-Model-Version"]
    assert json.loads(raw) == expected.json()


@pytest.mark.parametrize("source", SOURCES)
def test_base64_bodies_answer_as_plain_ones(handler, telco_record, telco_rows, source):
    for body in (telco_record, telco_rows):
        plain = answer(handler(event(source, "POST", "/predict", body), context()))
        encoded = answer(handler(event(source, "POST", "/predict", body, encoded=True),
                                 context()))
        assert plain[0] == encoded[0] == 200 and plain[2] == encoded[2]


@pytest.mark.parametrize("source", ["rest_api", "function_url", "alb"])
def test_a_body_over_lambdas_6_mb_is_413_naming_the_limit(handler, telco_record, source):
    batch = [telco_record] * (PAYLOAD_LIMIT_BYTES // len(json.dumps(telco_record)) + 10)
    status, headers, raw = answer(handler(event(source, "POST", "/predict", batch), context()))
    problem = json.loads(raw)
    assert status == 413 and headers["content-type"] == "application/problem+json"
    assert str(PAYLOAD_LIMIT_BYTES) in problem["detail"] and "MAX_BODY_BYTES" in problem["detail"]


def test_the_request_id_is_lambdas_and_each_request_logs_one_json_line(handler, telco_record,
                                                                         capsys):
    capsys.readouterr()
    request_id = str(uuid.uuid4())
    status, headers, _ = answer(handler(event("http_api", "POST", "/predict", [telco_record] * 2,
                                              headers={"X-Request-ID": "from-the-client"}),
                                        context(request_id)))
    assert status == 200 and headers["x-request-id"] == request_id
    handler(event("http_api", "GET", "/health"), context())  # a probe: logged at debug only
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 1
    assert lines[0]["request_id"] == request_id and lines[0]["records"] == 2
    assert lines[0]["path"] == "/predict" and lines[0]["status"] == 200
    assert lines[0]["remote_addr"] == "203.0.113.7"


def test_api_keys_guard_the_lambda_too(telco_record):
    key = "lambda-key-0123456789abcdef"
    keyed = lambda_handler_from_env({"MODEL_PATH": str(ROOT / "model.bin"), "API_KEYS": key})
    refused = answer(keyed(event("function_url", "POST", "/predict", telco_record), context()))
    assert refused[0] == 401 and refused[1]["www-authenticate"].startswith("Bearer")
    accepted = answer(keyed(event("function_url", "POST", "/predict", telco_record,
                                  headers={"Authorization": f"Bearer {key}"}), context()))
    assert accepted[0] == 200


def test_an_answer_over_lambdas_limit_is_refused_clearly_not_dropped():
    """Lambda fails an invocation whose response is over 6 MB and the caller gets a bare 502;
    the body travels as a JSON string, so escaped quotes count too."""
    def app_answering(body: bytes):
        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        return app

    quotes = b'"' * (PAYLOAD_LIMIT_BYTES // 2)  # 3 MB, 6 MB once escaped
    assert answer_fits(b"x" * (PAYLOAD_LIMIT_BYTES // 2)) and not answer_fits(quotes)
    for body in (b"[" + b"1," * (PAYLOAD_LIMIT_BYTES // 2) + b"1]", quotes):
        seen = {}
        out = LambdaRequests(app_answering(body))(
            {"PATH_INFO": "/explain", "REQUEST_METHOD": "POST"},
            lambda status, headers, exc_info=None: seen.update(status=status,
                                                               headers=dict(headers)))
        problem = json.loads(b"".join(out))
        assert seen["status"].startswith("413") and problem["status"] == 413
        assert "fewer records" in problem["detail"]
        assert seen["headers"]["Content-Type"] == "application/problem+json"
        assert seen["headers"]["Content-Length"] == str(len(b"".join(out)))


@pytest.mark.parametrize("env, says", [
    ({"MODEL_PATH": "/nowhere/model.bin"}, "/nowhere/model.bin"),
    ({"MODEL_PATH": str(ROOT / "model.bin"), "MAX_BATCH_RECORDS": "lots"}, "MAX_BATCH_RECORDS"),
    ({"MODEL_PATH": str(ROOT / "model.bin"), "MODEL_SIGNING_KEY": "k" * 32}, "signed"),
])
def test_a_service_that_cannot_start_fails_the_init_in_one_line(env, says):
    with pytest.raises(InitError) as raised:
        lambda_handler_from_env(env)
    message = str(raised.value)
    assert says in message and "\n" not in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


# --- the Lambda image, driven through the Runtime API stand-in -------------------------------

def assert_same_answers(got, want) -> None:
    """Equal, but for the last digits of probabilities: the image's interpreter and this one
    may sum a batch's trees in a different order."""
    if isinstance(want, dict):
        assert got.keys() == want.keys()
        for key in want:
            assert_same_answers(got[key], want[key])
    elif isinstance(want, list):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert_same_answers(g, w)
    elif isinstance(want, float):
        assert got == pytest.approx(want, abs=1e-12)
    else:
        assert got == want


@process_fixture(scope="session")
def lambda_image(docker_engine):
    tag = build(ROOT, "--target", "lambda")
    yield tag
    docker("rmi", "-f", tag, check=False)


def start_function(image: str, api: RuntimeApi, *args: str) -> str:
    """The image as Lambda runs it: read-only but /tmp, as a user the image does not know."""
    name = f"tabserve-lambda-{uuid.uuid4().hex[:8]}"  # helpers.TEST_CONTAINERS
    docker("run", "-d", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp",
           "--user", "993:993", "-e", f"AWS_LAMBDA_RUNTIME_API={api.address}", *args, image)
    return name


@pytest.mark.docker
def test_the_lambda_image_answers_through_the_runtime_api(lambda_image, handler, telco_record,
                                                          telco_rows):
    with RuntimeApi() as api:
        name = start_function(lambda_image, api)
        try:
            if not api.init_done.wait(120):
                raise AssertionError(f"the runtime never asked for an event:\n{logs(name)}")
            for source, body in [("function_url", telco_record), ("rest_api", telco_rows),
                                 ("http_api", {**telco_record, "tenure": "twelve"})]:
                request = event(source, "POST", "/predict", body)
                invocation = api.invoke(request)
                assert invocation.kind == "response", invocation.payload
                got = answer(invocation.payload)
                want = answer(handler(request, context()))
                assert got[0] == want[0]
                assert_same_answers(json.loads(got[2]), json.loads(want[2]))
                assert got[1]["x-request-id"] == invocation.request_id
            assert got[0] == 422 and json.loads(got[2])["errors"][0]["field"] == "tenure"
            logged = [json.loads(line) for line in logs(name).splitlines()
                      if line.startswith('{"time"')]
            assert [line["request_id"] for line in logged] == \
                [i.request_id for i in api.invocations.values()]
            assert "Traceback" not in logs(name)
        finally:
            docker("rm", "-f", name, check=False)


@pytest.mark.docker
def test_a_corrupted_model_is_reported_on_the_init_error_path(lambda_image, tmp_path):
    corrupted = tmp_path / "model.bin"
    data = bytearray((ROOT / "model.bin").read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupted.write_bytes(bytes(data))
    corrupted.chmod(0o644)
    with RuntimeApi() as api:
        name = start_function(lambda_image, api, "-v", f"{corrupted}:/var/task/model.bin:ro")
        try:
            if not api.init_failed.wait(120):
                raise AssertionError(f"no init error was posted:\n{logs(name)}")
            assert api.init_error["errorType"] == "InitError"
            assert "checksum" in api.init_error["errorMessage"]
            assert "\n" not in api.init_error["errorMessage"]
            assert not api.init_done.is_set()  # it never asked for an event
            exited = wait_for(lambda: docker("inspect", "--format", "{{.State.Status}}",
                                             name) == "exited", 60, "the runtime to exit")
            assert exited and docker("inspect", "--format", "{{.State.ExitCode}}", name) != "0"
        finally:
            docker("rm", "-f", name, check=False)


@pytest.mark.docker
def test_the_lambda_image_runs_as_non_root_with_the_handler_as_its_command(lambda_image):
    config = json.loads(docker("inspect", "--format", "{{json .Config}}", lambda_image))
    assert config["User"] not in ("", "root", "0")
    assert config["Entrypoint"] == ["python", "-m", "awslambdaric"]
    assert config["Cmd"] == ["lambda_function.lambda_handler"]
    # the runtime client and adapter are in; training code and dev tools are not
    probe = ("import importlib.util as u; import awslambdaric, apig_wsgi; "
             "print([m for m in ('tabserve.training', 'pytest', 'matplotlib') if u.find_spec(m)])")
    done = subprocess.run(["docker", "run", "--rm", "--entrypoint", "python", lambda_image,
                           "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stderr


# --- the SAM template, checked offline ---------------------------------------------------------

TEMPLATE = ROOT / "deploy" / "lambda" / "template.yaml"
PARAMETER_SETS = {
    "defaults": {},
    "public-url-and-iam-api": {"FunctionUrlAuthType": "NONE", "ApiGateway": "AWS_IAM"},
    "open-api-with-keys": {"ApiGateway": "NONE", "ApiKeys": "sha256:" + "ab" * 32},
}


def sam_template() -> dict:
    from cfnlint.decode import decode

    template, problems = decode(str(TEMPLATE))
    assert not problems, problems
    return json.loads(json.dumps(template))  # plain dicts, short-form tags in long form


def translated(parameters: dict[str, str]) -> dict:
    """The CloudFormation `sam deploy` would submit: SAM's own transform, offline, of the
    template as `sam build` leaves it (ImageUri set to the image it built)."""
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:  # the transform looks up managed policy ARNs; none are used
        def load(self) -> dict:
            return {}

    template = sam_template()
    template["Resources"]["Model"]["Properties"]["ImageUri"] = "model:latest"
    return transform(template, parameters, NoManagedPolicies())


def cfn_lint(*paths) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / ".venv" / "bin" / "cfn-lint"), *map(str, paths)],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.process
def test_the_sam_template_and_its_translations_pass_cfn_lint(tmp_path, monkeypatch):
    """cfn-lint on the SAM template, then on the CloudFormation it becomes for each set of
    parameters (there it checks each property against AWS's resource schemas: an AuthType
    the parameters allow that Lambda does not is caught); warnings fail too."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # the transform needs a region
    paths = [TEMPLATE]
    for name, parameters in PARAMETER_SETS.items():
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(translated(parameters), indent=1))
    done = cfn_lint(*paths)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.process
def test_cfn_lint_would_catch_an_auth_type_lambda_does_not_know(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    cloudformation = translated({})
    cloudformation["Parameters"]["FunctionUrlAuthType"].update(
        Default="PUBLIC", AllowedValues=["PUBLIC", "AWS_IAM"])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(cloudformation))
    done = cfn_lint(path)
    assert done.returncode != 0 and "AuthType" in done.stdout


def test_the_function_url_is_not_public_unless_asked(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    template = sam_template()
    auth = template["Parameters"]["FunctionUrlAuthType"]
    assert auth["Default"] == "AWS_IAM"
    assert template["Parameters"]["ApiGateway"]["Default"] == "none"
    cloudformation = translated({})
    assert cloudformation["Resources"]["ModelUrl"]["Properties"]["AuthType"] == \
        {"Ref": "FunctionUrlAuthType"}
    anyone = {name: resource for name, resource in cloudformation["Resources"].items()
              if resource["Type"] == "AWS::Lambda::Permission"
              and resource["Properties"]["Principal"] == "*"}
    # the two grants a public URL needs (SAM adds none for an AuthType from a parameter), and
    # only when the parameter says NONE
    assert sorted(r["Properties"]["Action"] for r in anyone.values()) == \
        ["lambda:InvokeFunction", "lambda:InvokeFunctionUrl"]
    assert {r.get("Condition") for r in anyone.values()} == {"PublicUrl"}
    assert cloudformation["Conditions"]["PublicUrl"] == \
        {"Fn::Equals": [{"Ref": "FunctionUrlAuthType"}, "NONE"]}


def test_sam_builds_the_lambda_stage_of_this_repositorys_dockerfile():
    metadata = sam_template()["Resources"]["Model"]["Metadata"]
    context = (TEMPLATE.parent / metadata["DockerContext"]).resolve()
    assert context == ROOT
    dockerfile = (context / metadata["Dockerfile"]).read_text()
    assert f"AS {metadata['DockerBuildTarget']}\n" in dockerfile


@pytest.mark.parametrize("kind", BROUGHT_KINDS)
def test_each_brought_kind_answers_through_the_handler_as_in_process(kind, tmp_path):
    """LightGBM and CatBoost (as data) and an ONNX graph (by onnxruntime) behind the Lambda
    handler, against the in-process service on held-out rows."""
    from tabserve.model.bundle import ModelBundle
    from tabserve.serving.codecs.json_answers import JsonAnswers
    from tabserve.serving.core import Predictor

    path, held_out = brought_bundle(kind, tmp_path)
    bundle = ModelBundle.load(path)
    records = records_from_csv(held_out, bundle.schema)
    expected = JsonAnswers(Predictor(bundle)).for_records(records)
    handler = lambda_handler_from_env({"MODEL_PATH": str(path)})
    status, _, body = answer(handler(event("http_api", "POST", "/predict", records), context()))
    assert status == 200, body
    for got, want in zip(json.loads(body), expected):
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-6)
