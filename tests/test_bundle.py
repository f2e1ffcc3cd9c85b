"""Saving and loading model.bin: atomic writes, and a precise refusal for each bad file."""

import hashlib
import json
import pickle
from dataclasses import replace

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import Pipeline

from helpers import ROOT, alter_keeping_checksum
from tabserve.model import bundle as bundle_module
from tabserve.model.bundle import MAGIC, ModelBundle, ModelLoadError
from tabserve.model.pickles import pickled_steps
from tabserve.model.encoding import Encoder
from tabserve.model.trust import Trust, key_id
from tabserve.settings import ConfigError, signing_key
from tabserve.web.app import create_app
from tabserve.web.config import Settings


def test_round_trip_keeps_everything(tmp_path, loan_bundle):
    path = tmp_path / "m.bin"
    loan_bundle.save(path)
    loaded = ModelBundle.load(path)
    assert loaded.version == loan_bundle.version == loan_bundle.content_version()
    assert loaded.schema == loan_bundle.schema and loaded.metrics == loan_bundle.metrics


def test_a_failed_save_leaves_the_old_model_and_no_partial_file(tmp_path, loan_bundle):
    path = tmp_path / "m.bin"
    path.write_bytes(b"old")
    unwritable = replace(loan_bundle, metadata={**loan_bundle.metadata, "f": lambda: None})
    with pytest.raises(TypeError, match="a bundle cannot hold a function"):
        unwritable.save(path)
    assert path.read_bytes() == b"old" and not list(tmp_path.glob("*.partial"))


def _write_with_valid_header(path, payload: bytes, version: bytes = b"2"):
    path.write_bytes(MAGIC + version + b" sha256=" + hashlib.sha256(payload).hexdigest().encode()
                     + b"\n" + payload)


@pytest.mark.parametrize("make, message", [
    (lambda p, good: None, "not found"),
    (lambda p, good: p.mkdir(), "cannot be read"),
    (lambda p, good: p.write_bytes(b"PK\x03\x04 a zip file"), "not a tabserve model bundle"),
    (lambda p, good: p.write_bytes(good[: len(good) // 2]), "corrupted or truncated"),
    (lambda p, good: p.write_bytes(good[:-1] + bytes([good[-1] ^ 1])), "corrupted or truncated"),
    (lambda p, good: _write_with_valid_header(p, b"PK garbage"), "not a readable archive"),
    (lambda p, good: _write_with_valid_header(p, b"", b"9"), "bundle format '9'; this tabserve "
                                                             "reads formats 1 and 2: upgrade"),
    (lambda p, good: _write_with_valid_header(p, pickle.dumps({"a": 1}), b"1"),
     "is an older bundle, a pickle, and pickle runs code as it loads: convert it with"),
])
def test_bad_model_files_are_refused(tmp_path, loan_bundle, make, message):
    good_path = tmp_path / "good.bin"
    loan_bundle.save(good_path)
    path = tmp_path / "model.bin"
    make(path, good_path.read_bytes())
    with pytest.raises(ModelLoadError, match=message) as caught:
        ModelBundle.load(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("payload, message", [
    (b"\x80\x05garbage", "cannot be loaded with"),
    (pickle.dumps({"a": 1}), "holds a dict"),
])
def test_trusted_older_files_that_are_not_bundles_are_refused(tmp_path, payload, message):
    path = tmp_path / "model.bin"
    _write_with_valid_header(path, payload, b"1")
    with pytest.raises(ModelLoadError, match=message):
        ModelBundle.load(path, Trust(allow_pickle=True))


def test_other_library_versions_are_shown_and_warned_of_only_for_pickled_steps(
        tmp_path, loan_bundle, caplog):
    """A data bundle answers alike under any version: /model shows the difference, the log
    says nothing. Pickled steps may answer differently: one line, with a command that runs."""
    libraries = {**loan_bundle.metadata["libraries"], "scikit-learn": "0.1.0", "python": "3.9.1"}
    path = tmp_path / "m.bin"
    replace(loan_bundle, metadata={**loan_bundle.metadata, "libraries": libraries}).save(path)
    loaded = ModelBundle.load(path)
    assert any(shown.startswith("scikit-learn 0.1.0 at training time, ")
               for shown in loaded.describe()["library_mismatches"])
    assert "at training time" not in caplog.text
    pickled = tmp_path / "pickled.bin"
    width = len(Encoder(loaded.schema).feature_names)
    steps = Pipeline([("model", DummyClassifier().fit(np.zeros((2, width)), loaded.classes))])
    replace(loaded, model=pickled_steps(steps, width)).save(pickled)
    ModelBundle.load(pickled, Trust(allow_pickle=True))
    warned = [r.getMessage() for r in caplog.records if "pickled steps" in r.getMessage()]
    assert len(warned) == 1 and "python 3.9.1 at training time" in warned[0] \
        and ".venv/bin/python import_model.py" in warned[0] and "\n" not in warned[0]


LEGACY = ROOT / "tests" / "fixtures" / "legacy"


@pytest.mark.parametrize("name", ["telco.bin", "loans.bin", "flowers.bin"])
def test_a_bundle_from_the_flat_layout_answers_as_it_did(name):
    """Bundles written before the wings (classes named `tabserve.schema.Field`, ...) load and
    give the answers that code gave: one record, a batch and explanations (fixtures/legacy)."""
    raw = (LEGACY / name).read_bytes()
    assert b"tabserve.schema" in raw and b"tabserve.model" not in raw  # truly the old layout
    recorded = json.loads((LEGACY / "answers.json").read_text())[name]
    bundle = ModelBundle.load(LEGACY / name, Trust(allow_pickle=True))
    client = create_app(bundle, Settings()).test_client()
    records = recorded["records"]
    assert_same([client.post("/predict", json=r).get_json() for r in records[:10]],
                recorded["one"])
    assert_same(client.post("/predict", json=records).get_json(), recorded["batch"])
    assert_same(client.post("/explain", json=records[:5]).get_json(), recorded["explain"])
    model = client.get("/model").get_json()
    assert {k: model[k] for k in recorded["model"]} == recorded["model"]


def assert_same(got, want, where: str = "answer") -> None:
    """The same JSON: keys, labels, flags and warnings exactly; numbers to 1e-9 (the one-record
    tree walk adds the same leaves as the old code in another order: the last digit may move)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for key in want:
            assert_same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=0, abs=1e-9), where
    else:
        assert type(got) is type(want) and got == want, where


# --- signed bundles: refused before reading unless signed with the server's key, unaltered

KEY, OTHER_KEY = b"k" * 32, b"o" * 32


def resign_checksum(path) -> None:
    alter_keeping_checksum(path, b"approved", b"Approved")  # the target's name, in the pickle


@pytest.mark.parametrize("save_key, change, message", [
    (None, None, "is not signed, and this server accepts only models signed with its key"),
    (OTHER_KEY, None, "is signed with another key"),
    (KEY, resign_checksum, "was altered after it was signed"),
])
def test_a_server_with_a_key_refuses_other_bundles_before_reading_them(
        tmp_path, loan_bundle, monkeypatch, save_key, change, message):
    path = tmp_path / "m.bin"
    loan_bundle.save(path, signing_key=save_key)
    if change:
        change(path)
        ModelBundle.load(path)  # the checksum fits: without a key it would be read
    def never(*args):
        raise AssertionError("read a file the key should have refused")
    monkeypatch.setattr(bundle_module, "_decoded_bundle", never)
    with pytest.raises(ModelLoadError, match=message) as refused:
        ModelBundle.load(path, Trust(KEY))
    assert KEY.decode() not in str(refused.value) and "train it again" in str(refused.value)


def test_a_signed_bundle_loads_with_its_key_and_without_one(tmp_path, loan_bundle):
    path = tmp_path / "m.bin"
    loan_bundle.save(path, signing_key=KEY)
    header = path.read_bytes().partition(b"\n")[0].decode()
    assert f" key={key_id(KEY)} hmac-sha256=" in header and KEY.decode() not in header
    assert ModelBundle.load(path, Trust(KEY)).version == loan_bundle.version
    assert ModelBundle.load(path).version == loan_bundle.version  # no key: as before


@pytest.mark.parametrize("env, message", [
    ({"MODEL_SIGNING_KEY": "short"}, "has 5 bytes; use at least 16"),
    ({"MODEL_SIGNING_KEY": "k" * 32, "MODEL_SIGNING_KEY_FILE": "/x"}, "not both"),
    ({"MODEL_SIGNING_KEY_FILE": "/nonexistent/key"}, "cannot be read"),
])
def test_signing_key_settings_are_checked(env, message):
    with pytest.raises(ConfigError, match=message):
        signing_key(env)


def test_the_signing_key_is_read_from_a_file_and_never_shown(tmp_path):
    secret = tmp_path / "key"
    secret.write_bytes(KEY + b"\n")
    settings = Settings.from_env({"MODEL_SIGNING_KEY_FILE": str(secret)})
    assert settings.trust.signing_key == KEY and KEY.decode() not in repr(settings)
    assert signing_key({}) is None


def test_the_version_id_hashes_values_not_pickle_bytes(loan_bundle):
    """Pickle's bytes record which equal objects are one object (they differ between Python
    builds); the id must not: equal strings as one object or as two give one id."""
    import copy
    import pickle

    twin = copy.deepcopy(loan_bundle)
    twin.positive_class = "".join(list(twin.classes[1]))  # equal, but not the classes' object
    assert twin.positive_class is not twin.classes[1]
    ours, theirs = (pickle.dumps((b.classes, b.positive_class)) for b in (loan_bundle, twin))
    assert ours != theirs  # what the old id hashed differs
    assert twin.content_version() == loan_bundle.content_version()


def _nudge_a_coefficient(bundle) -> None:
    bundle.model.coef[0, 0] += 1e-12


@pytest.mark.parametrize("change", [
    lambda b: setattr(b, "threshold", (b.threshold or 0.5) - 0.1),
    lambda b: b.classes.reverse(),
    _nudge_a_coefficient,
], ids=["threshold", "classes", "a coefficient"])
def test_the_version_id_changes_with_what_decides_the_answers(loan_csv, change):
    import copy

    from helpers import fit_bundle

    linear = fit_bundle(loan_csv, "approved", candidates=["logistic_regression"])
    twin = copy.deepcopy(linear)
    change(twin)
    assert twin.content_version() != linear.content_version()
