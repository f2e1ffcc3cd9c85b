"""A bounded slowloris for the tests (loopback only): connections that send headers or a body a
byte at a time, or open a keep-alive connection and then say nothing, reopened as the server
closes them, as real attackers do; and a valid client measuring how its requests fare beside
them."""

from __future__ import annotations

import socket
import threading
import time

import requests

DRIP_SECONDS = 2.0  # between the bytes a slow connection sends


class SlowClients:
    """`count` slow connections to host:port, a third of each kind, kept open until `stop`."""

    def __init__(self, host: str, port: int, count: int = 50, path: str = "/predict"):
        self.address = (host, port)
        self.path = path
        self.count = count
        self.opened = 0  # connections opened so far (reopenings included)
        self.stopping = threading.Event()
        kinds = [self._slow_headers, self._slow_body, self._idle]
        self.threads = [threading.Thread(target=self._keep, args=(kinds[i % 3],), daemon=True)
                        for i in range(count)]

    def __enter__(self) -> SlowClients:
        for thread in self.threads:
            thread.start()
        deadline = time.monotonic() + 30
        while self.opened < len(self.threads) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.opened >= len(self.threads), "the slow connections did not open"
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=10)

    def _keep(self, kind) -> None:
        """One slow connection after another, until stopped."""
        while not self.stopping.is_set():
            try:
                with socket.create_connection(self.address, timeout=10) as s:
                    self.opened += 1
                    kind(s)
            except OSError:  # the server closed it: open the next
                self.stopping.wait(0.1)

    def _drip(self, s: socket.socket, data: bytes) -> None:
        for byte in data:
            if self.stopping.wait(DRIP_SECONDS):
                return
            s.sendall(bytes([byte]))

    def _slow_headers(self, s: socket.socket) -> None:
        s.sendall(f"POST {self.path} HTTP/1.1\r\n".encode())
        self._drip(s, b"Host: x\r\nContent-Type: application/json\r\nX-Padding: " + b"a" * 1000)

    def _slow_body(self, s: socket.socket) -> None:
        s.sendall(f"POST {self.path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  "Content-Length: 1000\r\n\r\n{".encode())
        self._drip(s, b" " * 999)

    def _idle(self, s: socket.socket) -> None:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        s.recv(4096)
        self.stopping.wait(60)  # keep-alive, and then nothing


def valid_latencies(url: str, record: dict, count: int = 60) -> list[float]:
    """Seconds each of `count` valid requests took, one after another; `AssertionError` for
    one not answered 200 within 10 s."""
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        answer = requests.post(f"{url}/predict", json=record, timeout=10)
        seconds.append(time.perf_counter() - started)
        assert answer.status_code == 200, answer.text[:200]
    return seconds


def grpc_latencies(port: int, record: dict, count: int = 60) -> list[float]:
    """Seconds each of `count` valid ModelInfer calls took (the official Triton client)."""
    import numpy as np
    import tritonclient.grpc as triton_grpc

    client = triton_grpc.InferenceServerClient(f"127.0.0.1:{port}")
    metadata = client.get_model_metadata("churn", as_json=True)
    inputs = []
    for declared in metadata["inputs"]:
        name, datatype = declared["name"], declared["datatype"]
        tensor = triton_grpc.InferInput(name, [1], datatype)
        tensor.set_data_from_numpy(np.array([record[name]], dtype={
            "FP64": np.float64, "BYTES": np.object_, "INT64": np.int64}[datatype]))
        inputs.append(tensor)
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        answer = client.infer("churn", inputs, client_timeout=10)
        seconds.append(time.perf_counter() - started)
        assert answer.as_numpy("label") is not None
    client.close()
    return seconds


def p99(seconds: list[float]) -> float:
    ordered = sorted(seconds)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # an empty SETTINGS frame


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + \
        stream.to_bytes(4, "big") + payload


def _literal_headers(headers: list[tuple[str, str]]) -> bytes:
    """HPACK literal header fields without indexing (names and values under 127 bytes)."""
    return b"".join(b"\x00" + bytes([len(n)]) + n.encode() + bytes([len(v)]) + v.encode()
                    for n, v in headers)


class SlowGrpcClients(SlowClients):
    """Slow HTTP/2 against a gRPC port: a preface sent a byte at a time, a connection that
    says hello and then nothing, and a ModelInfer stream whose message comes a byte at a
    time."""

    def _slow_headers(self, s: socket.socket) -> None:
        self._drip(s, PREFACE)

    def _idle(self, s: socket.socket) -> None:
        s.sendall(PREFACE + SETTINGS)
        self.stopping.wait(60)

    def _slow_body(self, s: socket.socket) -> None:
        headers = _literal_headers([
            (":method", "POST"), (":scheme", "http"), (":authority", "x"),
            (":path", "/inference.GRPCInferenceService/ModelInfer"),
            ("content-type", "application/grpc"), ("te", "trailers")])
        s.sendall(PREFACE + SETTINGS + _frame(0x1, 0x4, 1, headers)
                  + _frame(0x0, 0x0, 1, b"\x00" + (1000).to_bytes(4, "big")))
        for _ in range(1000):
            if self.stopping.wait(DRIP_SECONDS):
                return
            s.sendall(_frame(0x0, 0x0, 1, b"\x0a"))
