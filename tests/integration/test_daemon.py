"""The daemon end to end: moto over HTTP, the real makemap, a real ping receiver."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from pytest_httpserver import HTTPServer

from tests.integration.test_users_cognito import Pool
from tests.support.accounts import make_account_root, real_tools_available
from tests.support.items import item
from tests.support.world import (
    AwsWorld,
    cycles,
    daemon_env,
    dump_map,
    fake_command,
    log_events,
    make_root,
    start_daemon,
    stop_daemon,
    temp_files,
    wait_for,
)


def seed(world: AwsWorld) -> None:
    world.put(item("shop", "example.com", "carol/alice", "acme"),
              item("news", "example.com", "alice", "acme"),
              item("postmaster", "example.org", "alice"))


def test_message_to_new_map_entry_with_heartbeat(
        world: AwsWorld, root: Path, tmp_path: Path, httpserver: HTTPServer,
        daemons: list[subprocess.Popen[bytes]]) -> None:
    seed(world)
    httpserver.expect_request("/ping/imap/start").respond_with_data("OK")
    httpserver.expect_request("/ping/imap").respond_with_data("OK")
    log = tmp_path / "daemon.log"
    env = daemon_env(world, root, HEALTHCHECK_PING_URL=httpserver.url_for("/ping/{tier}"),
                     RECONFIGURE_HEARTBEAT_START="true")
    daemons.append(start_daemon(env, log))
    wait_for(lambda: cycles(log), what="startup cycle")
    virtusertable = root / "etc/mail/virtusertable.db"
    cf = root / "sendmail.cf"
    assert "new@acme.example.com" not in dump_map(virtusertable, cf)

    world.put(item("new", "example.com", "bob", "acme"))
    world.notify()
    wait_for(lambda: "new@acme.example.com" in dump_map(virtusertable, cf), what="new key")
    assert dump_map(virtusertable, cf)["new@acme.example.com"] == "bob"
    wait_for(lambda: world.queue_depth() == 0, what="message deleted")

    message_cycle = wait_for(lambda: [c for c in cycles(log) if c["trigger"] == "message"])[0]
    assert "/etc/mail/virtusertable" in message_cycle["changed"]
    pings = wait_for(lambda: [r for r, _ in httpserver.log if r.path == "/ping/imap"]
                     and [r for r, _ in httpserver.log], what="success ping")
    paths = [(r.path, r.args.get("rid")) for r in pings]
    outcomes = [(i, rid) for i, (p, rid) in enumerate(paths) if p == "/ping/imap"]
    starts = {rid: i for i, (p, rid) in enumerate(paths) if p == "/ping/imap/start"}
    for index, rid in outcomes:
        assert rid and starts[rid] < index  # each outcome follows its own /start
    body = next(r for r in pings if r.path == "/ping/imap").get_data(as_text=True)
    assert "imap" in body and "trigger" in body
    code, took = stop_daemon(daemons[0])
    assert code == 0 and took < 2.0


def test_burst_of_50_messages_is_at_most_two_cycles(
        world: AwsWorld, root: Path, tmp_path: Path,
        daemons: list[subprocess.Popen[bytes]]) -> None:
    seed(world)
    log = tmp_path / "daemon.log"
    daemons.append(start_daemon(daemon_env(world, root), log))
    wait_for(lambda: cycles(log), what="startup cycle")
    world.put(item("burst", "example.com", "bob", "acme"))
    world.notify(50)
    wait_for(lambda: world.queue_depth() == 0, timeout=20, what="all 50 deleted")
    message_cycles = [c for c in cycles(log) if c["trigger"] == "message"]
    assert 1 <= len(message_cycles) <= 2
    # Each message is received once, folded into a cycle, and deleted after it.
    assert sum(c["messages"] for c in message_cycles) == 50
    stop_daemon(daemons[0])


def test_makemap_failure_keeps_last_good_map_and_messages(
        world: AwsWorld, root: Path, tmp_path: Path, httpserver: HTTPServer,
        daemons: list[subprocess.Popen[bytes]]) -> None:
    seed(world)
    httpserver.expect_request("/hc/fail").respond_with_data("OK")
    httpserver.expect_request("/hc").respond_with_data("OK")
    log = tmp_path / "daemon.log"
    env = daemon_env(world, root, HEALTHCHECK_PING_URL=httpserver.url_for("/hc"))
    daemons.append(start_daemon(env, log))
    wait_for(lambda: cycles(log), what="startup cycle")
    stop_daemon(daemons[0])
    db = root / "etc/mail/virtusertable.db"
    before = db.read_bytes()

    env["RECONFIGURE_MAKEMAP"] = str(fake_command(tmp_path / "makemap", exit_code=65))
    world.put(item("new", "example.com", "bob", "acme"))
    world.notify()
    daemons.append(start_daemon(env, log))
    wait_for(lambda: cycles(log, event="cycle failed"), what="failed cycle")
    fail = wait_for(lambda: [r for r, _ in httpserver.log if r.path == "/hc/fail"])[0]
    assert "makemap exited 65" in fail.get_data(as_text=True)
    assert db.read_bytes() == before
    assert "new@acme" not in (root / "etc/mail/virtusertable").read_text()
    assert world.queue_depth() == 1
    code, _ = stop_daemon(daemons[1])  # a retry may be staging right now: stop it first
    assert code == 0
    assert not temp_files(root)


def test_sigterm_during_long_poll_exits_0_quickly(
        world: AwsWorld, root: Path, tmp_path: Path,
        daemons: list[subprocess.Popen[bytes]]) -> None:
    log = tmp_path / "daemon.log"
    daemons.append(start_daemon(daemon_env(world, root), log))
    wait_for(lambda: cycles(log), what="startup cycle")
    code, took = stop_daemon(daemons[0])
    assert code == 0 and took < 2.0
    assert any(e.get("event") == "stopped" for e in log_events(log))


def test_sigterm_during_a_cycle_leaves_no_temp_files(
        world: AwsWorld, root: Path, tmp_path: Path,
        daemons: list[subprocess.Popen[bytes]]) -> None:
    seed(world)
    calls = tmp_path / "makemap.calls"
    slow = fake_command(tmp_path / "makemap", sleep=60, record=calls)
    log = tmp_path / "daemon.log"
    daemons.append(start_daemon(daemon_env(world, root, RECONFIGURE_MAKEMAP=str(slow)), log))
    wait_for(calls.exists, what="makemap started")
    code, took = stop_daemon(daemons[0], signal.SIGINT)
    assert code == 0 and took < 2.0
    assert not temp_files(root)
    assert not (root / "etc/mail/virtusertable").exists()  # nothing half-applied
    assert any(e.get("event") == "cycle abandoned" for e in log_events(log))


def test_waits_for_the_ready_file(
        world: AwsWorld, root: Path, tmp_path: Path,
        daemons: list[subprocess.Popen[bytes]]) -> None:
    (root / "run/sendmail-ready").unlink()
    log = tmp_path / "daemon.log"
    daemons.append(start_daemon(daemon_env(world, root), log))
    wait_for(lambda: any(e.get("event") == "waiting for ready file" for e in log_events(log)))
    assert not cycles(log)
    (root / "run/sendmail-ready").write_text("")
    wait_for(lambda: cycles(log), what="first cycle after the ready file")
    code, took = stop_daemon(daemons[0])
    assert code == 0 and took < 2.0


def test_periodic_mode_without_queue(
        world: AwsWorld, root: Path, tmp_path: Path,
        daemons: list[subprocess.Popen[bytes]]) -> None:
    log = tmp_path / "daemon.log"
    env = daemon_env(world, root, RECONFIGURE_INTERVAL="1")
    del env["SQS_QUEUE_URL"]
    daemons.append(start_daemon(env, log))
    wait_for(lambda: [c for c in cycles(log) if c["trigger"] == "timer"], what="timer cycle")
    assert any(e.get("event") == "SQS_QUEUE_URL not set: periodic-only mode"
               for e in log_events(log))
    started = time.monotonic()
    stop_daemon(daemons[0])
    assert time.monotonic() - started < 2.0


def test_once_exit_codes_and_bad_settings(world: AwsWorld, root: Path, tmp_path: Path) -> None:
    seed(world)
    env = daemon_env(world, root)
    ok = run_cli("once", env=env)
    assert ok.returncode == 0
    assert (root / "etc/mail/access.db").exists()
    env["RECONFIGURE_ADDRESS_TABLE"] = "no-such-table"
    failed = run_cli("once", env=env)
    assert failed.returncode == 1
    assert b"ResourceNotFoundException" in failed.stdout
    env["RECONFIGURE_INTERVAL"] = "soon"
    bad = run_cli("run", env=env)
    assert bad.returncode == 2
    assert bad.stderr.decode().strip().splitlines() == [
        "reconfigure: RECONFIGURE_INTERVAL: not a number: 'soon'"]


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "reconfigure", *args], env=env,
                          capture_output=True, timeout=60, check=False)


@pytest.mark.skipif(not real_tools_available(), reason="needs root, useradd and groupadd")
def test_new_cognito_user_gets_an_account_on_the_next_cycle(
        world: AwsWorld, tmp_path: Path, moto_endpoint: str,
        daemons: list[subprocess.Popen[bytes]]) -> None:
    root = make_root(make_account_root(tmp_path / "root"))
    pool = Pool(world.client("cognito-idp"))
    pool.admin_created("alice", "70001", confirm=True)
    log = tmp_path / "daemon.log"
    env = daemon_env(world, root, COGNITO_POOL_ID=pool.id)
    daemons.append(start_daemon(env, log))
    first = wait_for(lambda: cycles(log), what="startup cycle")[0]
    assert (root / "home/alice/Maildir").stat().st_uid == 70001
    assert "dave" not in (root / "etc/passwd").read_text()

    pool.admin_created("dave", "70002", confirm=True)
    world.notify()
    wait_for(lambda: len(cycles(log)) == 2, what="message cycle")
    assert "dave:x:70002:70002::/home/dave:" in (root / "etc/passwd").read_text()
    maildir = (root / "home/dave/Maildir").stat()
    assert (maildir.st_uid, maildir.st_gid, maildir.st_mode & 0o777) == (70002, 70002, 0o700)
    assert (root / "home/dave/.procmailrc").exists()
    assert first["users_created"] == 1 and cycles(log)[1]["users_created"] == 1
    code, _ = stop_daemon(daemons[0])
    assert code == 0


def test_metrics_endpoint(world: AwsWorld, root: Path, tmp_path: Path,
                          daemons: list[subprocess.Popen[bytes]]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path / "daemon.log"
    env = daemon_env(world, root, RECONFIGURE_METRICS_PORT=str(port),
                     RECONFIGURE_METRICS_ADDRESS="127.0.0.1")
    daemons.append(start_daemon(env, log))
    wait_for(lambda: cycles(log), what="startup cycle")
    body = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert ('reconfigure_cycles_total{tier="imap",trigger="startup",outcome="success"} 1'
            in body.splitlines())
    assert requests.get(f"http://127.0.0.1:{port}/other", timeout=5).status_code == 404
    stop_daemon(daemons[0])


@pytest.mark.skipif(not real_tools_available(), reason="needs root, useradd and groupadd")
def test_sigterm_while_creating_many_users_stops_between_two_accounts(
        world: AwsWorld, tmp_path: Path, daemons: list[subprocess.Popen[bytes]]) -> None:
    root = make_root(make_account_root(tmp_path / "root"))
    pool = Pool(world.client("cognito-idp"))
    for n in range(150):
        pool.admin_created(f"user{n:03d}", str(70000 + n), confirm=True)
    log = tmp_path / "daemon.log"
    daemons.append(start_daemon(daemon_env(world, root, COGNITO_POOL_ID=pool.id), log))
    wait_for(lambda: "user000:" in (root / "etc/passwd").read_text(), timeout=30,
             what="the first account")
    code, took = stop_daemon(daemons[0])
    assert code == 0 and took < 2.0
    made = (root / "etc/passwd").read_text().count(":/home/user")
    assert 0 < made < 150
    assert any(e.get("event") == "cycle abandoned" for e in log_events(log))
    # every account line is whole: the next cycle can add the rest
    assert all(len(line.split(":")) == 7 for line in (root / "etc/passwd").read_text().splitlines())


def test_once_refuses_a_mass_deletion_until_forced(world: AwsWorld, root: Path) -> None:
    world.put(*[item(f"u{n}", "example.com", "alice", "acme") for n in range(30)])
    env = daemon_env(world, root)
    assert run_cli("once", env=env).returncode == 0
    for n in range(20):
        world.delete_row(f"u{n}@acme.example.com")
    refused = run_cli("once", env=env)
    assert refused.returncode == 1
    assert b"reconfigure once --force" in refused.stdout
    assert (root / "etc/mail/virtusertable").read_text().count("\n") == 30
    assert run_cli("once", "--force", env=env).returncode == 0
    assert (root / "etc/mail/virtusertable").read_text().count("\n") == 10
