"""Slow clients against the server as `make run` starts it (issue 47): 50 connections that send
headers or a body a byte every 2 s, or say nothing after a first request, while a valid client
keeps asking; the same over gRPC with slow HTTP/2. The image gets the same attack in
test_docker.py. Latencies are printed, not asserted: each valid request must be answered, each
within a 10 s client timeout (sync workers left them all unanswered)."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from helpers import ROOT, free_port, process_fixture, start_gunicorn, stop
from slow_clients import (SlowClients, SlowGrpcClients, grpc_latencies, p99,
                          valid_latencies)

pytestmark = pytest.mark.process


@process_fixture(scope="module")
def served():
    grpc_port = free_port()
    process, url = start_gunicorn(ROOT / "model.bin", GRPC_PORT=str(grpc_port))
    yield process, url, grpc_port
    stop(process)


def test_http_answers_beside_50_slow_connections(served, telco_record):
    process, url, _ = served
    address = urlparse(url)
    with SlowClients(address.hostname, address.port, 50) as attack:
        seconds = valid_latencies(url, telco_record, 60)
    print(f"\n/predict beside {attack.opened} slow connections: p99 {p99(seconds) * 1000:.1f} "
          f"ms, slowest {max(seconds) * 1000:.1f} ms")
    assert "Worker timeout" not in process.error_path.read_text()


def test_grpc_answers_beside_50_slow_http2_connections(served, telco_record):
    process, url, grpc_port = served
    with SlowGrpcClients("127.0.0.1", grpc_port, 50) as attack:
        seconds = grpc_latencies(grpc_port, telco_record, 60)
        http = valid_latencies(url, telco_record, 10)  # HTTP is not starved either
    print(f"\nModelInfer beside {attack.opened} slow HTTP/2 connections: p99 "
          f"{p99(seconds) * 1000:.1f} ms, slowest {max(seconds) * 1000:.1f} ms; /predict "
          f"slowest {max(http) * 1000:.1f} ms")
