"""The tier in a box: one mail tier stood up the way its image runs it, on loopback only.

Run as pid 1 of fresh namespaces, from the repository root:

    unshare --uts --mount --net --pid --fork --mount-proc --kill-child -- \\
        .venv/bin/python -m tests.e2e.box smtp-in WORKDIR

Inside: a fully qualified host name, only `lo`, and throw-away directories mounted over the
container paths (/etc/mail, /etc/opendkim, /run, /var/spool/mqueue, /var/lib/reconfigure,
/etc/hosts; /etc, /var and /usr/local are overlays whose changes land in WORKDIR), so every
program uses its real path and the machine's own files stay untouched. A moto server plays
AWS (the table, the SNS topic, the tier's subscribed queue); the startup prep builds
sendmail.cf and the first maps (`reconfigure once`) and writes /run/sendmail-ready; then the
real supervisord runs a real sendmail (through a wrapper like the images'), a real opendkim
(smtp-out), and `reconfigure run` from the shipped program stanza. The scenario changes rows,
publishes the API's event, and watches SMTP and the milter socket. Each check and timing is
written to WORKDIR/result.json for tests/e2e/test_box.py; nothing here raises past main().

When pid 1 exits, the kernel kills everything left in the pid namespace, and the mounts
go with the last process of the mount namespace: a failed run leaves nothing behind.

To look around inside a live box, set BOX_HOLD=SECONDS: it waits that long after the scenario,
before its teardown; `nsenter --target PID --all` with the host pid of the box's pid 1.
"""

from __future__ import annotations

import contextlib
import grp
import json
import logging
import os
import pwd
import signal
import smtplib
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import boto3

from tests.e2e import probes
from tests.e2e.probes import TimedOut, poll
from tests.support.items import Item, item

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
STANZA = REPO / "supervisord" / "reconfigure.conf"
WRAPPER = HERE / "sendmail_wrapper.py"
TIER_FILES = HERE / "tiers"
CF_M4 = "/usr/share/sendmail/cf/m4/cf.m4"

CERT_DOMAIN = "cabal.example"


def _under_tmp() -> list[Path]:
    """The checkout and the venv running the box, where they lie under /tmp (outermost
    only): the box's own /tmp would hide them."""
    found: list[Path] = []
    for path in sorted({REPO, Path(sys.prefix).absolute()}, key=lambda p: len(p.parts)):
        if path.is_relative_to("/tmp") and not any(path.is_relative_to(f) for f in found):
            found.append(path)
    return found

RELAY_HOST = "imap.cabal.internal"
REGION = "us-east-1"
MOTO_PORT = 5000  # the box's own loopback: no other process can hold it
ENDPOINT = f"http://127.0.0.1:{MOTO_PORT}"
TABLE = "cabal-addresses"
TOPIC = "cabal-address-changed"
TLD = "example.com"
KNOWN = f"shop@acme.{TLD}"  # in the table from the start
OUTSIDER = "someone@elsewhere.example.net"

SENDMAIL_PID = Path("/var/run/sendmail.pid")
OPENDKIM_PID = Path("/var/run/opendkim/opendkim.pid")
KEY_TABLES = (Path("/etc/opendkim/KeyTable"), Path("/etc/opendkim/SigningTable"))
SUPERVISORD_LOG = Path("/var/log/supervisord.log")
OUTPUT = "supervisord.out"  # the programs' stdout (/dev/fd/1), relative to WORKDIR
RESULT = "result.json"

# Deadlines: generous, for a loaded machine, and small enough that a box whose every wait
# fails still ends inside tests/e2e/launch.py's BOX_DEADLINE. The promises are checked on
# their own, at their own margins (NEW_ADDRESS_WITHIN).
START_WITHIN = 20.0  # supervisord, sendmail, opendkim and the daemon's first cycle
REACT_WITHIN = 10.0  # a publish seen through SMTP or the milter
NEW_ADDRESS_WITHIN = 2.0  # the promise: a published address is accepted within 2 s
STOP_WITHIN = 15.0


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Result:
    tier: str
    checks: list[Check] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def run(argv: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
    """A setup command that must work; its output is in the error when it does not."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                          **options)
    if done.returncode != 0:
        raise RuntimeError(f"{argv} exited {done.returncode}: {done.stdout}{done.stderr}")
    return done


def processes() -> str:
    """Every process in the box with its state and what each of its threads waits in."""
    lines = []
    for entry in sorted(Path("/proc").iterdir(), key=lambda p: p.name.zfill(10)):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            waits = sorted({(task / "wchan").read_text() for task in (entry / "task").iterdir()})
            lines.append(f"{entry.name} {state} {command.strip()} waits={waits}")
    return "\n".join(lines)


def chown(path: Path, user: str, mode: int) -> None:
    os.chown(path, pwd.getpwnam(user).pw_uid, grp.getgrnam(user).gr_gid)
    path.chmod(mode)


def ownership(path: Path) -> tuple[str, str, str]:
    st = path.stat()
    return (pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name,
            f"{st.st_mode & 0o7777:04o}")


class Box:
    def __init__(self, tier: str, workdir: Path) -> None:
        self.tier = tier
        self.work = workdir.resolve()
        self.result = Result(tier)
        self.supervisord: subprocess.Popen[bytes] | None = None
        self.topic_arn = ""
        self.env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root", "LANG": "C.UTF-8", "TMPDIR": "/tmp",
            "NO_PROXY": "127.0.0.1,localhost",
            # The tier's task definition, as the container's environment:
            "TIER": tier, "CERT_DOMAIN": CERT_DOMAIN, "AWS_REGION": REGION,
            "IMAP_INTERNAL_HOST": RELAY_HOST, "RECONFIGURE_SENDMAIL_SIGNAL": "HUP",
            # moto instead of AWS:
            "AWS_ENDPOINT_URL": ENDPOINT, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }

    # ── bookkeeping ─────────────────────────────────────────────────────────────────────────

    def check(self, name: str, ok: bool, detail: object = "") -> bool:
        """Recorded, and written out at once: a box killed at its deadline still tells."""
        self.result.checks.append(Check(name, bool(ok), str(detail)))
        self.write_result()
        return bool(ok)

    def watch(self, name: str, probe: Callable[[], T], done: Callable[[T], bool], *,
              timeout: float, timing: str | None = None, since: float | None = None
              ) -> T | None:
        """Poll as a check: recorded as passed or failed, never raised. With `timing`,
        the seconds from `since` (a monotonic time) to the moment it held are recorded."""
        started = time.monotonic() if since is None else since
        try:
            value, _ = poll(probe, done, timeout=timeout - (time.monotonic() - started),
                            what=name)
        except TimedOut as error:
            self.check(name, False, error)
            return None
        took = time.monotonic() - started
        if timing is not None:
            self.result.timings[timing] = round(took, 3)
        self.check(name, True, f"{took:.3f} s: {value!r}")
        return value

    def write_result(self) -> None:
        data = asdict(self.result)
        Path(RESULT).write_text(json.dumps(data, indent=2) + "\n")

    # ── the namespaces' file system, network and name ───────────────────────────────────────

    def mount(self) -> None:
        run(["mount", "--make-rprivate", "/"])
        for directory in ("/etc", "/var", "/usr/local"):
            layer = self.work / "overlay" / directory.strip("/").replace("/", "-")
            (layer / "upper").mkdir(parents=True)
            (layer / "work").mkdir()
            run(["mount", "-t", "overlay", "overlay", "-o",
                 f"lowerdir={directory},upperdir={layer / 'upper'},workdir={layer / 'work'}",
                 directory])
        hosts = self.work / "hosts"
        hosts.write_text(
            f"127.0.0.1\t{self.tier}.{CERT_DOMAIN} {self.tier} localhost\n"
            "::1\tlocalhost ip6-localhost\n"
            "127.0.0.2\tsender.example.net\n"
            # What DNS holds for the hosted domains (smtp-out checks a sender's domain). One
            # line each: a name listed second on a line is an alias, and sendmail would
            # canonify acme.example.com to the line's first name before its access lookups.
            f"127.0.0.3\t{TLD}\n127.0.0.4\tacme.{TLD}\n127.0.0.5\tfresh.{TLD}\n")
        hosts.chmod(0o644)
        binds = {
            "/etc/mail": 0o755, "/etc/opendkim": 0o755, "/run": 0o755,
            "/var/spool/mqueue": 0o700, "/var/lib/reconfigure": 0o755,
        }
        for target, mode in binds.items():
            source = self.work / "mnt" / target.strip("/").replace("/", "-")
            source.mkdir(parents=True)
            source.chmod(mode)  # sendmail refuses maps in group- or world-writable dirs
            Path(target).mkdir(parents=True, exist_ok=True)  # in an overlay if missing
            run(["mount", "--bind", str(source), target])
        run(["mount", "--bind", str(hosts), "/etc/hosts"])
        # Last: /tmp is the machine's; nothing of WORKDIR is reached by path after this.
        # The checkout and its venv may live under /tmp themselves (a CI clone): each is
        # held by a descriptor across the tmpfs and bound back at its own path.
        held = [(os.open(path, os.O_RDONLY | os.O_DIRECTORY), path) for path in _under_tmp()]
        run(["mount", "-t", "tmpfs", "-o", "mode=1777,size=64m", "tmpfs", "/tmp"])
        for descriptor, path in held:
            path.mkdir(parents=True, exist_ok=True)
            # --no-canonicalize: resolved as a name, the descriptor would point at the new
            # (empty) directory of the same path
            run(["mount", "--no-canonicalize", "--bind", f"/proc/{os.getpid()}/fd/{descriptor}",
                 str(path)])
            os.close(descriptor)
        socket.sethostname(f"{self.tier}.{CERT_DOMAIN}")
        run(["ip", "link", "set", "lo", "up"])
        fqdn = socket.getfqdn()
        if fqdn != f"{self.tier}.{CERT_DOMAIN}":
            raise RuntimeError(f"host name does not resolve to itself: {fqdn!r}")

    def install_programs(self) -> None:
        """/usr/local/bin as in the image (an overlay here): supervisord and reconfigure from
        the venv, under the names the tier's config and the shipped stanza use."""
        local = Path("/usr/local/bin")
        local.mkdir(parents=True, exist_ok=True)
        for name in ("supervisord", "reconfigure"):
            link = local / name
            link.unlink(missing_ok=True)
            link.symlink_to(BIN / name)
        wrapper = local / "sendmail-wrapper"
        wrapper.write_text(f"#!{sys.executable}\n{WRAPPER.read_text()}")
        wrapper.chmod(0o755)
        config = (TIER_FILES / self.tier / "supervisord.conf").read_text()
        Path("/etc/supervisord.conf").write_text(config + STANZA.read_text())

    # ── AWS: the API side ───────────────────────────────────────────────────────────────────

    def client(self, service: str) -> Any:
        session = boto3.session.Session(region_name=REGION, aws_access_key_id="testing",
                                        aws_secret_access_key="testing")
        return session.client(service, endpoint_url=ENDPOINT)  # type: ignore[call-overload]

    def start_aws(self) -> None:
        from moto.server import ThreadedMotoServer  # heavy: imported only in the box

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=MOTO_PORT, verbose=False)
        server.start()
        self.client("dynamodb").create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "address", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "address", "AttributeType": "S"}])
        sqs, sns = self.client("sqs"), self.client("sns")
        queue_url = sqs.create_queue(
            QueueName=f"cabal-reconfig-{self.tier}",
            Attributes={"VisibilityTimeout": "60", "MessageRetentionPeriod": "3600"},
        )["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.topic_arn = sns.create_topic(Name=TOPIC)["TopicArn"]
        sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn)
        self.env["SQS_QUEUE_URL"] = queue_url
        self.put(item("shop", TLD, "carol/alice", "acme"), item("postmaster", TLD, "alice"))

    def put(self, *rows: Item) -> None:
        dynamodb = self.client("dynamodb")
        for row in rows:
            dynamodb.put_item(TableName=TABLE, Item=row)

    def delete(self, address: str) -> None:
        self.client("dynamodb").delete_item(TableName=TABLE, Key={"address": {"S": address}})

    def publish(self) -> float:
        """What every API handler does after changing a row; the monotonic time just before."""
        started = time.monotonic()
        message = {"event": "address_changed",
                   "timestamp": datetime.now(UTC).isoformat(timespec="seconds")}
        self.client("sns").publish(TopicArn=self.topic_arn, Message=json.dumps(message))
        return started

    # ── the image's startup prep ────────────────────────────────────────────────────────────

    def prepare(self) -> None:
        """sendmail.cf from the tier's .mc, the aliases, (smtp-out) the static access map,
        opendkim's config and key; the first maps from the table; then the ready file."""
        mail = Path("/etc/mail")
        template = (TIER_FILES / self.tier / "sendmail.mc").read_text()
        (mail / "sendmail.mc").write_text(template.replace("__CERT_DOMAIN__", CERT_DOMAIN))
        cf = run(["m4", CF_M4, str(mail / "sendmail.mc")], cwd=mail).stdout
        (mail / "sendmail.cf").write_text(cf)
        (mail / "service.switch").write_text("hosts files\n")
        if self.tier == "smtp-out":
            # Baked into the smtp-out image: loopback may relay (submission arrives there).
            access = "Connect:localhost\tRELAY\nConnect:127.0.0.1\tRELAY\n"
            (mail / "access").write_text(access)
            run(["/usr/sbin/makemap", "hash", str(mail / "access")], input=access)
            self.prepare_opendkim()
        once = subprocess.run(["/usr/local/bin/reconfigure", "once"], env=self.env,
                              capture_output=True, text=True, timeout=120, check=False)
        self.check("prep: reconfigure once exits 0", once.returncode == 0,
                   once.stdout[-2000:] + once.stderr[-2000:])
        if once.returncode != 0:
            raise RuntimeError("the startup prep failed")
        # The aliases last: sendmail reads the class files the first cycle wrote.
        Path("/etc/aliases").write_text("postmaster: root\nroot: /dev/null\n")
        run(["/usr/sbin/sendmail", "-bi"])
        if self.tier == "smtp-out":
            # The tables opendkim reads after dropping privileges: its own, not world-readable.
            for table in KEY_TABLES:
                chown(table, "opendkim", 0o640)
        Path("/run/sendmail-ready").touch()

    def prepare_opendkim(self) -> None:
        Path("/etc/opendkim.conf").write_text(
            (TIER_FILES / self.tier / "opendkim.conf").read_text())
        keys = Path("/etc/opendkim/keys")
        keys.mkdir()
        run(["opendkim-genkey", "-b", "1024", "-d", CERT_DOMAIN, "-s", "cabal",
             "-D", str(keys)])
        (keys / "cabal.private").rename(keys / "cabal")
        chown(keys, "opendkim", 0o750)
        chown(keys / "cabal", "opendkim", 0o600)
        run_dir = Path("/run/opendkim")
        run_dir.mkdir()
        chown(run_dir, "opendkim", 0o750)

    # ── supervisord ─────────────────────────────────────────────────────────────────────────

    def start_supervisord(self) -> None:
        with Path(OUTPUT).open("ab") as output:  # /dev/fd/1 of every program
            self.supervisord = subprocess.Popen(
                ["/usr/local/bin/supervisord", "-c", "/etc/supervisord.conf"],
                env=self.env, cwd="/run", stdout=output, stderr=subprocess.STDOUT)

    def stop_supervisord(self) -> None:
        process = self.supervisord
        if process is None or process.poll() is not None:
            return
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_WITHIN)
        except subprocess.TimeoutExpired:
            self.check("supervisord stops its programs", False,
                       f"still running after {STOP_WITHIN:g} s, killed; then:\n"
                       + processes())
            process.kill()
            process.wait()
            return
        self.result.timings["stop: TERM to supervisord gone"] = round(
            time.monotonic() - started, 3)
        log = self.supervisord_log()
        self.check("reconfigure stops cleanly on supervisord's TERM",
                   "stopped: reconfigure (exit status 0)" in log, self.tail(log))

    def supervisord_log(self) -> str:
        try:
            return SUPERVISORD_LOG.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @staticmethod
    def tail(text: str, lines: int = 15) -> str:
        return "\n".join(text.splitlines()[-lines:])

    def events(self, event: str) -> list[dict[str, Any]]:
        """The daemon's JSON log lines (structlog) among everything on supervisord's stdout."""
        found = []
        for line in Path(OUTPUT).read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict) and entry.get("event") == event:
                    found.append(entry)
        return found

    def sendmail(self) -> tuple[int | None, probes.Listener | None]:
        """The pid sendmail's pid file names, and who listens on port 25."""
        return probes.pid_from(SENDMAIL_PID), probes.listener(probes.SMTP_PORT)

    @staticmethod
    def serving(state: tuple[int | None, probes.Listener | None]) -> bool:
        """The pid file names a live process that holds the listening socket."""
        pid, listening = state
        return probes.alive(pid) and listening is not None and pid in listening.pids

    def wait_started(self) -> tuple[int, probes.Listener]:
        started = time.monotonic()
        state = self.watch("sendmail listening on 127.0.0.1:25 (no 60 s host name sleep)",
                           self.sendmail, self.serving, timeout=START_WITHIN,
                           timing="start: supervisord to sendmail listening", since=started)
        if self.tier == "smtp-out":
            self.watch("opendkim listening on 127.0.0.1:8891",
                       lambda: (probes.pid_from(OPENDKIM_PID), probes.listener(8891)),
                       lambda s: probes.alive(s[0]) and s[1] is not None,
                       timeout=START_WITHIN, since=started)
        self.watch("the daemon's startup cycle done", lambda: self.events("cycle done"),
                   lambda done: any(e.get("trigger") == "startup" for e in done),
                   timeout=START_WITHIN, timing="start: supervisord to first cycle",
                   since=started)
        if state is None or state[0] is None or state[1] is None:
            raise RuntimeError("sendmail did not start")
        return state[0], state[1]

    def reloads_seen(self) -> list[str]:
        return [r for e in self.events("cycle done") for r in e.get("reloads", [])]

    # ── the scenarios ───────────────────────────────────────────────────────────────────────

    def scenario(self) -> None:
        pid, listening = self.wait_started()
        if self.tier == "smtp-in":
            self.smtp_in(pid, listening)
        else:
            self.smtp_out(pid, listening)
        self.still_running(pid)

    def accepted(self, address: str) -> Callable[[], probes.Reply]:
        return lambda: probes.rcpt(address)

    def smtp_in(self, pid: int, listening: probes.Listener) -> None:
        new, other = f"new@acme.{TLD}", f"other@acme.{TLD}"
        fresh = f"hello@fresh.{TLD}"
        reply = probes.rcpt(KNOWN)
        self.check("known address accepted (RELAY)", reply.code == 250, reply)
        reply = probes.rcpt(new)
        self.check("address not yet in the table rejected (REJECT)", reply.code == 550, reply)

        # A new address on a known subdomain: a map change, no signal.
        self.put(item("new", TLD, "alice", "acme"))
        since = self.publish()
        self.watch("new address: RCPT TO accepted", self.accepted(new),
                   lambda r: r.code == 250, timeout=REACT_WITHIN,
                   timing="publish to RCPT accepted (new address)", since=since)
        took = self.result.timings.get("publish to RCPT accepted (new address)")
        self.check(f"new address accepted within {NEW_ADDRESS_WITHIN:g} s",
                   took is not None and took <= NEW_ADDRESS_WITHIN, took)
        reply = probes.rcpt(other)
        self.check("unknown address on a known subdomain still rejected", reply.code == 550,
                   reply)
        self.check("a map-only change leaves sendmail alone (same listening socket)",
                   self.sendmail()[1] == listening, self.sendmail())

        # A new subdomain: relay-domains and masq-domains change, so sendmail gets HUP.
        # A session opened before the reload must still finish its transaction after it.
        before = self.sendmail()[1]
        session = smtplib.SMTP("127.0.0.1", probes.SMTP_PORT, timeout=30)
        try:
            self.check("in-flight session: EHLO before the reload",
                       session.ehlo("client.cabal.example")[0] == 250)
            self.check("in-flight session: MAIL FROM before the reload",
                       session.mail(probes.SENDER)[0] == 250)
            self.put(item("hello", "example.com", "bob", "fresh"))
            since = self.publish()
            self.watch("new subdomain: RCPT TO accepted", self.accepted(fresh),
                       lambda r: r.code == 250, timeout=REACT_WITHIN,
                       timing="publish to RCPT accepted (new subdomain)", since=since)
            self.sendmail_reloaded(pid, before, since)
            code, text = session.rcpt(KNOWN)
            self.check("in-flight session: RCPT TO after the reload", code == 250, text)
            code, text = session.data(
                f"From: <{probes.SENDER}>\r\nTo: <{KNOWN}>\r\nSubject: in flight\r\n\r\n"
                "Sent across a sendmail reload.\r\n".encode())
            self.check("in-flight session: message accepted after the reload", code == 250,
                       text)
            session.quit()
        except (OSError, smtplib.SMTPException) as error:
            self.check("in-flight session survives the reload", False, repr(error))
        finally:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                session.close()
        relay_domains = Path("/etc/mail/relay-domains").read_text().split()
        self.check("relay-domains lists the new subdomain", f"fresh.{TLD}" in relay_domains,
                   relay_domains)
        reply = probes.rcpt(f"nobody@fresh.{TLD}")
        self.check("unknown address on the new subdomain rejected", reply.code == 550, reply)

        # A deleted address.
        self.delete(new)
        since = self.publish()
        self.watch("deleted address: RCPT TO rejected", self.accepted(new),
                   lambda r: r.code == 550, timeout=REACT_WITHIN,
                   timing="publish to RCPT rejected (deleted address)", since=since)
        reply = probes.rcpt(KNOWN)
        self.check("other addresses still accepted", reply.code == 250, reply)

    def sendmail_reloaded(self, pid: int, before: probes.Listener | None, since: float
                          ) -> None:
        """After HUP, sendmail re-execs in place: the same pid, listening on a new socket
        (the reopened socket is how a re-exec shows: the pid and the process stay)."""
        self.watch("sendmail listening again on a new socket after the class-file change",
                   self.sendmail,
                   lambda s: self.serving(s) and s[1] is not None and s[1] != before,
                   timeout=REACT_WITHIN, timing="publish to sendmail listening again",
                   since=since)
        now = probes.pid_from(SENDMAIL_PID)
        self.check("sendmail kept its pid (HUP re-exec, not a restart)", now == pid,
                   f"before {pid}, now {now}")
        # The cycle ends once it has seen sendmail back (its pid file rewritten), which may
        # be a moment after the new socket shows: poll for its line, do not race it.
        self.watch("the daemon sent sendmail HUP", self.reloads_seen,
                   lambda seen: "sendmail:HUP" in seen, timeout=REACT_WITHIN)

    def smtp_out(self, pid: int, listening: probes.Listener) -> None:
        fresh = f"hello@fresh.{TLD}"
        dkim_pid = probes.pid_from(OPENDKIM_PID)
        self.check("KeyTable/SigningTable start as opendkim:opendkim 0640",
                   all(ownership(t) == ("opendkim", "opendkim", "0640") for t in KEY_TABLES),
                   [ownership(t) for t in KEY_TABLES])
        signing = probes.milter_sign(KNOWN, f"acme.{TLD}")
        self.check("known subdomain signed, d=acme.example.com", signing.ok, signing.output)
        signing = probes.milter_sign(fresh, None)
        self.check("subdomain not yet in the table not signed", signing.ok, signing.output)

        # A new subdomain: KeyTable/SigningTable (opendkim SIGUSR1) and masq-domains (HUP).
        before = self.sendmail()[1]
        self.put(item("hello", TLD, "bob", "fresh"))
        since = self.publish()
        self.watch("new subdomain signed by opendkim, d=fresh.example.com",
                   lambda: probes.milter_sign(fresh, f"fresh.{TLD}"), lambda s: s.ok,
                   timeout=REACT_WITHIN, timing="publish to signed (new subdomain)",
                   since=since)
        self.check("replaced KeyTable/SigningTable still opendkim:opendkim 0640",
                   all(ownership(t) == ("opendkim", "opendkim", "0640") for t in KEY_TABLES),
                   [ownership(t) for t in KEY_TABLES])
        self.check("KeyTable names the new subdomain",
                   f"fresh.{TLD}:cabal:" in KEY_TABLES[0].read_text(),
                   KEY_TABLES[0].read_text())
        self.check("the daemon sent opendkim USR1", "opendkim:USR1" in self.reloads_seen(),
                   self.reloads_seen())
        self.check("opendkim kept its pid (reloaded, not restarted)",
                   probes.alive(dkim_pid) and probes.pid_from(OPENDKIM_PID) == dkim_pid,
                   f"before {dkim_pid}, now {probes.pid_from(OPENDKIM_PID)}")
        self.sendmail_reloaded(pid, before, since)
        self.signed_through_sendmail(fresh)

        # A deleted address, the subdomain's last: its signing stops.
        self.delete(fresh)
        since = self.publish()
        self.watch("deleted subdomain no longer signed",
                   lambda: probes.milter_sign(fresh, None), lambda s: s.ok,
                   timeout=REACT_WITHIN, timing="publish to unsigned (deleted subdomain)",
                   since=since)
        signing = probes.milter_sign(KNOWN, f"acme.{TLD}")
        self.check("known subdomain still signed", signing.ok, signing.output)

    def signed_through_sendmail(self, sender: str) -> None:
        """The whole path: SMTP into sendmail, its milter call to opendkim, the queued
        message (queue-only delivery) carrying the signature."""
        queue = Path("/var/spool/mqueue")
        before = set(queue.glob("qf*"))
        try:
            with smtplib.SMTP("127.0.0.1", probes.SMTP_PORT, timeout=30) as session:
                session.ehlo("client.cabal.example")
                refused = session.sendmail(
                    sender, [OUTSIDER],
                    f"From: <{sender}>\r\nTo: <{OUTSIDER}>\r\nSubject: through sendmail\r\n"
                    "Date: Tue, 01 Dec 2026 12:00:00 +0000\r\n\r\nSigned on the way.\r\n")
            self.check("sendmail accepts a message from the new subdomain", not refused,
                       refused)
        except (OSError, smtplib.SMTPException) as error:
            self.check("sendmail accepts a message from the new subdomain", False, repr(error))
            return
        queued = sorted(set(queue.glob("qf*")) - before)
        headers = "".join(q.read_text(errors="replace") for q in queued)
        self.check("the queued message carries DKIM-Signature d=fresh.example.com",
                   "DKIM-Signature" in headers and f"d=fresh.{TLD};" in headers,
                   headers[-1500:] or "nothing queued")

    def still_running(self, pid: int) -> None:
        log = self.supervisord_log()
        self.check("sendmail still serving, same pid as at start",
                   self.serving(self.sendmail()) and probes.pid_from(SENDMAIL_PID) == pid,
                   self.sendmail())
        programs = ["sendmail", "reconfigure"] + (["opendkim"] if self.tier == "smtp-out"
                                                  else [])
        for program in programs:
            self.check(f"{program} never exited under supervisord",
                       f"exited: {program} " not in log and
                       log.count(f"spawned: '{program}'") == 1, self.tail(log))

    # ── the whole run ───────────────────────────────────────────────────────────────────────

    def main(self) -> int:
        os.chdir(self.work)
        try:
            self.mount()
            self.install_programs()
            self.start_aws()
            self.prepare()
            self.start_supervisord()
            self.scenario()
            if os.environ.get("BOX_HOLD"):
                time.sleep(float(os.environ["BOX_HOLD"]))
        except Exception:
            self.result.error = traceback.format_exc()
        finally:
            try:
                self.stop_supervisord()
            finally:
                self.write_result()
        failed = [c for c in self.result.checks if not c.ok]
        return 1 if failed or self.result.error else 0


def as_init(child: Callable[[], int]) -> int:
    """Pid 1's duty: reap every orphan (sendmail's detached children end up here) while the
    box runs in a child process; the child's exit status."""
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            code = child()
        finally:
            os._exit(code)
    while True:
        reaped, status = os.wait()
        if reaped == pid:
            return os.waitstatus_to_exitcode(status)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("smtp-in", "smtp-out"):
        print("usage: python -m tests.e2e.box smtp-in|smtp-out WORKDIR", file=sys.stderr)
        return 2
    if os.getpid() != 1:
        print("tests.e2e.box: run me as pid 1 of new namespaces (unshare --pid --fork "
              "--mount-proc --mount --uts --net); I mount over /etc and signal daemons",
              file=sys.stderr)
        return 2
    return as_init(Box(argv[0], Path(argv[1])).main)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
