"""The bundle holds data, not code: serving the shipped model resolves no class through pickle,
a crafted pickle never runs unless trusted, and a crafted file of the current format is refused
in one line whatever it claims (issue 30)."""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import PYTHON, ROOT, fit_bundle, rewrite_payload
from tabserve.model import archive
from tabserve.model.bundle import MAGIC, ModelBundle, ModelLoadError
from tabserve.model.trust import Trust, key_id, signature
from tabserve.serving.core import Predictor
from tabserve.web.config import ConfigError, Settings

AUDITED_SERVER = """
import json, sys
found = []
sys.addaudithook(lambda event, args: found.append(repr(args)) if event == "pickle.find_class"
                 else None)
from tabserve.web.app import create_app
from tabserve.web.config import Settings
client = create_app(None, Settings(model_path=sys.argv[1])).test_client()
record = client.get("/model").get_json()["example"]
answers = [client.post(path, json=body).status_code for path, body in [
    ("/predict", record), ("/predict", [record] * 50), ("/explain", [record] * 3),
    ("/v2/models/churn/infer", {"inputs": [
        {"name": k, "shape": [1], "data": [v], "datatype": "BYTES" if isinstance(v, str)
         else "BOOL" if isinstance(v, bool) else "FP64"} for k, v in record.items()]})]]
print(json.dumps({"answers": answers, "find_class": found}))
"""


@pytest.mark.process
def test_serving_the_shipped_model_resolves_no_class_through_pickle():
    done = subprocess.run([PYTHON, "-c", AUDITED_SERVER, str(ROOT / "model.bin")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen == {"answers": [200, 200, 200, 200], "find_class": []}


@pytest.mark.process
def test_the_audit_hook_sees_a_pickled_bundle_load(tmp_path):
    """The check above can fail: the same script on an older (pickled) bundle, trusted, sees
    pickle resolve its classes."""
    done = subprocess.run(
        [PYTHON, "-c", AUDITED_SERVER.replace("Settings(model_path=sys.argv[1])",
                                              "Settings(model_path=sys.argv[1], "
                                              "trust=__import__('tabserve.model.trust').model"
                                              ".trust.Trust(allow_pickle=True))"),
         str(ROOT / "tests" / "fixtures" / "legacy" / "telco.bin")],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout.splitlines()[-1])["find_class"]) > 10


class Planted:
    """A pickle that creates a file when it is loaded: what a malicious model file does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _format_1(path, payload: bytes, extra: bytes = b"") -> None:
    import hashlib
    path.write_bytes(MAGIC + b"1 sha256=" + hashlib.sha256(payload).hexdigest().encode() + extra
                     + b"\n" + payload)


@pytest.mark.process
def test_a_crafted_pickle_never_runs_by_default(tmp_path):
    marker, crafted = tmp_path / "ran", tmp_path / "model.bin"
    _format_1(crafted, pickle.dumps(Planted(marker)))
    with pytest.raises(ModelLoadError, match="is an older bundle, a pickle, and pickle runs "
                                             "code as it loads: convert it with"):
        ModelBundle.load(crafted)
    for door in (["score.py", "--input", str(ROOT / "data" / "telco_churn.csv"), "--model",
                  str(crafted), "--output", str(tmp_path / "out.csv")],
                 ["monitor.py", "--data", str(ROOT / "data" / "telco_churn.csv"), "--model",
                  str(crafted)],
                 ["import_model.py", "--model", str(tmp_path / "absent.bin"), "--output",
                  str(tmp_path / "x.bin")]):
        done = subprocess.run([PYTHON, *door], capture_output=True, text=True, timeout=120,
                              cwd=ROOT)
        assert done.returncode != 0 and done.stderr.count("\n") == 1, (door, done.stderr)
    assert not marker.exists()
    with pytest.raises(ModelLoadError):  # trusted, it runs: the refusal above is what stops it
        ModelBundle.load(crafted, Trust(allow_pickle=True))
    assert marker.exists()


def _pickled_model_member(members: dict, marker) -> dict:
    document = json.loads(members["bundle.json"])
    document["model"] = {"type": "pickled", "steps": "blobs/steps.pkl", "n_features": 3}
    return {"bundle.json": json.dumps(document).encode(),
            "blobs/steps.pkl": pickle.dumps(Planted(marker))}


def test_pickle_inside_a_current_bundle_is_read_only_when_declared_and_trusted(tmp_path,
                                                                              loan_bundle):
    marker, path = tmp_path / "ran", tmp_path / "model.bin"
    loan_bundle.save(path)
    rewrite_payload(path, lambda members: _pickled_model_member(members, marker))
    with pytest.raises(ModelLoadError, match="holds pickle that its header does not declare"):
        ModelBundle.load(path, Trust(allow_pickle=True))
    rewrite_payload(path, lambda members: members, lambda fields: [*fields, b"pickle"])
    with pytest.raises(ModelLoadError, match="holds a model part that is pickled, and pickle "
                                             "runs code"):
        ModelBundle.load(path)
    assert not marker.exists()


def test_a_pickled_bundle_loads_when_trusted_by_setting_or_by_signature(tmp_path):
    legacy = (ROOT / "tests" / "fixtures" / "legacy" / "telco.bin").read_bytes()
    header, _, payload = legacy.partition(b"\n")
    path = tmp_path / "model.bin"
    path.write_bytes(legacy)
    trusting = Settings.from_env({"ALLOW_PICKLE": "1", "MODEL_PATH": str(path)})
    assert ModelBundle.load(path, trusting.trust).schema.target == "churn"
    key = b"k" * 32
    _format_1(path, payload, f" key={key_id(key)} hmac-sha256={signature(key, payload)}".encode())
    assert ModelBundle.load(path, Trust(key)).schema.target == "churn"
    with pytest.raises(ModelLoadError, match="is signed with another key"):
        ModelBundle.load(path, Trust(b"o" * 32))
    with pytest.raises(ConfigError, match="ALLOW_PICKLE must be 1 or 0, got 'maybe'"):
        Settings.from_env({"ALLOW_PICKLE": "maybe"})


@pytest.mark.process
def test_import_model_converts_an_older_bundle_to_one_that_answers_the_same(tmp_path):
    legacy = ROOT / "tests" / "fixtures" / "legacy" / "loans.bin"
    out = tmp_path / "new.bin"
    done = subprocess.run([PYTHON, "import_model.py", "--model", str(legacy), "--output", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes().startswith(MAGIC + b"2 ") and b"pickle" not in out.read_bytes()[:200]
    old, new = ModelBundle.load(legacy, Trust(allow_pickle=True)), ModelBundle.load(out)
    assert new.version == old.version and new.describe() == old.describe()
    recorded = json.loads((ROOT / "tests" / "fixtures" / "legacy" / "answers.json").read_text())
    from tabserve.web.app import create_app
    client = create_app(new, Settings()).test_client()
    batch = client.post("/predict", json=recorded["loans.bin"]["records"]).get_json()
    for got, want in zip(batch, recorded["loans.bin"]["batch"]):
        assert got["label"] == want["label"]
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-9)


# --- crafted files of the current format: one line each, never a crash -------------------------

@pytest.fixture(scope="module")
def forest_bundle(loan_csv):
    return fit_bundle(loan_csv, "approved", candidates=["random_forest"])


def _array_names(members: dict) -> dict[str, str]:
    """Each array member's role, read from bundle.json (a field of the model → its member)."""
    model = json.loads(members["bundle.json"])["model"]
    return {field: name for field, name in model.items() if isinstance(name, str)
            and name.endswith(".npy")}


def _replace_array(field: str, array_bytes: bytes):
    def change(members):
        return {**members, _array_names(members)[field]: array_bytes}
    return change


def _npy_header(shape, dtype="<f8", fortran=False) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": dtype, "fortran_order": fortran,
                                               "shape": shape})
    return out.getvalue()


def _deep_metrics(members):
    bomb = b"[" * 100_000 + b"]" * 100_000
    return {**members, "bundle.json": members["bundle.json"].replace(
        b'"metrics":{', b'"metrics":{"bomb":' + bomb + b",", 1)}


def _object_array():
    out = io.BytesIO()
    np.save(out, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return out.getvalue()


def _forest_loop(members):
    left_name = _array_names(members)["left"]
    left = archive.npy_array(members[left_name], left_name).copy()
    left[0] = 0  # the root's left child is the root
    return {**members, left_name: archive.npy_bytes(left)}


def _compress(path):
    header, _, payload = path.read_bytes().partition(b"\n")
    with zipfile.ZipFile(io.BytesIO(payload)) as zipped:
        members = {info.filename: zipped.read(info) for info in zipped.infolist()}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zipped:
        for name, data in members.items():
            zipped.writestr(name, data)
    import hashlib
    payload = out.getvalue()
    fields = header.split(b" ")
    fields[2] = b"sha256=" + hashlib.sha256(payload).hexdigest().encode()
    path.write_bytes(b" ".join(fields) + b"\n" + payload)


LINEAR_CRAFTS = {
    "a JSON bomb": (_deep_metrics, "bundle.json is nested too deeply"),
    "an absurd shape": (_replace_array("coef", _npy_header((10**12, 10**6)) + b"\0" * 16),
                        "claims shape (1000000000000, 1000000) of <f8 (8000000000000000000 "
                        "bytes) and holds 16"),
    "objects": (_replace_array("coef", _object_array()), "holds |O values"),
    "Fortran order": (_replace_array("coef", _npy_header((1, 1), fortran=True) + b"\0" * 8),
                      "in Fortran order"),
    "a wrong length": (_replace_array("fill", archive.npy_bytes(np.zeros(3))),
                       "linear fill must be"),
    "wrong coefficients": (_replace_array("coef", archive.npy_bytes(np.zeros((2, 2)))),
                           "linear coefficients must be 1 ×"),
    "a string dtype": (_replace_array("coef", archive.npy_bytes(np.array(["a"]))),
                       "holds <U1 values"),
    "a wrong type": (lambda m: {**m, "bundle.json": m["bundle.json"].replace(
        b'"threshold":', b'"threshold":"high","was":', 1)},
        "bundle.json: Expected `float | null`, got `str` - at `$.threshold`"),
    "an extra member": (lambda m: {**m, "extra.npy": archive.npy_bytes(np.zeros(1))},
                        "members nothing reads: extra.npy"),
    "a missing member": (lambda m: {k: v for k, v in m.items()
                                    if k != _array_names(m)["coef"]}, "is missing"),
    "no document": (lambda m: {"bundle.json": b"{}"}, "Object missing required field `model`"),
    "an unknown kind": (lambda m: {**m, "bundle.json": m["bundle.json"].replace(
        b'"type":"linear"', b'"type":"neural"', 1)}, "Invalid value 'neural'"),
}


@pytest.mark.parametrize("craft", LINEAR_CRAFTS, ids=list(LINEAR_CRAFTS))
def test_a_crafted_bundle_is_refused_in_one_line(tmp_path, loan_csv, craft):
    change, message = LINEAR_CRAFTS[craft]
    bundle = fit_bundle(loan_csv, "approved", candidates=["logistic_regression"])
    path = tmp_path / "model.bin"
    bundle.save(path)
    rewrite_payload(path, change)
    with pytest.raises(ModelLoadError, match=None) as refused:
        ModelBundle.load(path)
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert str(refused.value).startswith(f"model file {path} cannot be read: ")


def test_a_forest_whose_tree_loops_and_a_compressed_archive_are_refused(tmp_path, forest_bundle):
    path = tmp_path / "model.bin"
    forest_bundle.save(path)
    ModelBundle.load(path)
    rewrite_payload(path, _forest_loop)
    with pytest.raises(ModelLoadError, match="a forest node's child lies outside its tree or "
                                             "before it"):
        ModelBundle.load(path)
    forest_bundle.save(path)
    _compress(path)
    with pytest.raises(ModelLoadError, match="is compressed or larger than the file"):
        ModelBundle.load(path)


@pytest.fixture(scope="module")
def saved_kinds(tmp_path_factory, loan_csv, flower_csv, forest_bundle):
    """One saved bundle of each kind the trainer makes, binary and multiclass."""
    folder = tmp_path_factory.mktemp("kinds")
    bundles = [fit_bundle(loan_csv, "approved", candidates=["logistic_regression"]),
               fit_bundle(flower_csv, "species", candidates=["xgboost"]), forest_bundle,
               fit_bundle(loan_csv, "approved", candidates=["blend"], max_trials=2)]
    paths = []
    for i, bundle in enumerate(bundles):
        paths.append(folder / f"{i}.bin")
        bundle.save(paths[-1])
    return paths


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 3), member=st.integers(0, 10**6), at=st.integers(0, 10**9),
       byte=st.integers(0, 255), span=st.integers(1, 8))
def test_bytes_changed_anywhere_in_bundle_json_or_an_array_never_crash_the_loader(
        saved_kinds, tmp_path_factory, which, member, at, byte, span):
    """Any bytes of the document or of an array member (the checksum made to fit, as anyone
    can): the loader refuses in one line (`ModelLoadError`) or gives a bundle that scores its
    example. XGBoost's own boosters (UBJSON) are parsed by XGBoost and left out here."""
    path = tmp_path_factory.mktemp("fuzz") / "model.bin"
    path.write_bytes(saved_kinds[which].read_bytes())

    def change(members):
        names = [name for name in members if not name.endswith(".ubj")]
        name = names[member % len(names)]
        data = bytearray(members[name])
        start = at % len(data)
        data[start:start + span] = bytes([byte]) * min(span, len(data) - start)
        return {**members, name: bytes(data)}

    rewrite_payload(path, change)
    try:
        bundle = ModelBundle.load(path)
    except ModelLoadError as refused:
        assert "\n" not in str(refused)
        return
    with np.errstate(all="ignore"):
        answer = Predictor(bundle).probabilities(_example_columns(bundle))
    assert answer.shape == (1, len(bundle.classes))


def _example_columns(bundle):
    from tabserve.model.validation import validate
    return validate(bundle.schema, [bundle.example]).columns
