"""The long poll's short path (`reconfigure.longpoll`) stands in for the SQS client's
receive_message: the same request (moto with IAM auth on checks its signature), the same
answers and the same exceptions, over connections it keeps alive."""

from __future__ import annotations

import http.server
import json
import os
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import botocore.session
import pytest

from reconfigure.aws import Aws, error_code, is_transient
from reconfigure.longpoll import LongPoll
from reconfigure.queues import _QUEUE_GONE
from reconfigure.settings import from_env
from tests.faults.moto_process import MotoProcess, free_port
from tests.support.proxy import counting_proxy
from tests.support.world import REGION, AwsWorld

RECEIVE = {"MaxNumberOfMessages": 10, "WaitTimeSeconds": 0, "VisibilityTimeout": 30}
DAEMON_TIMEOUTS = botocore.config.Config(connect_timeout=5, read_timeout=30)  # Aws's own


def sqs_client(endpoint: str, key: str = "testing", secret: str = "testing",
               token: str | None = None) -> tuple[Any, botocore.session.Session]:
    """An SQS client with the daemon's timeouts, and the botocore session that made it."""
    core = botocore.session.get_session()
    core.set_credentials(key, secret, token)
    client = boto3.session.Session(region_name=REGION, botocore_session=core).client(
        "sqs", endpoint_url=endpoint, config=DAEMON_TIMEOUTS)
    return client, core


def short_path(endpoint: str, key: str = "testing", secret: str = "testing",
               token: str | None = None) -> tuple[LongPoll, Any]:
    """(LongPoll, the botocore SQS client it stands in for), both from one session."""
    client, core = sqs_client(endpoint, key, secret, token)
    poll = LongPoll.for_client(client, core)
    assert poll is not None
    return poll, client


def raised(call: Any, **params: Any) -> Exception:
    with pytest.raises(Exception) as caught:
        call(QueueUrl=params.pop("QueueUrl"), **RECEIVE, **params)
    assert isinstance(caught.value, Exception)
    return caught.value


def test_it_receives_the_messages_the_client_would(world: AwsWorld) -> None:
    sqs = world.client("sqs")
    sent = {sqs.send_message(QueueUrl=world.queue_url, MessageBody=f"m{i}")["MessageId"]
            for i in range(3)}
    poll, _ = short_path(world.endpoint)
    got: list[dict[str, Any]] = []
    for _ in range(10):  # SQS may hand them out over several receives
        got += poll.receive_message(QueueUrl=world.queue_url, **RECEIVE).get("Messages", [])
        if len(got) >= len(sent):
            break
    assert {m["MessageId"] for m in got} == sent
    # The receipt handles are real: the client deletes with them.
    answer = sqs.delete_message_batch(QueueUrl=world.queue_url, Entries=[
        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])
    assert len(answer.get("Successful", [])) == len(sent) and not answer.get("Failed")
    assert poll.receive_message(QueueUrl=world.queue_url, **RECEIVE).get("Messages") is None


def test_a_missing_queue_raises_the_clients_error(world: AwsWorld) -> None:
    poll, client = short_path(world.endpoint)
    gone = world.queue_url + "-gone"
    ours, theirs = raised(poll.receive_message, QueueUrl=gone), \
        raised(client.receive_message, QueueUrl=gone)
    assert isinstance(ours, botocore.exceptions.ClientError)
    assert error_code(ours) == error_code(theirs) and error_code(ours) in _QUEUE_GONE
    assert not is_transient(ours) and not is_transient(theirs)


def test_a_503_is_transient_as_with_the_client(world: AwsWorld) -> None:
    with counting_proxy(world.endpoint) as proxy:
        proxy.fail("ReceiveMessage")
        poll, client = short_path(proxy.url)
        ours = raised(poll.receive_message, QueueUrl=world.queue_url)
        theirs = raised(client.receive_message, QueueUrl=world.queue_url)
    assert error_code(ours) == error_code(theirs) == "ServiceUnavailable"
    assert is_transient(ours) and is_transient(theirs)


def test_nothing_listening_is_a_transient_connection_error() -> None:
    poll, client = short_path(f"http://127.0.0.1:{free_port()}")
    ours = raised(poll.receive_message, QueueUrl="http://q/1/q")
    assert isinstance(ours, botocore.exceptions.EndpointConnectionError)
    assert is_transient(ours)
    # The client's message names the endpoint the same way.
    assert str(ours) == str(raised(client.receive_message, QueueUrl="http://q/1/q"))


def test_connections_are_kept_alive_between_polls(world: AwsWorld) -> None:
    with counting_proxy(world.endpoint) as proxy:
        poll, _ = short_path(proxy.url)
        for _ in range(5):
            poll.receive_message(QueueUrl=world.queue_url, **RECEIVE)
        assert proxy.count("ReceiveMessage") == 5
        assert proxy.connections == 1
        poll.close()


def test_after_an_answer_that_closes_the_next_poll_waits_its_full_time(
        world: AwsWorld) -> None:
    """moto answers `Connection: close`: that connection is not kept (http.client would
    reopen it with the 5 s connect timeout as its read timeout, cutting a long poll)."""
    poll, _ = short_path(world.endpoint)
    poll.receive_message(QueueUrl=world.queue_url, **RECEIVE)
    started = time.monotonic()
    answer = poll.receive_message(QueueUrl=world.queue_url, **{**RECEIVE, "WaitTimeSeconds": 7})
    assert "Messages" not in answer and time.monotonic() - started >= 6.5


@pytest.fixture
def closing_server() -> Iterator[tuple[str, list[int]]]:
    """Answers one request per connection with an empty receive, says nothing of closing,
    and closes: a kept-alive connection the server dropped while the client held it."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                accepted.append(1)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += connection.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                while len(body) < length:
                    body += connection.recv(65536)
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: "
                                   b"application/x-amz-json-1.0\r\nContent-Length: 2\r\n\r\n{}")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    finally:
        listener.close()


def test_a_connection_the_server_dropped_is_replaced(
        closing_server: tuple[str, list[int]]) -> None:
    url, accepted = closing_server
    poll, _ = short_path(url)
    for _ in range(3):
        assert "Messages" not in poll.receive_message(QueueUrl="http://q/1/q", **RECEIVE)
    assert len(accepted) == 3  # each poll after the first found its connection dropped


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS server on loopback with a self-signed certificate for 127.0.0.1 (made by
    the real openssl) answering every request with an empty receive; (URL, its cert)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()


def test_over_tls_the_server_is_checked_against_botocores_ca_bundle(
        tls_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """As in production (https): AWS_CA_BUNDLE trusts the test's certificate, as it
    would for the client; without it the server is refused, transiently, as botocore
    refuses it."""
    url, cert = tls_server
    monkeypatch.setenv("AWS_CA_BUNDLE", str(cert))
    trusting, client = short_path(url)
    assert client.receive_message(QueueUrl="http://q/1/q", **RECEIVE)  # the client agrees
    assert "Messages" not in trusting.receive_message(QueueUrl="http://q/1/q", **RECEIVE)
    monkeypatch.delenv("AWS_CA_BUNDLE")
    strict, _ = short_path(url)
    refused = raised(strict.receive_message, QueueUrl="http://q/1/q")
    assert isinstance(refused.__cause__, ssl.SSLCertVerificationError)
    assert is_transient(refused)


def test_a_proxy_leaves_the_receive_to_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    client, core = sqs_client("https://sqs.example.invalid")
    assert LongPoll.for_client(client, core) is not None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.invalid:3128")
    assert LongPoll.for_client(client, core) is None


# ----- the signature, checked by moto with IAM authentication on

@pytest.fixture(scope="module")
def authenticating_moto() -> Iterator[dict[str, Any]]:
    """A moto process that checks every request's SigV4 signature after its first six
    (those make a user, its key, a role and the queue)."""
    moto = MotoProcess(env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "6"}).start()
    url = moto.url
    try:
        root = boto3.session.Session(region_name=REGION, aws_access_key_id="testing",
                                     aws_secret_access_key="testing")
        iam = root.client("iam", endpoint_url=url)
        allow = json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["sqs:*", "sts:*"], "Resource": "*"}]})
        iam.create_user(UserName="poller")
        key = iam.create_access_key(UserName="poller")["AccessKey"]
        iam.put_user_policy(UserName="poller", PolicyName="all", PolicyDocument=allow)
        iam.create_role(RoleName="task", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}))
        iam.put_role_policy(RoleName="task", PolicyName="all", PolicyDocument=allow)
        queue = root.client("sqs", endpoint_url=url).create_queue(QueueName="auth")["QueueUrl"]
        yield {"url": url, "queue": queue, "key": key["AccessKeyId"],
               "secret": key["SecretAccessKey"]}
    finally:
        moto.kill()


def test_moto_accepts_the_signature_and_refuses_a_wrong_secret(
        authenticating_moto: dict[str, Any]) -> None:
    moto = authenticating_moto
    good, client = short_path(moto["url"], moto["key"], moto["secret"])
    assert client.receive_message(QueueUrl=moto["queue"], **RECEIVE)  # auth is on and works
    assert good.receive_message(QueueUrl=moto["queue"], **RECEIVE)["ResponseMetadata"][
        "HTTPStatusCode"] == 200
    bad, _ = short_path(moto["url"], moto["key"], moto["secret"] + "x")
    refused = raised(bad.receive_message, QueueUrl=moto["queue"])
    assert "SignatureDoesNotMatch" in str(refused) and not is_transient(refused)


def test_temporary_credentials_sign_with_their_session_token(
        authenticating_moto: dict[str, Any]) -> None:
    """What an ECS task role gives: a key, a secret and a session token."""
    moto = authenticating_moto
    sts = boto3.session.Session(region_name=REGION, aws_access_key_id=moto["key"],
                                aws_secret_access_key=moto["secret"]).client(
        "sts", endpoint_url=moto["url"])
    role = sts.assume_role(RoleArn="arn:aws:iam::123456789012:role/task",
                           RoleSessionName="poller")["Credentials"]
    poll, _ = short_path(moto["url"], role["AccessKeyId"], role["SecretAccessKey"],
                         role["SessionToken"])
    assert poll.receive_message(QueueUrl=moto["queue"], **RECEIVE)["ResponseMetadata"][
        "HTTPStatusCode"] == 200
    forged, _ = short_path(moto["url"], role["AccessKeyId"], role["SecretAccessKey"],
                           "not-the-token")
    assert "InvalidClientTokenId" in str(raised(forged.receive_message,
                                                QueueUrl=moto["queue"]))


def test_the_daemon_receives_on_the_short_path_unless_a_proxy_is_set(
        world: AwsWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"TIER": "imap", "CERT_DOMAIN": "cabal.example", "ADDRESS_TABLE": world.table,
           "AWS_REGION": REGION, "AWS_ENDPOINT_URL": world.endpoint,
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    direct = Aws.from_settings(from_env(env))
    assert isinstance(direct.sqs_receiver, LongPoll)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example.invalid:3128")
    proxied = Aws.from_settings(from_env(env))
    assert proxied.sqs_receiver is proxied.sqs
