"""wrk's part for gRPC: one serialized ModelInferRequest, sent again and again by `concurrency`
calls in flight for `seconds`, over one HTTP/2 connection per caller. Prints wrk's figures as
JSON: requests, rps, p50/p90/p99 in ms, errors.

    python bench/grpc_load.py HOST:PORT REQUEST_FILE SECONDS CONCURRENCY

The request is sent as bytes and the answer read as bytes (no protobuf work in the client), so
the client costs as little of the two shared cores as it can.
"""

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import grpc

METHOD = "/inference.GRPCInferenceService/ModelInfer"


async def caller(address: str, request: bytes, until: float, latencies: list[float],
                 errors: list[int]) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        infer = channel.unary_unary(METHOD)  # bytes in, bytes out
        while time.perf_counter() < until:
            started = time.perf_counter()
            try:
                await infer(request, timeout=30)
            except grpc.aio.AioRpcError:
                errors.append(1)
                continue
            latencies.append(time.perf_counter() - started)


async def main(address: str, request_file: str, seconds: float, concurrency: int) -> None:
    request = Path(request_file).read_bytes()
    latencies: list[float] = []
    errors: list[int] = []
    began = time.perf_counter()
    await asyncio.gather(*(caller(address, request, began + seconds, latencies, errors)
                           for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    print(json.dumps({"requests": len(latencies), "rps": len(latencies) / elapsed,
                      "p50": cuts[49] * 1e3, "p90": cuts[89] * 1e3, "p99": cuts[98] * 1e3,
                      "errors": len(errors)}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])))
