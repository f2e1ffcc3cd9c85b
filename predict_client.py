"""Send records to a running service and print its answers, one JSON object per line.

    .venv/bin/python predict_client.py customers.csv                # a CSV with a header row
    .venv/bin/python predict_client.py record.json --url http://host:9696
    .venv/bin/python predict_client.py batch.json --explain

CSV cells are typed with the service's own schema (GET /model): numeric fields become numbers,
empty cells null. Exit code 1 on any error, with the service's problem details or why it could
not be reached.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

# the standard library only, so that it runs wherever `make run` did (no `requests` there)
from tabserve.settings import client_api_key, environment


class ClientError(Exception):
    """Why the records could not be sent or were refused."""


def read_records(path: Path, fields: list[dict]) -> list[dict]:
    """Records from a .json file (an object or a list) or a .csv file typed by the schema."""
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text())
        return data if isinstance(data, list) else [data]
    kinds = {f["name"]: f["kind"] for f in fields}
    records = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            record = {}
            for name, text in row.items():
                text = (text or "").strip()
                if text in ("", "NA"):
                    record[name] = None
                elif kinds.get(name) == "numeric":
                    try:
                        record[name] = float(text)
                    except ValueError:
                        raise ClientError(f"{path}:{line}: {name} is not a number: {text!r}")
                else:
                    record[name] = text
            records.append(record)
    return records


def call(url: str, path: str, timeout: float, headers: dict[str, str],
         records: list[dict] | None = None) -> object:
    """GET `path`, or POST `records` to it as JSON; the answer's JSON. `ClientError` naming
    the status and the service's problem detail when it refuses."""
    data = None if records is None else json.dumps(records).encode()
    sent = {**headers, "Content-Type": "application/json"} if data is not None else headers
    try:
        with urllib.request.urlopen(urllib.request.Request(f"{url}{path}", data=data,
                                                           headers=sent),
                                    timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as err:
        body = err.read()
        status = err.code
    try:
        problem = json.loads(body)
        detail = (problem.get("detail") or problem.get("error")) \
            if isinstance(problem, dict) else None
    except ValueError:
        detail = None
    if status == 401:
        detail = "the service needs an API key: --api-key KEY or TABSERVE_API_KEY" + (
            " (the one given is not valid)" if "Authorization" in headers else "")
    raise ClientError(f"{status} from {path}: "
                      f"{detail or body[:500].decode('utf-8', 'replace')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="a .json or .csv file of records")
    parser.add_argument("--url", default="http://localhost:9696", help="the service's base URL")
    parser.add_argument("--batch-size", type=int, default=1000, help="records per request")
    parser.add_argument("--explain", action="store_true", help="ask /explain, not /predict")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--api-key", default=client_api_key(environment()),
                        help="the service's API key, if it needs one (default: the "
                             "TABSERVE_API_KEY environment variable, which keeps it out of "
                             "your shell history)")
    args = parser.parse_args(argv)
    url = args.url.rstrip("/")
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    try:
        model = call(url, "/model", args.timeout, headers)
        records = read_records(args.file, model["schema"]["fields"])
        if not records:
            raise ClientError(f"{args.file}: no records")
        path = "/explain" if args.explain else "/predict"
        for start in range(0, len(records), args.batch_size):
            for answer in call(url, path, args.timeout, headers,
                               records[start:start + args.batch_size]):
                print(json.dumps(answer))
    except (ClientError, OSError, ValueError) as err:  # URLError is an OSError
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
