"""A counting HTTP forwarder on loopback, in front of the moto server: it counts requests
per AWS action (and the WaitTimeSeconds of each ReceiveMessage), and can answer 503 to a
chosen action, as an AWS outage of one API would. The daemon reaches it through
AWS_ENDPOINT_URL."""

from __future__ import annotations

import http.client
import http.server
import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message
from urllib.parse import parse_qs, urlparse

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length",
                         "proxy-connection", "te", "trailer", "upgrade"})


class Proxy:
    def __init__(self, upstream: str) -> None:
        parsed = urlparse(upstream)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.url = ""
        self.counts: Counter[str] = Counter()  # by action
        self.services: Counter[str] = Counter()  # by service (X-Amz-Target prefix, or "query")
        self.receive_waits: list[int] = []  # WaitTimeSeconds of each ReceiveMessage, in order
        self.connections = 0  # TCP connections accepted (it keeps them alive, as AWS does)
        self._failing: set[str] = set()
        self._lock = threading.Lock()

    def fail(self, *actions: str) -> None:
        """Answer 503 to these actions (until `heal`)."""
        with self._lock:
            self._failing |= set(actions)

    def heal(self) -> None:
        with self._lock:
            self._failing.clear()

    def count(self, action: str) -> int:
        with self._lock:
            return self.counts[action]

    def waits(self) -> list[int]:
        with self._lock:
            return list(self.receive_waits)

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.services.clear()
            self.receive_waits.clear()

    def total(self, service: str = "") -> int:
        """Requests counted, of the services whose name starts with `service` ("AmazonSQS")."""
        with self._lock:
            return sum(n for name, n in self.services.items() if name.startswith(service))

    def _note(self, service: str, action: str, params: dict[str, object]) -> bool:
        """Count one request; True when it must be answered 503."""
        with self._lock:
            self.counts[action] += 1
            self.services[service] += 1
            if action == "ReceiveMessage":
                self.receive_waits.append(int(str(params.get("WaitTimeSeconds", 0))))
            return action in self._failing


def _action(headers: Message[str, str], body: bytes) -> tuple[str, str,
                                                                    dict[str, object]]:
    """(service, action, parameters) of an AWS request, JSON or query protocol."""
    target = headers.get("X-Amz-Target", "")
    if target:
        service, _, action = target.rpartition(".")
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            params = {}
        return service, action, params if isinstance(params, dict) else {}
    query = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
    return "query", query.get("Action", ""), dict(query)


@contextmanager
def counting_proxy(upstream: str) -> Iterator[Proxy]:
    """A threaded forwarder on a free loopback port; its `url` is the endpoint to use."""
    proxy = Proxy(upstream)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with proxy._lock:
                proxy.connections += 1

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length", 0) or 0)
            body = self.rfile.read(length) if length else b""
            service, action, params = _action(self.headers, body)
            if proxy._note(service, action, params):
                self._answer(503, [("Content-Type", "application/x-amz-json-1.0")],
                             json.dumps({"__type": "ServiceUnavailable",
                                         "message": "proxy: failing on purpose"}).encode())
                return
            upstream = http.client.HTTPConnection(proxy.host, proxy.port, timeout=60)
            try:
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in _HOP_BY_HOP}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                self._answer(response.status, [(k, v) for k, v in response.getheaders()
                                               if k.lower() not in _HOP_BY_HOP], data)
            finally:
                upstream.close()

        def _answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        def log_message(self, format: str, *args: object) -> None:
            return

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: object, client_address: object) -> None:
            return  # a client gone mid-answer (a daemon stopped during its long poll)

    server = Server(("127.0.0.1", 0), Handler)
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="proxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
