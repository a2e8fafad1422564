"""A TCP gate in front of a real server (moto, a ping receiver) on a port that stays the
same: what the daemon sees when AWS or Healthchecks goes away and comes back.

`down()` is a dead endpoint (every open connection reset, nothing listening: connection
refused); `up()` listens again on the same port. `hold(marker)` accepts requests carrying
`marker` (e.g. the DynamoDB Scan target) and never forwards or answers them: a request in
flight that hangs, which a test can then cut with `down()`. `hold_all()` hangs everything.
`watch(marker)` only tells when such a request has gone through (to kill the server then).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, field

_CHUNK = 65536


@dataclass
class Gate:
    upstream: tuple[str, int]
    port: int = 0
    held: threading.Event = field(default_factory=threading.Event)  # a request was held
    seen: threading.Event = field(default_factory=threading.Event)  # a watched one passed
    forwarded: int = 0  # connections forwarded so far
    _marker: bytes | None = None
    _watch: bytes | None = None
    _hold_all: bool = False
    _listener: socket.socket | None = None
    _sockets: set[socket.socket] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ----- what a test does

    def up(self) -> Gate:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="gate-accept",
                         daemon=True).start()
        return self

    def down(self) -> None:
        """Reset every connection and stop listening: the server is gone."""
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = set(self._sockets), set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for sock in sockets:
            _reset(sock)

    def hold(self, marker: bytes) -> None:
        """From now on, requests carrying `marker` are accepted and never answered."""
        self.held.clear()
        self._marker = marker

    def watch(self, marker: bytes) -> None:
        """Set `seen` once a request carrying `marker` has been passed on: it is in flight."""
        self.seen.clear()
        self._watch = marker

    def hold_all(self) -> None:
        self.held.clear()
        self._hold_all = True

    def release(self) -> None:
        """Forward everything again (a held connection stays dead: the client times out)."""
        self._marker = None
        self._hold_all = False

    def close(self) -> None:
        self.release()
        self.down()

    # ----- the proxy

    def _track(self, sock: socket.socket) -> bool:
        with self._lock:
            if self._listener is None:
                return False
            self._sockets.add(sock)
            return True

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if not self._track(client):
                _reset(client)
                return
            threading.Thread(target=self._serve, args=(client,), name="gate-conn",
                             daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        if self._hold_all:
            self.held.set()
            return  # accepted, never answered; reset by down() or close()
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            _reset(client)
            return
        server.settimeout(None)
        if not self._track(server):
            _reset(server)
            _reset(client)
            return
        with self._lock:
            self.forwarded += 1
        answers = threading.Thread(target=self._pump, args=(server, client, False),
                                   name="gate-answers", daemon=True)
        answers.start()
        if not self._pump(client, server, True):
            return  # held: both ends stay open until down()
        answers.join()
        with self._lock:
            self._sockets -= {client, server}
        client.close()
        server.close()

    def _pump(self, source: socket.socket, sink: socket.socket, requests: bool) -> bool:
        """Copy until either end closes; False when a request was held."""
        try:
            while True:
                data = source.recv(_CHUNK)
                if not data:
                    break
                if requests and self._marker is not None and self._marker in data:
                    self.held.set()
                    return False  # swallowed: this connection now hangs until down()
                sink.sendall(data)
                if requests and self._watch is not None and self._watch in data:
                    self.seen.set()
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return True


def _reset(sock: socket.socket) -> None:
    """Close with RST, as a crashed server's kernel would answer."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()
