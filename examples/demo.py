"""`make run`: the whole loop on this machine, with no AWS account.

Starts moto's server on loopback as the AWS stand-in, seeds it from examples/ (the address
table, the SNS topic and the tier's queue subscribed to it), starts a heartbeat receiver
that prints each ping, and runs the real daemon (`reconfigure run`) with its root at
./demo-root. A few seconds in it creates an address on a new subdomain and publishes the
change as the API does, so you can watch the files update and the heartbeat arrive.
Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import argparse
import http.server
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

HERE = Path(__file__).resolve().parent
REGION = "us-east-1"
NEW_ADDRESS = {"address": {"S": "hello@demo.example.com"}, "tld": {"S": "example.com"},
               "subdomain": {"S": "demo"}, "username": {"S": "hello"}, "user": {"S": "alice"}}


class _Pings(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        summary = ", ".join(body.splitlines()[:4])
        print(f"[heartbeat] {self.path}  {summary}", flush=True)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"OK")

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        return


def _aws(endpoint: str, service: str) -> Any:
    session = boto3.session.Session(region_name=REGION, aws_access_key_id="demo",
                                    aws_secret_access_key="demo")
    return session.client(service, endpoint_url=endpoint)  # type: ignore[call-overload]


def seed(endpoint: str, tier: str) -> tuple[str, str]:
    """The table, the topic and the tier's subscribed queue; returns (queue url, topic arn)."""
    dynamodb = _aws(endpoint, "dynamodb")
    dynamodb.create_table(TableName="cabal-addresses", BillingMode="PAY_PER_REQUEST",
                          KeySchema=[{"AttributeName": "address", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "address",
                                                 "AttributeType": "S"}])
    for item in json.loads((HERE / "addresses.json").read_text())["Items"]:
        dynamodb.put_item(TableName="cabal-addresses", Item=item)
    sqs, sns = _aws(endpoint, "sqs"), _aws(endpoint, "sns")
    queue_url = sqs.create_queue(QueueName=f"cabal-reconfig-{tier}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    topic = sns.create_topic(Name="cabal-address-changed")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return queue_url, topic


def prepare_root(root: Path) -> None:
    """What the tier image holds before the first cycle: directories, aliases.static, and
    the ready file its startup prep would write."""
    for directory in ("etc/mail", "etc/opendkim", "run", "var/run"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    (root / "etc/aliases.static").write_text("postmaster: root\n")
    (root / "sendmail.cf").write_text("# makemap -C: no TrustedUser, files stay root's\n")
    (root / "run/sendmail-ready").write_text("")


def daemon_env(endpoint: str, queue_url: str, root: Path, ping_port: int,
               tier: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RECONFIGURE_"))}
    env.update({
        "TIER": tier, "CERT_DOMAIN": "cabal.example", "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "demo",
        "AWS_SECRET_ACCESS_KEY": "demo", "SQS_QUEUE_URL": queue_url,
        "HEALTHCHECK_PING_URL": f"http://127.0.0.1:{ping_port}/ping/{{tier}}",
        "RECONFIGURE_ROOT": str(root),
        "RECONFIGURE_HEARTBEAT_MIN_INTERVAL": "0",
        "RECONFIGURE_MAKEMAP": f"makemap -C {root / 'sendmail.cf'}",
        # sendmail -bi sleeps 60 s on a host without a qualified name; the demo skips it.
        "RECONFIGURE_NEWALIASES": "true",
    })
    return env


def _wait(condition: Any, timeout: float, stop: threading.Event) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline or stop.wait(0.02):
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, default=Path("demo-root"))
    parser.add_argument("--seconds", type=float, default=0, help="stop after this long")
    parser.add_argument("--change-after", type=float, default=3.0)
    args = parser.parse_args(argv)
    tier = os.environ.get("TIER", "imap")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    pings = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pings)
    threading.Thread(target=pings.serve_forever, daemon=True).start()
    root = args.root.resolve()
    prepare_root(root)
    queue_url, topic = seed(endpoint, tier)
    print(f"[demo] AWS stand-in on {endpoint}; tier {tier}; files under {root}", flush=True)
    daemon = subprocess.Popen([sys.executable, "-m", "reconfigure", "run"],
                              env=daemon_env(endpoint, queue_url, root,
                                             pings.server_address[1], tier))
    status = root / "var/lib/reconfigure/status.json"
    try:
        if _wait(status.exists, 60, stop) and not stop.wait(args.change_after):
            _aws(endpoint, "dynamodb").put_item(TableName="cabal-addresses", Item=NEW_ADDRESS)
            started = time.monotonic()
            _aws(endpoint, "sns").publish(TopicArn=topic, Message=json.dumps(
                {"event": "address_changed",
                 "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
            print("[demo] created hello@demo.example.com and published the change", flush=True)
            domains = root / ("etc/mail/local-host-names" if tier == "imap"
                              else "etc/mail/masq-domains")
            if _wait(lambda: "demo.example.com" in domains.read_text(), 30, stop):
                took = (time.monotonic() - started) * 1000
                print(f"[demo] {domains} updated {took:.0f} ms after the publish", flush=True)
        if args.seconds:
            stop.wait(max(0.0, args.seconds))
        else:
            print("[demo] running; Ctrl-C to stop", flush=True)
            stop.wait()
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(10)
        pings.shutdown()
        moto.stop()
    print(f"[demo] stopped; the daemon exited {daemon.returncode}", flush=True)
    return daemon.returncode


if __name__ == "__main__":
    raise SystemExit(main())
