"""KServe's Python SDK against a running tabserve, as a KServe user calls it: run in
.venv-kserve (its Pipfile says why) by tests/test_open_inference.py.

Reads a JSON request on stdin: {"rest": "http://host:port", "grpc": "host:port", "model",
"version", "records": [...], "fields": [[name, datatype], ...], "api_key": optional}.
Writes one JSON object: for each transport, readiness, each output as a list, the warnings,
or the error the SDK raised.
"""

import asyncio
import json
import sys

import numpy as np
from kserve import (InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest,
                    RESTConfig)

NUMPY = {"FP64": np.float64, "INT64": np.int64, "BYTES": np.object_}


def request(spec: dict) -> InferRequest:
    """One input tensor per field, set from numpy on the SDK's default (binary) path."""
    records = spec["records"]
    inputs = []
    for name, datatype in spec["fields"]:
        tensor = InferInput(name=name, shape=[len(records)], datatype=datatype)
        tensor.set_data_from_numpy(np.array([r[name] for r in records], dtype=NUMPY[datatype]))
        inputs.append(tensor)
    return InferRequest(model_name=spec["model"], infer_inputs=inputs, request_id="kserve-1")


def answer(response) -> dict:
    parameters = response.parameters or {}
    warnings = parameters.get("warnings")
    if hasattr(warnings, "string_param"):  # gRPC's InferParameter
        warnings = warnings.string_param
    return {"id": response.id, "model_version": response.model_version, "warnings": warnings,
            "outputs": {o.name: _listed(o.as_numpy()) for o in response.outputs}}


def _listed(array: np.ndarray) -> list:
    """A tensor as JSON lists; BYTES elements as text."""
    return [v.decode() if isinstance(v, bytes) else v for v in array.ravel().tolist()] \
        if array.dtype == np.object_ else array.tolist()


async def over_rest(spec: dict) -> dict:
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
    headers = {"Authorization": f"Bearer {spec['api_key']}"} if spec.get("api_key") else None
    try:
        ready = await client.is_model_ready(spec["rest"], spec["model"], headers=headers)
        response = await client.infer(spec["rest"], request(spec), model_name=spec["model"],
                                      headers=headers)
        return {"ready": ready, **answer(response)}
    except Exception as err:  # noqa: BLE001 - reported to the test, which says what it expects
        return {"error": f"{type(err).__name__}: {err}"}
    finally:
        await client.close()


async def over_grpc(spec: dict) -> dict:
    client = InferenceGRPCClient(spec["grpc"], retries=0)
    headers = [("authorization", f"Bearer {spec['api_key']}")] if spec.get("api_key") else None
    try:
        ready = await client.is_model_ready(spec["model"], headers=headers)
        response = await client.infer(request(spec), headers=headers)
        return {"ready": ready, **answer(response)}
    except Exception as err:  # noqa: BLE001
        return {"error": f"{type(err).__name__}: {err}"}
    finally:
        await client.close()


async def main() -> None:
    spec = json.load(sys.stdin)
    results = {"rest": await over_rest(spec)}
    if spec.get("grpc"):
        results["grpc"] = await over_grpc(spec)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main())
