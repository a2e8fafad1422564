"""SQS ReceiveMessage without botocore's request pipeline (docs/design.md §6).

An idle daemon's one recurring cost is its long poll, 180 an hour. botocore spends about
2.5 ms of CPU on each (event hooks, endpoint rules, urllib3, a proxy lookup in the
environment per request); the request itself needs a third of that. `LongPoll` sends the
same JSON request, signed by botocore's own SigV4 signer with the client's (refreshing)
credentials, over kept-alive `http.client` connections, and turns every failure into the
botocore exception the client would have raised, so retries, logs and the queue-gone
checks treat both alike. Everything else, and any set-up it does not know (a proxy),
stays with botocore.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import botocore.auth
import botocore.awsrequest
import botocore.exceptions
import botocore.httpsession
import botocore.session
import botocore.utils

CONNECT_TIMEOUT = 5.0  # the defaults; for_client takes the client's own
READ_TIMEOUT = 30.0  # above the 20 s long poll
_TARGET = "AmazonSQS.ReceiveMessage"
# What a kept-alive connection the server has since closed raises on reuse: send again
# once on a new connection (as urllib3 does); anything else is the answer.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class LongPoll:
    """`receive_message(**params)` with the client method's result: a dict whose
    "Messages" (when there are any) hold MessageId and ReceiptHandle."""

    def __init__(self, endpoint_url: str, region: str, credentials: Any,
                 ca_bundle: str | None = None, *, connect_timeout: float = CONNECT_TIMEOUT,
                 read_timeout: float = READ_TIMEOUT) -> None:
        parts = urlsplit(endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) endpoint: {endpoint_url}")
        self.endpoint_url = endpoint_url
        self._url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}/"
        self._path = f"{parts.path.rstrip('/')}/"
        self._host, self._port = parts.hostname, parts.port
        self._tls: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._tls = ssl.create_default_context(
                cafile=ca_bundle or botocore.httpsession.get_cert_path(True))
        self._region = region
        self._credentials = credentials
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        self._idle: list[http.client.HTTPConnection] = []  # kept alive between polls
        self._lock = threading.Lock()

    @classmethod
    def for_client(cls, client: Any, core: botocore.session.Session) -> LongPoll | None:
        """The fast path for this SQS client made by the botocore session `core`, or None
        where it would differ from the client: a proxy, or no credentials."""
        endpoint = client.meta.endpoint_url
        # Where botocore would go through a proxy (its config's, or the environment's).
        proxies = client.meta.config.proxies or botocore.utils.get_environ_proxies(endpoint)
        if botocore.httpsession.ProxyConfiguration(proxies).proxy_url_for(endpoint):
            return None
        credentials = core.get_credentials()
        if credentials is None:
            return None
        config = client.meta.config
        return cls(endpoint, client.meta.region_name, credentials,
                   core.get_config_variable("ca_bundle"),
                   connect_timeout=config.connect_timeout, read_timeout=config.read_timeout)

    def receive_message(self, **params: Any) -> dict[str, Any]:
        body = json.dumps(params).encode()
        headers = self._signed(body)
        connection: http.client.HTTPConnection | None = None
        try:
            connection, reused = self._connection()
            try:
                status, answer_headers, data = self._exchange(connection, headers, body)
            except _STALE:
                if not reused:
                    raise
                connection.close()
                connection = None
                connection = self._new_connection()
                status, answer_headers, data = self._exchange(connection, headers, body)
        except (OSError, http.client.HTTPException) as error:
            if connection is not None:
                connection.close()
            raise self._network_error(error, connected=connection is not None) from error
        self._release(connection)
        return _result(status, answer_headers, data)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    # ----- the request

    def _signed(self, body: bytes) -> dict[str, str]:
        """The headers botocore sends for this call, signed as it signs them."""
        request = botocore.awsrequest.AWSRequest(method="POST", url=self._url, data=body,
                                                 headers={
            "X-Amz-Target": _TARGET,
            "Content-Type": "application/x-amz-json-1.0",
            "x-amzn-query-mode": "true",
        })
        signer = botocore.auth.SigV4Auth(self._credentials.get_frozen_credentials(), "sqs",
                                         self._region)
        signer.add_auth(request)
        return dict(request.headers.items())

    def _exchange(self, connection: http.client.HTTPConnection, headers: dict[str, str],
                  body: bytes) -> tuple[int, http.client.HTTPMessage, bytes]:
        connection.request("POST", self._path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.headers, response.read()

    # ----- connections

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._new_connection(), False

    def _new_connection(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection
        if self._tls is not None:
            connection = http.client.HTTPSConnection(self._host, self._port,
                                                     timeout=self._connect_timeout,
                                                     context=self._tls)
        else:
            connection = http.client.HTTPConnection(self._host, self._port,
                                                    timeout=self._connect_timeout)
        connection.connect()
        assert connection.sock is not None  # connect() made it
        connection.sock.settimeout(self._read_timeout)
        return connection

    def _release(self, connection: http.client.HTTPConnection) -> None:
        """Keep a connection the answer left open. One http.client closed after the answer
        (HTTP/1.0, or `Connection: close`) is dropped: reopened by itself it would wait
        only the connect timeout for the next 20 s poll."""
        if connection.sock is None:
            connection.close()
            return
        with self._lock:
            self._idle.append(connection)

    def _network_error(self, error: BaseException, *, connected: bool) -> Exception:
        """What botocore raises for the same trouble (its message names the request URL)."""
        url = self._url
        if isinstance(error, TimeoutError):
            return (botocore.exceptions.ReadTimeoutError(endpoint_url=url, error=error)
                    if connected else
                    botocore.exceptions.ConnectTimeoutError(endpoint_url=url, error=error))
        if not connected:
            return botocore.exceptions.EndpointConnectionError(endpoint_url=url, error=error)
        return botocore.exceptions.ConnectionClosedError(endpoint_url=url, error=error)


def _result(status: int, headers: http.client.HTTPMessage, data: bytes) -> dict[str, Any]:
    """The parsed answer, or botocore's ClientError for an error answer: the code is the
    query-compatible one SQS names in x-amzn-query-error (as botocore reads it), else the
    JSON __type without its namespace."""
    try:
        parsed = json.loads(data) if data else {}
    except ValueError:
        parsed = None
    metadata: Any = {"HTTPStatusCode": status,
                "HTTPHeaders": {key.lower(): value for key, value in headers.items()}}
    if 200 <= status < 300 and isinstance(parsed, dict):
        return {**parsed, "ResponseMetadata": metadata}
    error: Mapping[str, Any] = parsed if isinstance(parsed, dict) else {}
    code = str(error.get("__type") or error.get("code") or status).rpartition("#")[2]
    query_error = headers.get("x-amzn-query-error")
    if query_error and ";" in query_error:
        code = query_error.split(";", 1)[0]
    message = str(error.get("message") or error.get("Message") or
                  (data[:200].decode("utf-8", "replace") if parsed is None else ""))
    raise botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": metadata},
        "ReceiveMessage")
