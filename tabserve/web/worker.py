"""The gunicorn worker the service runs (`worker_class` in gunicorn.conf.py): gunicorn's gevent
worker, so that a slow client holds a greenlet, not a whole worker. Six connections that sent a
byte every few seconds used to leave every valid request unanswered on sync workers; here each
waits on its own socket while the worker answers the others (docs/reliability.md).

A request's headers must arrive within `keepalive` seconds (gunicorn's async workers read them
under that timeout, the first request of a connection too); a connection that sends nothing is
closed then. A worker holds at most `worker_connections` connections at once.

Threads are not patched: gRPC's server (`GRPC_PORT`) runs in real threads of its own, whose C
core blocks in calls gevent cannot see, and its thread pool hands work over through real queues.
"""

from __future__ import annotations

from gevent import monkey, socket
from gunicorn.workers.ggevent import GeventWorker


class SlowClientWorker(GeventWorker):
    """gunicorn's gevent worker, with threads and queues left as they are."""

    def patch(self) -> None:
        monkey.patch_all(thread=False, queue=False)
        # the listening sockets, inherited from the master, as gevent's (as the base does)
        self.sockets = [socket.socket(s.FAMILY, socket.SOCK_STREAM, fileno=s.sock.detach())
                        for s in self.sockets]
