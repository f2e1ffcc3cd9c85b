"""The Kubernetes and KServe manifests, checked without a cluster: rendered by kustomize,
validated against the Kubernetes API schemas of several versions (strict: no unknown fields),
and held to the rules a rollout and the restricted Pod Security profile depend on."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from jsonschema import Draft202012Validator

from helpers import IMAGE_UID, ROOT, need_tool, process_fixture

pytestmark = pytest.mark.process  # every test here starts a process or a server

KUBERNETES = ROOT / "deploy" / "kubernetes"
KSERVE = ROOT / "deploy" / "kserve"
OVERLAYS = sorted(p.name for p in (KUBERNETES / "overlays").iterdir())
VERSIONS = ["1.30", "1.32", "1.34", "1.35"]  # supported by EKS and kind in 2026
# read, not run: running gunicorn.conf.py would set its environment (the metrics directory)
# in this test process, and every server the tests start after would inherit it
GRACEFUL_TIMEOUT = int(re.search(r"^graceful_timeout = (\d+)",
                                 (ROOT / "gunicorn.conf.py").read_text(), re.M)[1])


def render(folder: Path) -> list[dict]:
    kubectl = need_tool("kubectl")
    done = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@process_fixture(scope="module", params=OVERLAYS)
def overlay(request) -> list[dict]:
    return render(KUBERNETES / "overlays" / request.param)


def of_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def test_every_overlay_is_there():
    assert OVERLAYS == ["eks", "local"]


@pytest.mark.parametrize("version", VERSIONS)
def test_rendered_objects_are_valid_kubernetes_strictly(overlay, version):
    assert {o["kind"] for o in overlay} == {"Namespace", "ConfigMap", "Service", "Deployment",
                                            "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    for obj in overlay:
        kubernetes_validate.validate(obj, version, strict=True)


def pod_specs(objects: list[dict]) -> list[dict]:
    return [o["spec"]["template"]["spec"] for o in of_kind(objects, "Deployment")]


def assert_restricted(pod: dict, container: dict) -> None:
    """Pod Security Standards, "restricted": what each container must say, by itself or
    through the pod."""
    pod_security, security = pod.get("securityContext", {}), container.get("securityContext", {})
    assert security.get("runAsNonRoot", pod_security.get("runAsNonRoot")) is True
    assert security.get("runAsUser", pod_security.get("runAsUser")) == IMAGE_UID
    assert security.get("allowPrivilegeEscalation") is False
    assert security.get("readOnlyRootFilesystem") is True
    assert security.get("capabilities", {}).get("drop") == ["ALL"]
    assert not security.get("capabilities", {}).get("add")
    seccomp = security.get("seccompProfile", pod_security.get("seccompProfile", {}))
    assert seccomp.get("type") == "RuntimeDefault"
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    # /tmp, the one place the server writes (metrics files, heartbeats), is a volume
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def assert_sized_and_probed(container: dict, paths: dict[str, str]) -> None:
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), kind
    for probe, path in paths.items():
        assert container[probe]["httpGet"]["path"] == path, probe


def test_every_container_is_probed_sized_and_restricted(overlay):
    for pod in pod_specs(overlay):
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            assert_sized_and_probed(container, {"startupProbe": "/ready",
                                                "readinessProbe": "/ready",
                                                "livenessProbe": "/health"})
            assert_restricted(pod, container)
    namespace = of_kind(overlay, "Namespace")[0]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_a_rollout_never_drops_below_the_replicas_nor_cuts_requests(overlay):
    deployment = of_kind(overlay, "Deployment")[0]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep" and pause >= 5
    # the kubelet kills at the grace period: it must outlast the pause and gunicorn's drain
    assert pod["terminationGracePeriodSeconds"] > pause + GRACEFUL_TIMEOUT
    # workers follow the CPU limit, never the node's cores
    workers = next(e for e in container["env"] if e["name"] == "WEB_CONCURRENCY")
    assert workers["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu"
    settings = of_kind(overlay, "ConfigMap")[0]
    assert container["envFrom"][0]["configMapRef"]["name"] == settings["metadata"]["name"]
    assert settings["data"]["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")


def test_grpc_is_declared_from_the_container_to_the_service(overlay):
    container = of_kind(overlay, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    settings = of_kind(overlay, "ConfigMap")[0]["data"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["grpc"] == int(settings["GRPC_PORT"]) != ports["http"]
    service = {p["name"]: p for p in of_kind(overlay, "Service")[0]["spec"]["ports"]}
    assert service["grpc"]["targetPort"] == "grpc"
    assert service["grpc"]["appProtocol"] == "kubernetes.io/h2c"


def test_autoscaling_disruption_budget_and_scraping(overlay):
    hpa = of_kind(overlay, "HorizontalPodAutoscaler")[0]
    assert hpa["apiVersion"] == "autoscaling/v2" and hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    deployment = of_kind(overlay, "Deployment")[0]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    pdb = of_kind(overlay, "PodDisruptionBudget")[0]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = of_kind(overlay, "Service")[0]
    assert service["spec"]["selector"].items() <= labels.items()
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"


def test_the_servicemonitor_component_renders(tmp_path):
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({  # kustomize wants relative
        "resources": [os.path.relpath(KUBERNETES / "base", tmp_path)],
        "components": [os.path.relpath(KUBERNETES / "components" / "servicemonitor", tmp_path)]}))
    objects = render(tmp_path)
    monitor = of_kind(objects, "ServiceMonitor")[0]
    service = of_kind(objects, "Service")[0]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= \
        service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]


# --- KServe: what its documentation says an InferenceService with a custom predictor holds

INFERENCE_SERVICE = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "serving.kserve.io/v1beta1"},
        "kind": {"const": "InferenceService"},
        "metadata": {
            "type": "object", "required": ["name", "annotations"],
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?$"},
                "annotations": {"type": "object", "properties": {
                    "serving.kserve.io/deploymentMode": {
                        "enum": ["Serverless", "RawDeployment", "Standard", "ModelMesh"]},
                    "serving.kserve.io/autoscalerClass": {"enum": ["hpa", "external", "keda"]},
                    "serving.kserve.io/metric": {"enum": ["cpu", "memory"]},
                    "serving.kserve.io/targetUtilizationPercentage": {
                        "type": "string", "pattern": "^[0-9]+$"}},
                    "additionalProperties": {"type": "string"}}}},
        "spec": {
            "type": "object", "required": ["predictor"], "additionalProperties": False,
            "properties": {"predictor": {
                "type": "object", "required": ["containers"],
                "properties": {
                    "minReplicas": {"type": "integer", "minimum": 0},
                    "maxReplicas": {"type": "integer", "minimum": 1},
                    "containers": {
                        "type": "array", "minItems": 1, "maxItems": 1,
                        "items": {"type": "object", "required": ["name", "image"],
                                  "properties": {"name": {"const": "kserve-container"}}}}}}}},
    },
}


def env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


@pytest.mark.parametrize("path, mode", [("inferenceservice-raw.yaml", "RawDeployment"),
                                        ("inferenceservice-serverless.yaml", "Serverless")])
def test_inference_services_are_what_kserve_documents(path, mode):
    service = yaml.safe_load((KSERVE / path).read_text())
    Draft202012Validator(INFERENCE_SERVICE).validate(service)
    assert service["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == mode
    predictor = service["spec"]["predictor"]
    container = predictor["containers"][0]
    settings = env(container)
    assert settings["PROTOCOL"] == "v2" and settings["MODEL_NAME"]
    port = container["ports"][0]["containerPort"]
    assert settings["PORT"] == str(port) == "8080"
    if mode == "Serverless":  # Knative takes one port per container
        assert len(container["ports"]) == 1 and "GRPC_PORT" not in settings
    else:  # KServe makes each further port a Service port; "h2c" in its name marks HTTP/2
        grpc = container["ports"][1]
        assert "h2c" in grpc["name"] and settings["GRPC_PORT"] == str(grpc["containerPort"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    if mode == "Serverless":
        assert predictor["minReplicas"] == 0  # scale to zero
    else:
        assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
        assert predictor["minReplicas"] >= 2
        assert service["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "hpa"
    # the predictor's pod part is a Kubernetes pod spec: held to the same schemas and rules
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "predictor"},
           "spec": {k: v for k, v in predictor.items() if k not in ("minReplicas",
                                                                    "maxReplicas")}}
    for version in VERSIONS:
        kubernetes_validate.validate(pod, version, strict=True)
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert_restricted(pod["spec"], container)
