"""Cycles in-process against moto over HTTP: change-only apply, reloads, guard, outages."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer
from pytest_httpserver import HTTPServer

from reconfigure.aws import Aws
from reconfigure.cycle import Cycler
from reconfigure.heartbeat import Heartbeat
from reconfigure.settings import Settings, from_env
from tests.support.items import item
from tests.support.world import (
    AwsWorld,
    FakeDaemon,
    daemon_env,
    dump_map,
    make_world,
    wait_for,
)


def settings_for(world: AwsWorld, root: Path, tier: str = "imap", **extra: str) -> Settings:
    return from_env(daemon_env(world, root, tier, **extra))


def cycler_for(settings: Settings, world: AwsWorld, heartbeat: Heartbeat | None = None,
               **aws_options: float) -> Cycler:
    stop = threading.Event()
    aws = Aws(dynamodb=world.client("dynamodb"), sqs=world.client("sqs"),
              table=settings.address_table, stop=stop, **aws_options)
    return Cycler(settings, aws, heartbeat, stop)


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes())
            for p in root.rglob("*") if p.is_file() and "var/lib" not in str(p)}


def rows(count: int, sub: str = "acme") -> list[dict[str, object]]:
    return [item(f"user{i}", "example.com", "alice", sub) for i in range(count)]


@pytest.fixture
def sendmail(root: Path, tmp_path: Path) -> Iterator[FakeDaemon]:
    daemon = FakeDaemon("sendmail: MTA: accepting connections", root / "var/run/sendmail.pid",
                        tmp_path / "sendmail.signals")
    yield daemon
    daemon.close()


def test_no_op_cycle_touches_nothing_signals_nothing_and_pings(
        world: AwsWorld, root: Path, httpserver: HTTPServer, sendmail: FakeDaemon) -> None:
    world.put(*rows(3))
    httpserver.expect_request("/hc").respond_with_data("OK")
    settings = settings_for(world, root, HEALTHCHECK_PING_URL=httpserver.url_for("/hc"))
    heartbeat = Heartbeat(settings.ping_url, "imap", min_interval=0, send_start=False)
    cycler = cycler_for(settings, world, heartbeat)
    first = cycler.run("startup")
    assert first.ok and "/etc/mail/virtusertable" in first.changed
    wait_for(lambda: sendmail.signals() == ["TERM"], what="one restart for the class files")
    before = snapshot(root)
    second = cycler.run("timer")
    assert second.ok and second.changed == [] and second.reloads == []
    assert snapshot(root) == before
    assert sendmail.signals() == ["TERM"]
    assert heartbeat.flush(5)
    assert [r.path for r, _ in httpserver.log] == ["/hc", "/hc"]
    heartbeat.close()


def test_new_address_on_existing_subdomain_signals_no_sendmail(
        world: AwsWorld, root: Path, sendmail: FakeDaemon) -> None:
    world.put(*rows(3))
    cycler = cycler_for(settings_for(world, root), world)
    assert cycler.run("startup").ok
    wait_for(lambda: sendmail.signals() == ["TERM"], what="TERM")
    world.put(item("fresh", "example.com", "bob", "acme"))
    report = cycler.run("message")
    assert report.ok
    assert set(report.changed) == {"/etc/mail/access", "/etc/mail/virtusertable"}
    assert dump_map(root / "etc/mail/virtusertable.db", root / "sendmail.cf")[
        "fresh@acme.example.com"] == "bob"
    assert sendmail.signals() == ["TERM"]

    world.put(item("x", "example.com", "bob", "newsub"))
    report = cycler.run("message")
    assert "/etc/mail/local-host-names" in report.changed
    assert "/etc/mail/relay-domains" in report.changed
    assert report.reloads.count("sendmail:TERM") == 1
    wait_for(lambda: sendmail.signals() == ["TERM", "TERM"], what="one more TERM")


def test_sendmail_signal_can_be_hup(world: AwsWorld, root: Path, sendmail: FakeDaemon) -> None:
    world.put(*rows(1))
    cycler = cycler_for(settings_for(world, root, RECONFIGURE_SENDMAIL_SIGNAL="HUP"), world)
    assert cycler.run("startup").reloads == ["newaliases", "sendmail:HUP"]
    wait_for(lambda: sendmail.signals() == ["HUP"], what="HUP")


def test_opendkim_gets_usr1_only_when_its_tables_change(
        world: AwsWorld, root: Path, tmp_path: Path) -> None:
    opendkim = FakeDaemon("/usr/sbin/opendkim", root / "var/run/opendkim/opendkim.pid",
                          tmp_path / "opendkim.signals")
    try:
        world.put(*rows(2))
        cycler = cycler_for(settings_for(world, root, "smtp-out"), world)
        assert "opendkim:USR1" in cycler.run("startup").reloads
        wait_for(lambda: opendkim.signals() == ["USR1"], what="USR1")
        world.put(item("another", "example.com", "bob", "acme"))  # same subdomain
        assert cycler.run("message").reloads == []
        world.put(item("x", "example.com", "bob", "dkimsub"))
        assert "opendkim:USR1" in cycler.run("message").reloads
        wait_for(lambda: opendkim.signals() == ["USR1", "USR1"], what="second USR1")
        assert (root / "etc/opendkim/KeyTable").stat().st_mode & 0o777 == 0o644
    finally:
        opendkim.close()


def test_stale_pid_file_never_signals_another_process(world: AwsWorld, root: Path,
                                                      tmp_path: Path) -> None:
    bystander = FakeDaemon("innocent", tmp_path / "unused.pid", tmp_path / "bystander.signals")
    try:
        (root / "var/run/sendmail.pid").write_text(f"{bystander.process.pid}\n")
        world.put(*rows(1))
        report = cycler_for(settings_for(world, root), world).run("startup")
        assert not report.ok and "is not sendmail" in (report.error or "")
        assert bystander.signals() == []
    finally:
        bystander.close()


def test_mass_deletion_guard_and_force(world: AwsWorld, root: Path) -> None:
    world.put(*rows(30))
    settings = settings_for(world, root)
    cycler = cycler_for(settings, world)
    assert cycler.run("startup").ok
    for i in range(20):
        world.delete_row(f"user{i}@acme.example.com")
    before = snapshot(root)
    report = cycler.run("message")
    assert not report.ok
    assert "reconfigure once --force" in (report.error or "")
    assert "RECONFIGURE_MAX_SHRINK_PERCENT" in (report.error or "")
    assert snapshot(root) == before
    forced = cycler.run("once", force=True)
    assert forced.ok and "/etc/mail/virtusertable" in forced.changed
    assert (root / "etc/mail/virtusertable").read_text().count("\n") == 10
    world.delete_row("user20@acme.example.com")  # 10 → 9 is under the guard's minimum
    assert cycler.run("timer").ok


def test_rate_limit_one_success_per_interval_failures_and_recovery_at_once(
        world: AwsWorld, root: Path, httpserver: HTTPServer) -> None:
    world.put(*rows(2))
    httpserver.expect_request("/hc").respond_with_data("OK")
    httpserver.expect_request("/hc/fail").respond_with_data("OK")
    settings = settings_for(world, root, HEALTHCHECK_PING_URL=httpserver.url_for("/hc"))
    heartbeat = Heartbeat(settings.ping_url, "imap", min_interval=60, send_start=False)
    cycler = cycler_for(settings, world, heartbeat)
    for _ in range(4):
        assert cycler.run("message").ok
    cycler.aws.table = "missing-table"
    assert not cycler.run("message").ok
    cycler.aws.table = settings.address_table
    assert cycler.run("message").ok
    assert cycler.run("message").ok
    assert heartbeat.flush(5)
    assert [r.path for r, _ in httpserver.log] == ["/hc", "/hc/fail", "/hc"]
    heartbeat.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_aws_unreachable_for_a_while_then_back(root: Path) -> None:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    world = make_world(f"http://127.0.0.1:{port}")
    world.put(*rows(2))
    server.stop()  # moto's state lives on in this process; only the endpoint goes away
    cycler = cycler_for(settings_for(world, root), world, max_backoff=0.5)
    result: list[bool] = []
    worker = threading.Thread(target=lambda: result.append(cycler.run("timer").ok))
    worker.start()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    try:
        wait_for(lambda: cycler.aws.retries >= 3, what="retries against a dead endpoint")
        assert worker.is_alive()
        server.start()
        worker.join(30)
        assert result == [True]
        assert (root / "etc/mail/virtusertable").read_text().count("\n") == 2
    finally:
        cycler.stop.set()
        worker.join(5)
        server.stop()


def test_hanging_heartbeat_server_does_not_slow_the_cycle(world: AwsWorld, root: Path) -> None:
    world.put(*rows(2))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # accepts connections, never answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/secret-uuid"
        settings = settings_for(world, root, HEALTHCHECK_PING_URL=url)
        heartbeat = Heartbeat(settings.ping_url, "imap", min_interval=0, send_start=True)
        cycler = cycler_for(settings, world, heartbeat)
        started = time.monotonic()
        assert cycler.run("timer").ok
        assert time.monotonic() - started < 2.0
        started = time.monotonic()
        heartbeat.close(timeout=1.0)
        assert time.monotonic() - started < 1.5


# sendmail's modes sleep 60 s on a host name without a domain part: run it in a private
# UTS namespace with a qualified name (docs/design.md §10), never renaming this machine.
QUALIFIED_NEWALIASES = (
    "unshare --uts --mount python3 -c "
    "'import os, socket, sys; socket.sethostname(\"x.example.test\"); "
    "os.execvp(sys.argv[1], sys.argv[1:])' /usr/sbin/sendmail -bi"
)


@pytest.mark.skipif(os.geteuid() != 0, reason="unshare --uts needs root")
def test_imap_aliases_assembled_and_compiled_by_real_newaliases(
        world: AwsWorld, root: Path) -> None:
    world.put(item("shop", "example.com", "carol/alice", "acme"))
    settings = settings_for(world, root, RECONFIGURE_NEWALIASES=QUALIFIED_NEWALIASES)
    cycler = cycler_for(settings, world)
    report = cycler.run("startup")
    assert report.ok, report.error
    assert "newaliases" in report.reloads
    assert (root / "etc/aliases").read_text() == (
        "postmaster: root\nroot: /dev/null\n\n# Dynamic aliases (generated from DynamoDB)\n"
        "alice_carol: alice, carol\n")
    db = root / "etc/aliases.db"
    owner = db.stat().st_uid  # the cf's TrustedUser (smmta on Debian)
    os.chown(db, 0, 0)  # our -C cf names no TrustedUser, so makemap -u wants root's file
    aliases = dump_map(db, root / "sendmail.cf")
    os.chown(db, owner, -1)
    assert aliases["alice_carol"] == "alice, carol"
    assert aliases["postmaster"] == "root"
    db_mtime = (root / "etc/aliases.db").stat().st_mtime_ns
    again = cycler.run("timer")
    assert again.ok and "newaliases" not in again.reloads
    assert (root / "etc/aliases.db").stat().st_mtime_ns == db_mtime
