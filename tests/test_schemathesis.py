"""Property-based fuzzing of every endpoint from the OpenAPI document, with schemathesis,
against the real gunicorn: no 5xx, and every answer matches the documented status codes,
content types, headers and response schemas.

The checks that a schema-valid request must be accepted and an invalid one refused are left
out on purpose: the API accepts unseen categories and unknown fields with a warning, and the
Open Inference Protocol's cross-tensor rules (every field present, equal lengths) are beyond
what JSON Schema states.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from helpers import ROOT, start_gunicorn, stop

pytestmark = pytest.mark.slow  # see pytest.ini

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,response_headers_conformance")


KEY = "schemathesis-key-" + "s" * 16


@pytest.mark.parametrize("keys, examples, least", [(False, 500, 2000), (True, 100, 400)],
                         ids=["open", "with-api-keys"])
def test_schemathesis_finds_no_failures(tmp_path, keys, examples, least):
    """With API keys on, the document (fetched with the key: it needs one too) declares the
    schemes and schemathesis sends the key with every request."""
    process, url = start_gunicorn(ROOT / "model.bin", **({"API_KEYS": KEY} if keys else {}))
    try:
        schema, extra = f"{url}/openapi.json", []
        if keys:
            document = requests.get(schema, headers={"X-API-Key": KEY}, timeout=10)
            assert document.json()["security"]
            (tmp_path / "openapi.json").write_bytes(document.content)
            schema = str(tmp_path / "openapi.json")
            extra = ["--url", url, "--header", f"Authorization: Bearer {KEY}"]
        done = subprocess.run(
            [str(Path(sys.executable).parent / "schemathesis"), "run", schema, *extra,
             "--checks", CHECKS, "--max-examples", str(examples), "--seed", "1",
             "--request-timeout", "30"],
            capture_output=True, text=True, timeout=900, cwd=tmp_path)
    finally:
        assert stop(process) == 0
    summary = done.stdout[-3000:]
    assert done.returncode == 0, summary
    generated = int(re.search(r"(\d+) generated", done.stdout).group(1))
    print(f"\nschemathesis: {generated} generated requests, all passed")
    assert generated >= least, summary
    assert "unhandled error" not in process.error_path.read_text()
    if keys:  # every request carried the key: none was refused for the want of one
        statuses = [json.loads(line)["status"] for line in
                    process.log_path.read_text().splitlines() if line.startswith("{")]
        assert len(statuses) >= least and 401 not in statuses
