"""Making files live and keeping the daemons in step: partial swaps, owed reloads across
cycles and processes, the static aliases, newaliases killed mid-build, and temp files left
by a killed daemon (docs/design.md §5). moto over HTTP, the real makemap, real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from reconfigure import health, status
from reconfigure.aws import Aws
from reconfigure.cycle import Cycler
from reconfigure.heartbeat import Heartbeat
from reconfigure.settings import Settings, from_env
from tests.support.items import item
from tests.support.world import (
    AwsWorld,
    FakeDaemon,
    cycles,
    daemon_env,
    log_events,
    start_daemon,
    stop_daemon,
    temp_files,
    wait_for,
)

SENDMAIL_PID = "var/run/sendmail.pid"


def settings_for(world: AwsWorld, root: Path, tier: str = "imap", **extra: str) -> Settings:
    return from_env(daemon_env(world, root, tier, **extra))


def cycler_for(settings: Settings, world: AwsWorld,
               heartbeat: Heartbeat | None = None) -> Cycler:
    stop = threading.Event()
    aws = Aws(dynamodb=world.client("dynamodb"), sqs=world.client("sqs"),
              table=settings.address_table, stop=stop)
    return Cycler(settings, aws, heartbeat, stop)


def rows(count: int, sub: str = "acme") -> list[dict[str, object]]:
    return [item(f"user{i}", "example.com", "alice", sub) for i in range(count)]


def owed(root: Path) -> list[str]:
    return status.read_owed(root / "var/lib/reconfigure/status.json")


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and "var/lib" not in str(p) and ".calls" not in p.name}


@pytest.fixture
def sendmail(root: Path, tmp_path: Path) -> Iterator[FakeDaemon]:
    daemon = FakeDaemon("sendmail: MTA: accepting connections", root / SENDMAIL_PID,
                        tmp_path / "sendmail.signals")
    yield daemon
    daemon.close()


# --- item: a swap that fails part-way ----------------------------------------------------

def test_a_swap_that_fails_part_way_owes_what_went_live_and_leaves_no_temp_file(
        world: AwsWorld, root: Path, tmp_path: Path) -> None:
    world.put(*rows(2))
    (root / "etc/mail/virtusertable.db").mkdir()  # its rename fails: a directory is there
    (root / SENDMAIL_PID).write_text("garbage\n")  # and the restart it owes cannot be done
    cycler = cycler_for(settings_for(world, root), world)
    report = cycler.run("startup")
    assert not report.ok and not report.applied
    assert "cannot replace" in (report.error or "")
    assert "virtusertable.db" in (report.error or "")
    assert report.changed == ["/etc/mail/local-host-names", "/etc/mail/relay-domains",
                              "/etc/mail/access"]
    assert report.owed == ["sendmail"] and owed(root) == ["sendmail"]
    assert not temp_files(root)
    assert not (root / "etc/mail/virtusertable").exists()
    assert not (root / "etc/aliases").exists()  # after the failure: never swapped

    (root / "etc/mail/virtusertable.db").rmdir()
    fake = FakeDaemon("sendmail: MTA: accepting connections", root / SENDMAIL_PID,
                      tmp_path / "sendmail.signals")
    try:
        again = cycler.run("timer")
        assert again.ok, again.error
        assert again.reloads == ["newaliases", "sendmail:TERM"]
        assert again.owed == [] and owed(root) == []
        assert fake.signals() == ["TERM"]
    finally:
        fake.close()


def test_the_reloads_that_worked_are_reported_when_another_fails(
        world: AwsWorld, root: Path, tmp_path: Path) -> None:
    opendkim = FakeDaemon("/usr/sbin/opendkim", root / "var/run/opendkim/opendkim.pid",
                          tmp_path / "opendkim.signals")
    try:
        (root / SENDMAIL_PID).write_text("-1\n")
        world.put(*rows(2))
        report = cycler_for(settings_for(world, root, "smtp-out"), world).run("startup")
        assert report.applied and not report.ok
        assert report.reloads == ["opendkim:USR1"]
        assert "sendmail" in (report.error or "") and "'-1'" in (report.error or "")
        assert report.owed == ["sendmail"] and owed(root) == ["sendmail"]
        wait_for(lambda: opendkim.signals() == ["USR1"], what="USR1")
    finally:
        opendkim.close()


# --- item: an owed reload is reported until it is done ----------------------------------

def test_an_owed_reload_fails_each_cycle_everywhere_until_it_is_done(
        world: AwsWorld, root: Path, tmp_path: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hc").respond_with_data("OK")
    httpserver.expect_request("/hc/fail").respond_with_data("OK")
    log_file = root / "var/log/sendmail.log"
    log_file.parent.mkdir(parents=True)
    log_file.write_text("")
    tail = subprocess.Popen(["tail", "-f", str(log_file)])
    try:
        (root / SENDMAIL_PID).write_text(f"{tail.pid}\n")
        world.put(*rows(2))
        settings = settings_for(world, root, HEALTHCHECK_PING_URL=httpserver.url_for("/hc"))
        heartbeat = Heartbeat(settings.ping_url, "imap", min_interval=0, send_start=False)
        cycler = cycler_for(settings, world, heartbeat)
        env = {"RECONFIGURE_ROOT": str(root)}

        first = cycler.run("startup")
        assert first.applied and not first.ok and first.owed == ["sendmail"]
        assert f"pid {tail.pid} is not sendmail" in (first.error or "")
        assert health.main(env) == 1
        written = health.load(root / "var/lib/reconfigure/status.json")
        assert written["owed_reloads"] == ["sendmail"]
        assert written["addresses"] == 2  # live now: the guard's reference moves with it
        described = status.describe(written, now=0, interval=900,
                                    path=root / "var/lib/reconfigure/status.json")
        assert "owed reloads:   sendmail" in described

        second = cycler.run("timer")  # nothing changed: the owed restart is retried
        assert second.changed == [] and not second.ok and second.owed == ["sendmail"]
        assert "is not sendmail" in (second.error or "")
        assert tail.poll() is None  # never signalled
        assert heartbeat.flush(5)
        bodies = [r.get_data(as_text=True) for r, _ in httpserver.log]
        assert [r.path for r, _ in httpserver.log] == ["/hc/fail", "/hc/fail"]
        assert all("owed reloads: sendmail" in body for body in bodies)

        fake = FakeDaemon("sendmail: MTA: accepting connections", root / SENDMAIL_PID,
                          tmp_path / "sendmail.signals")
        try:
            third = cycler.run("timer")
            assert third.ok and third.reloads == ["sendmail:TERM"] and third.owed == []
            assert health.main(env) == 0 and owed(root) == []
            assert fake.signals() == ["TERM"]
        finally:
            fake.close()
        assert heartbeat.flush(5)
        last = httpserver.log[-1][0]
        assert last.path == "/hc" and "owed reloads: none" in last.get_data(as_text=True)
        heartbeat.close()
    finally:
        tail.kill()
        tail.wait()


def test_a_cycle_that_fails_before_its_swap_still_does_what_is_owed(
        world: AwsWorld, root: Path, tmp_path: Path) -> None:
    """The owed files are live already: their reloads do not wait for AWS to answer."""
    (root / SENDMAIL_PID).write_text("garbage\n")
    world.put(*rows(2))
    settings = settings_for(world, root)
    cycler = cycler_for(settings, world)
    assert cycler.run("startup").owed == ["sendmail"]
    fake = FakeDaemon("sendmail: MTA: accepting connections", root / SENDMAIL_PID,
                      tmp_path / "sendmail.signals")
    try:
        cycler.aws.table = "missing-table"  # this cycle cannot read its sources
        report = cycler.run("timer")
        assert not report.ok and "ResourceNotFound" in (report.error or "")
        assert report.reloads == ["sendmail:TERM"] and report.owed == [] and owed(root) == []
        assert fake.signals() == ["TERM"]
    finally:
        fake.close()


# --- item: the static aliases ------------------------------------------------------------

@pytest.mark.parametrize("fault", ["missing", "unreadable"])
def test_without_the_static_aliases_the_cycle_fails_and_etc_aliases_stays(
        world: AwsWorld, root: Path, fault: str) -> None:
    world.put(item("shop", "example.com", "carol/alice", "acme"))
    cycler = cycler_for(settings_for(world, root), world)
    assert cycler.run("startup").ok
    aliases = (root / "etc/aliases").read_bytes()
    assert b"postmaster: root" in aliases
    static = root / "etc/aliases.static"
    static.unlink()
    before = snapshot(root)
    if fault == "unreadable":
        static.mkdir()  # root reads any file; a directory is what it cannot read
    world.put(item("desk", "example.com", "bob/carol", "acme"))
    report = cycler.run("message")
    assert not report.ok and not report.applied
    assert str(static) in (report.error or "")
    assert ("missing" if fault == "missing" else "unreadable") in (report.error or "")
    assert snapshot(root) == before  # /etc/aliases and every map as they were
    assert not temp_files(root)


# --- item: a status file path that cannot be written -------------------------------------

def test_a_status_path_that_is_a_directory_leaks_no_temp_file(
        world: AwsWorld, root: Path) -> None:
    status_dir = root / "var/lib/reconfigure/status.json"
    status_dir.mkdir(parents=True)
    cycler = cycler_for(settings_for(world, root), world)
    for index in range(3):
        world.put(item(f"u{index}", "example.com", "alice", f"sub{index}"))
        cycler.run("timer")
    assert not temp_files(root)
    assert list(status_dir.parent.iterdir()) == [status_dir]


# --- item: newaliases killed by SIGTERM, owed to the next process -------------------------

SLOW_NEWALIASES = """#!{python}
import os, sys, time
alias = next(a[3:] for a in sys.argv[1:] if a.startswith("-oA"))
with open({calls!r}, "a") as f:
    f.write(f"{{os.getpid()}} {{alias}}\\n")
if os.path.exists({slow!r}):
    with open(alias + ".db", "wb") as db:
        db.write(b"half-built")  # sendmail truncates and fills its .db as it goes
        db.flush()
    time.sleep(60)
with open(alias, "rb") as source, open(alias + ".db", "wb") as db:
    db.write(b"new db\\n" + source.read())
"""


def test_sigterm_while_newaliases_runs_keeps_aliases_db_and_owes_newaliases(
        world: AwsWorld, root: Path, tmp_path: Path,
        daemons: list[subprocess.Popen[bytes]]) -> None:
    calls, slow = tmp_path / "newaliases.calls", tmp_path / "slow"
    script = tmp_path / "newaliases"
    script.write_text(SLOW_NEWALIASES.format(python=sys.executable, calls=str(calls),
                                             slow=str(slow)))
    script.chmod(0o755)
    slow.write_text("")
    db = root / "etc/aliases.db"
    db.write_bytes(b"old db\n")
    world.put(item("shop", "example.com", "carol/alice", "acme"))
    env = daemon_env(world, root, RECONFIGURE_NEWALIASES=str(script))
    log = tmp_path / "daemon.log"
    daemons.append(start_daemon(env, log))
    wait_for(lambda: calls.exists() and calls.read_text(), what="newaliases started",
             timeout=30)
    pid = int(calls.read_text().split()[0])
    code, took = stop_daemon(daemons[0])
    assert code == 0 and took <= 2.0
    assert db.read_bytes() == b"old db\n"  # never missing, never half-built
    assert not Path(f"/proc/{pid}").exists()  # the child was killed, not left running
    assert not temp_files(root)
    assert "newaliases" in owed(root)
    assert "alice_carol" in (root / "etc/aliases").read_text()  # the swap happened

    slow.unlink()
    daemons.append(start_daemon(env, log))
    wait_for(lambda: cycles(log), what="the next process's first cycle", timeout=30)
    stop_daemon(daemons[1])
    first = cycles(log)[0]
    assert first["changed"] == [] and "newaliases" in first["reloads"]
    assert len(calls.read_text().splitlines()) == 2
    assert db.read_bytes().startswith(b"new db\npostmaster: root\n")
    assert owed(root) == []
    assert not temp_files(root)


# --- item: temp files a killed daemon left ----------------------------------------------

HANGING_MAKEMAP = """#!{python}
import os, sys, time
with open({calls!r}, "a") as f:
    f.write(f"{{os.getpid()}}\\n")
with open(sys.argv[-1] + ".db", "wb") as db:
    db.write(b"half-built")
time.sleep(60)
"""


def test_temp_files_left_by_a_sigkill_during_makemap_are_swept_at_start(
        world: AwsWorld, root: Path, tmp_path: Path,
        daemons: list[subprocess.Popen[bytes]]) -> None:
    calls = tmp_path / "makemap.calls"
    makemap = tmp_path / "makemap"
    makemap.write_text(HANGING_MAKEMAP.format(python=sys.executable, calls=str(calls)))
    makemap.chmod(0o755)
    bystanders = [root / "etc/mail/.keep.tmp", root / "etc/mail/notes.tmp",
                  root / "etc/mail/.access.swp"]
    for path in bystanders:
        path.write_text("not ours\n")
    world.put(*rows(3))
    log = tmp_path / "daemon.log"
    daemons.append(start_daemon(daemon_env(world, root, RECONFIGURE_MAKEMAP=str(makemap)),
                                log))
    wait_for(lambda: calls.exists() and calls.read_text(), what="makemap started",
             timeout=30)
    daemons[0].kill()
    daemons[0].wait()
    os.kill(int(calls.read_text().split()[0]), signal.SIGKILL)  # the orphaned makemap
    left = {p.name for p in temp_files(root)} - {".keep.tmp"}
    assert any(name.endswith(".tmp.db") for name in left), left
    assert any(name.startswith(".access.") and name.endswith(".tmp") for name in left), left

    daemons.append(start_daemon(daemon_env(world, root), log))
    wait_for(lambda: cycles(log), what="the restarted daemon's first cycle", timeout=30)
    stop_daemon(daemons[1])
    assert [p.name for p in temp_files(root)] == [".keep.tmp"]
    assert all(path.exists() for path in bystanders)
    assert any(e.get("event") == "temp files swept" for e in log_events(log))
