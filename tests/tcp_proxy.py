"""A TCP proxy between workers and PostgreSQL, to cut connections the way
networks do: refuse new ones (server down) or silently stop delivering bytes on
one (a dead route: no error, no reset, just silence)."""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field

from psycopg.conninfo import conninfo_to_dict, make_conninfo


@dataclass(eq=False)
class _Pair:
    downstream: socket.socket  # the client's side
    upstream: socket.socket  # ours, towards the server
    flowing: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.flowing.set()

    def close(self) -> None:
        for sock in (self.downstream, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to the server of ``dsn``; ``proxied(dsn)`` gives
    the same DSN through the proxy."""

    def __init__(self, dsn: str):
        params = conninfo_to_dict(dsn)
        self.target = (str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432))
        self.port = 0
        self._listener: socket.socket | None = None
        self._pairs: list[_Pair] = []
        self._lock = threading.Lock()

    def proxied(self, dsn: str) -> str:
        return make_conninfo(dsn, host="127.0.0.1", port=str(self.port))

    def start(self) -> TcpProxy:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def refuse(self) -> None:
        """Close the listening socket: new connections are refused, as by a server
        that is down. Established connections are left alone."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() below
            self._listener.close()
            self._listener = None

    def cut_all(self) -> None:
        """Reset every established connection."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            pair.close()
            pair.flowing.set()  # a silenced pump finds its sockets closed and ends

    def silence(self, upstream_port: int) -> None:
        """Stop delivering bytes, both ways, on the connection whose server-side
        peer port (pg_stat_activity.client_port) is ``upstream_port``."""
        with self._lock:
            matches = [p for p in self._pairs if p.upstream.getsockname()[1] == upstream_port]
        if not matches:
            raise LookupError(f"no proxied connection uses port {upstream_port}")
        for pair in matches:
            pair.flowing.clear()

    def close(self) -> None:
        self.refuse()
        self.cut_all()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                downstream, _ = listener.accept()
            except OSError:
                return  # closed by refuse()
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                downstream.close()
                continue
            pair = _Pair(downstream, upstream)
            with self._lock:
                self._pairs.append(pair)
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(pair, source, sink), daemon=True).start()

    @staticmethod
    def _pump(pair: _Pair, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                pair.flowing.wait()  # silenced: hold the bytes forever
                sink.sendall(data)
        except OSError:
            pass
        if pair.flowing.is_set():
            pair.close()
