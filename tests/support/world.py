"""Real parts for daemon tests, benchmarks and the demo: a moto server over HTTP, a
tier root, fake daemons, and the daemon started as supervisord would start it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from tests.support.items import Item
from tests.support.makemap import EMPTY_CF

REGION = "us-east-1"
REPO = Path(__file__).resolve().parents[2]


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll with a deadline: the value once truthy, or AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto server over real HTTP on a free loopback port; its endpoint URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@dataclass
class Hanging:
    url: str
    held: list[socket.socket]  # connections accepted and never answered


@contextmanager
def hanging_endpoint() -> Iterator[Hanging]:
    """An endpoint that accepts connections and never answers: a hung AWS request."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield Hanging(f"http://127.0.0.1:{listener.getsockname()[1]}", held)
    finally:
        stop.set()
        thread.join(2)
        for connection in held:
            connection.close()
        listener.close()


@dataclass
class AwsWorld:
    """One test's table and queue on the shared moto server."""

    endpoint: str
    table: str
    queue_url: str

    def client(self, service: str) -> Any:
        session = boto3.session.Session(region_name=REGION, aws_access_key_id="testing",
                                        aws_secret_access_key="testing")
        return session.client(service, endpoint_url=self.endpoint)  # type: ignore[call-overload]

    def put(self, *items: Item) -> None:
        dynamodb = self.client("dynamodb")
        for item in items:
            dynamodb.put_item(TableName=self.table, Item=item)

    def delete_row(self, address: str) -> None:
        self.client("dynamodb").delete_item(TableName=self.table,
                                            Key={"address": {"S": address}})

    def notify(self, count: int = 1) -> None:
        """What the API's SNS fan-out delivers to a tier queue."""
        body = json.dumps({"Type": "Notification", "Message": json.dumps(
            {"event": "address_changed", "timestamp": "2026-11-29T12:00:00Z"})})
        sqs = self.client("sqs")
        for start in range(0, count, 10):
            entries = [{"Id": str(i), "MessageBody": body}
                       for i in range(min(10, count - start))]
            sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)

    def queue_depth(self) -> int:
        attributes = self.client("sqs").get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages",
                            "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return sum(int(v) for v in attributes.values())


def make_world(endpoint: str) -> AwsWorld:
    suffix = uuid.uuid4().hex[:8]
    session = AwsWorld(endpoint, f"cabal-addresses-{suffix}", "")
    session.client("dynamodb").create_table(
        TableName=session.table, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "address", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "address", "AttributeType": "S"}])
    session.queue_url = session.client("sqs").create_queue(
        QueueName=f"cabal-reconfig-{suffix}",
        Attributes={"VisibilityTimeout": "60", "MessageRetentionPeriod": "3600"})["QueueUrl"]
    return session


def make_root(path: Path) -> Path:
    """A throw-away container root: what the tier image holds before the first cycle."""
    for directory in ("etc/mail", "etc/opendkim", "run", "var/run/opendkim", "home"):
        (path / directory).mkdir(parents=True, exist_ok=True)
    (path / "etc/aliases.static").write_text("postmaster: root\nroot: /dev/null\n")
    (path / "sendmail.cf").write_text(EMPTY_CF)
    (path / "run/sendmail-ready").write_text("")
    return path


def fake_command(path: Path, *, exit_code: int = 0, sleep: float = 0,
                 record: Path | None = None) -> Path:
    """An executable that records its arguments and exits as told."""
    path.write_text(
        f"#!{sys.executable}\n"
        "import sys, time, pathlib\n"
        f"record = {str(record)!r}\n"
        "if record != 'None':\n"
        "    with open(record, 'a') as f: f.write(' '.join(sys.argv[1:]) + '\\n')\n"
        f"time.sleep({sleep})\n"
        f"sys.exit({exit_code})\n")
    path.chmod(0o755)
    return path


def named_interpreter(name: str) -> Path:
    """A copy of this Python whose executable is called `name`: the reloader trusts a pid
    only when `/proc/<pid>/exe` is the daemon's, so a fake daemon needs the real name."""
    directory = Path(tempfile.gettempdir()) / "reconfigure-fake-daemons"
    directory.mkdir(mode=0o755, exist_ok=True)
    target = directory / name
    if not target.exists():
        fd, temp = tempfile.mkstemp(dir=directory)
        os.close(fd)
        shutil.copy2(os.path.realpath(sys.executable), temp)
        os.chmod(temp, 0o755)
        os.replace(temp, target)  # parallel tests each copy; one wins, all usable
    return target


class FakeDaemon:
    """A real process whose executable is named like the daemon (`name`'s first word, e.g.
    "sendmail" for "sendmail: MTA: accepting connections", which becomes its argv[0]) and
    records the signals it gets. On HUP or TERM it rewrites its pid file, as a sendmail
    re-executed in place (or restarted by supervisord) does once it listens again."""

    SCRIPT = (
        "import os, signal, sys, time\n"
        "log = open(sys.argv[1], 'a', buffering=1)\n"
        "pid_file = sys.argv[2]\n"
        "def note(signum, frame):\n"
        "    log.write(signal.Signals(signum).name[3:] + '\\n')\n"
        "    if signum in (signal.SIGHUP, signal.SIGTERM) and pid_file:\n"
        "        with open(pid_file + '.new', 'w') as f: f.write(f'{os.getpid()}\\n-bd\\n')\n"
        "        os.replace(pid_file + '.new', pid_file)\n"
        "for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGUSR1):\n"
        "    signal.signal(s, note)\n"
        "log.write('ready\\n')\n"
        "while True:\n"
        "    time.sleep(3600)\n"
    )

    def __init__(self, name: str, pid_file: Path, record: Path) -> None:
        self.record = record
        executable = named_interpreter(Path(name.split(":", 1)[0].split()[0]).name)
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen([name, "-c", self.SCRIPT, str(record), str(pid_file)],
                                        executable=executable)
        wait_for(lambda: record.exists() and "ready" in record.read_text(), what=name)
        pid_file.write_text(f"{self.process.pid}\n-bd -q10m\n")

    def signals(self) -> list[str]:
        return [line for line in self.record.read_text().splitlines() if line != "ready"]

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


def dump_map(db: Path, cf: Path) -> dict[str, str]:
    """Read a compiled map back with the real makemap. Its safe-file check fails (exit 73)
    when a running daemon renames the `.db` over between makemap's stat and its open: the
    next read gets past that; a map that stays unreadable fails after 2 s."""
    deadline = time.monotonic() + 2
    while True:
        result = subprocess.run(["makemap", "-u", "-C", str(cf), "hash", str(db)],
                                capture_output=True, text=True, check=False)
        if result.returncode != 73 or not db.exists() or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    result.check_returncode()
    return dict(line.split("\t", 1) for line in result.stdout.splitlines() if line)


def daemon_env(world: AwsWorld, root: Path, tier: str = "imap",
               **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RECONFIGURE_"))}
    env.update({
        "TIER": tier, "CERT_DOMAIN": "cabal.example", "IMAP_INTERNAL_HOST": "imap.internal",
        "AWS_REGION": REGION, "AWS_ENDPOINT_URL": world.endpoint,
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "SQS_QUEUE_URL": world.queue_url, "RECONFIGURE_ROOT": str(root),
        "RECONFIGURE_ADDRESS_TABLE": world.table,
        "RECONFIGURE_MAKEMAP": f"makemap -C {root / 'sendmail.cf'}",
        "RECONFIGURE_NEWALIASES": str(fake_command(root / "newaliases",
                                                   record=root / "newaliases.calls")),
        "RECONFIGURE_HEARTBEAT_MIN_INTERVAL": "0",
    })
    env.update(extra)
    return env


def start_daemon(env: dict[str, str], log: Path | None, *args: str) -> subprocess.Popen[bytes]:
    """`reconfigure run` (or `args`), its output appended to `log` (None: inherited)."""
    handle = log.open("ab") if log is not None else None
    return subprocess.Popen([sys.executable, "-m", "reconfigure", *(args or ("run",))],
                            env=env, stdout=handle, stderr=subprocess.STDOUT if handle else None,
                            cwd=REPO)


def log_events(log: Path) -> list[dict[str, Any]]:
    events = []
    for line in log.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def cycles(log: Path, *, event: str = "cycle done") -> list[dict[str, Any]]:
    return [e for e in log_events(log) if e.get("event") == event]


def stop_daemon(process: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM,
                timeout: float = 2.0) -> tuple[int, float]:
    """Send `sig`; (exit code, seconds it took to exit)."""
    started = time.monotonic()
    process.send_signal(sig)
    try:
        code = process.wait(timeout=timeout + 3)
    finally:
        if process.poll() is None:
            process.kill()
    return code, time.monotonic() - started


def temp_files(root: Path) -> Iterable[Path]:
    return [p for p in root.rglob(".*") if p.is_file() and ".tmp" in p.name]
