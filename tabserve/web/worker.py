"""The gunicorn worker the service runs (`worker_class` in gunicorn.conf.py): gunicorn's gevent
worker, so that a slow client holds a greenlet, not a whole worker. Six connections that sent a
byte every few seconds used to leave every valid request unanswered on sync workers; here each
waits on its own socket while the worker answers the others (docs/reliability.md).

A request's headers must arrive within `keepalive` seconds (gunicorn's async workers read them
under that timeout, the first request of a connection too); a connection that sends nothing is
closed then. A worker holds at most `worker_connections` connections at once.

Connections are kept alive between requests (clients that keep them, as Triton's, KServe's
and `requests.Session` do, skip a connection's set-up: that is most of a small request's cost
here). After SIGHUP a kept connection may bring one more request to an old worker, which
answers it with `Connection: close`; closing idle connections instead loses the request a
client sends at that moment (1 in 5 key rotations under load did). So a stop signal, unlike
in gunicorn's gevent worker:
- stops accepting at once (gunicorn's loop looks once a second), so a new connection reaches a
  new worker while the old ones finish what they hold;
- reads the API keys again, so that the last answers of an old worker take the keys that
  SIGHUP brought (its model stays the old one: both answer for a moment, as with sync
  workers).

Threads are not patched: gRPC's server (`GRPC_PORT`) runs an asyncio loop in a real thread of
its own, whose C core blocks in calls gevent cannot see.
"""

from __future__ import annotations

import time
from functools import partial

import gevent
from gevent import monkey, socket
from gevent.pool import Pool
from gevent.server import StreamServer
from gunicorn.sock import ssl_context
from gunicorn.workers.ggevent import GeventWorker


# A kept connection stays with the worker that accepted it: eight connections that all
# landed on one worker left the other idle (half the throughput, in one run of two). Closing
# each after this many seconds (after the request under way) spreads them again; a client
# making 500 requests a second on it reconnects for 1 of them.
CONNECTION_SECONDS = 1.0


class SlowClientWorker(GeventWorker):
    """gunicorn's gevent worker, threads and queues unpatched; a stop signal stops accepting
    at once and takes the API keys of the key file."""

    servers: tuple[StreamServer, ...] | list[StreamServer] = ()  # set by `run`

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.opened: dict = {}  # when each open connection was accepted

    def patch(self) -> None:
        monkey.patch_all(thread=False, queue=False)
        # the listening sockets, inherited from the master, as gevent's (as the base does)
        self.sockets = [socket.socket(s.FAMILY, socket.SOCK_STREAM, fileno=s.sock.detach())
                        for s in self.sockets]

    def handle(self, listener, client, addr) -> None:
        self.opened[client] = time.monotonic()
        try:
            super().handle(listener, client, addr)
        finally:
            self.opened.pop(client, None)

    def handle_request(self, listener_name, req, sock, addr) -> None:
        if time.monotonic() - self.opened.get(sock, 0.0) > CONNECTION_SECONDS:
            req.must_close = True  # the client reconnects: to the worker that is freer then
        super().handle_request(listener_name, req, sock, addr)
        # let the worker's other connections have their turn: a client that sends its next
        # request at once finds it read without waiting, and would be served again and again
        # (one connection in eight had the worker to itself: 1,000-record p99 1.1 s, p50 5 ms)
        gevent.idle()

    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
        for server in self.servers:  # new connections go to the other workers from now
            server.stop_accepting()
        from tabserve.web.app import reload_keys
        from tabserve.web.auth import ApiKeyError

        try:
            reload_keys(self.wsgi)
        except ApiKeyError:
            pass  # the master said why, and kept the keys the old workers hold

    def run(self) -> None:
        """gunicorn's gevent loop, keeping its servers for `handle_exit`."""
        ssl_args = {"ssl_context": ssl_context(self.cfg)} if self.cfg.is_ssl else {}
        self.servers = []
        for listener in self.sockets:
            listener.setblocking(1)
            server = StreamServer(listener, handle=partial(self.handle, listener),
                                  spawn=Pool(self.worker_connections), **ssl_args)
            if self.cfg.workers > 1:
                server.max_accept = 1  # leave the next connection to another worker
            server.start()
            self.servers.append(server)
        while self.alive:
            self.notify()
            gevent.sleep(1.0)
        self._drain()

    def _drain(self) -> None:
        """Stop accepting, then let the requests under way finish within graceful_timeout."""
        for server in self.servers:
            server.close()
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while time.monotonic() < deadline:
            if all(server.pool.free_count() == server.pool.size for server in self.servers):
                return
            self.notify()
            gevent.sleep(0.1)
        self.log.warning("Worker graceful timeout (pid:%s)", self.pid)
        for server in self.servers:
            server.stop(timeout=1)
