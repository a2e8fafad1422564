"""`make run`: the whole loop on this machine, with no AWS account.

Starts moto's server on loopback as the AWS stand-in, seeds it from addresses.json here
(the address table, the SNS topic and the tier's queue subscribed to it), starts a heartbeat
receiver
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
import threading
import time
from pathlib import Path
from typing import Any

from tests.support.world import (
    AwsWorld,
    daemon_env,
    make_root,
    make_world,
    moto_server,
    start_daemon,
)

HERE = Path(__file__).resolve().parent
NEW_ADDRESS: dict[str, object] = {
    "address": {"S": "hello@demo.example.com"}, "tld": {"S": "example.com"},
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


def seed(world: AwsWorld) -> str:
    """The table's rows, and the topic the tier's queue is subscribed to; the topic ARN."""
    world.put(*json.loads((HERE / "addresses.json").read_text())["Items"])
    sqs, sns = world.client("sqs"), world.client("sns")
    queue_arn = sqs.get_queue_attributes(QueueUrl=world.queue_url, AttributeNames=[
        "QueueArn"])["Attributes"]["QueueArn"]
    topic: str = sns.create_topic(Name="cabal-address-changed")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return topic


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
    with moto_server() as endpoint:
        return _demo(endpoint, tier, args.root.resolve(), args, stop)


def _demo(endpoint: str, tier: str, root: Path, args: argparse.Namespace,
          stop: threading.Event) -> int:
    pings = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pings)
    threading.Thread(target=pings.serve_forever, daemon=True).start()
    make_root(root)
    world = make_world(endpoint)
    topic = seed(world)
    print(f"[demo] AWS stand-in on {endpoint}; tier {tier}; files under {root}", flush=True)
    env = daemon_env(world, root, tier, IMAP_INTERNAL_HOST="imap.cabal.internal",
                     HEALTHCHECK_PING_URL=f"http://127.0.0.1:{pings.server_address[1]}"
                                          "/ping/{tier}")
    daemon = start_daemon(env, None)
    status = root / "var/lib/reconfigure/status.json"
    try:
        if _wait(status.exists, 60, stop) and not stop.wait(args.change_after):
            world.put(NEW_ADDRESS)
            started = time.monotonic()
            world.client("sns").publish(TopicArn=topic, Message=json.dumps(
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
    print(f"[demo] stopped; the daemon exited {daemon.returncode}", flush=True)
    return daemon.returncode


if __name__ == "__main__":
    raise SystemExit(main())
