"""Property-based fuzzing of every endpoint from the OpenAPI document, with schemathesis,
against the real gunicorn: no 5xx, and every answer matches the documented status codes,
content types, headers and response schemas.

The checks that a schema-valid request must be accepted and an invalid one refused are left
out on purpose: the API accepts unseen categories and unknown fields with a warning, and the
Open Inference Protocol's cross-tensor rules (every field present, equal lengths) are beyond
what JSON Schema states.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT, start_gunicorn, stop

pytestmark = pytest.mark.slow  # see pytest.ini

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,response_headers_conformance")


def test_schemathesis_finds_no_failures(tmp_path):
    process, url = start_gunicorn(ROOT / "model.bin")
    try:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "schemathesis"), "run", f"{url}/openapi.json",
             "--checks", CHECKS, "--max-examples", "500", "--seed", "1",
             "--request-timeout", "30"],
            capture_output=True, text=True, timeout=900, cwd=tmp_path)
    finally:
        assert stop(process) == 0
    summary = done.stdout[-3000:]
    assert done.returncode == 0, summary
    generated = int(re.search(r"(\d+) generated", done.stdout).group(1))
    print(f"\nschemathesis: {generated} generated requests, all passed")
    assert generated >= 2000, summary
    assert "unhandled error" not in process.error_path.read_text()
