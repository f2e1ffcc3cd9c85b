"""gRPC's hand-over on SIGHUP. HTTP's listening socket is the master's and outlives every
worker; each worker binds the gRPC port itself (SO_REUSEPORT), so when SIGHUP replaces the
workers, an old one that closed its port before a new one opened would leave nobody
listening. The old ones wait instead, in `worker_exit`, until a worker started after the
reload is serving (at most the graceful timeout).

Files in the metrics directory carry the news between processes: `grpc-reload` (the
reload's time, written by the master in `on_reload`) and `grpc-ready-<pid>` (a worker
serving). Standard library only: the master imports it, and must not import grpc before
forking.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

RELOAD = "grpc-reload"
READY = "grpc-ready-"
POLL_SECONDS = 0.05


class Handover:
    def __init__(self, directory: Path | str):
        self.directory = Path(directory)

    def reload_begins(self) -> None:
        """The master, on SIGHUP, before it forks the new workers."""
        (self.directory / RELOAD).write_text(repr(time.time()))

    def serving(self, pid: int, born: float) -> None:
        """A worker whose gRPC server has started; `born`: when it was forked (a worker
        forked before a reload is an old one, even if SIGHUP came while it was starting)."""
        (self.directory / f"{READY}{pid}").write_text(repr(born))

    def leaving(self, pid: int) -> None:
        (self.directory / f"{READY}{pid}").unlink(missing_ok=True)

    def await_successor(self, born: float, timeout: float) -> bool:
        """For a leaving worker forked at `born`: when a reload came after that, wait until a
        worker forked after the reload serves; True when one does (or no reload is under
        way), False at the timeout."""
        reload = self._time(self.directory / RELOAD)
        if reload is None or reload < born:
            return True  # a shutdown, not a hand-over
        deadline = time.monotonic() + timeout
        while True:
            if any((self._time(p) or 0) >= reload for p in self.directory.glob(f"{READY}*")
                   if p.name != f"{READY}{os.getpid()}"):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)

    @staticmethod
    def _time(path: Path) -> float | None:
        try:
            return float(path.read_text())
        except (OSError, ValueError):
            return None
