"""What an operator and a hostile environment can do to a cycle: a forced run beside a
running daemon, a corrupt status file, an AWS request that never answers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from pytest_httpserver import HTTPServer

from tests.support.items import item
from tests.support.world import (
    REPO,
    AwsWorld,
    cycles,
    daemon_env,
    hanging_endpoint,
    start_daemon,
    stop_daemon,
    wait_for,
)

ROWS = 30  # above the guard's minimum of 20


def seed(world: AwsWorld) -> None:
    world.put(*(item(f"user{i}", "example.com", "alice", "acme") for i in range(ROWS)))


def shrink(world: AwsWorld, keep: int) -> None:
    """One request (at most 25 deletes), so a running daemon never sees half of it."""
    world.client("dynamodb").batch_write_item(RequestItems={world.table: [
        {"DeleteRequest": {"Key": {"address": {"S": f"user{i}@acme.example.com"}}}}
        for i in range(keep, ROWS)]})


def once(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconfigure", "once", *args], env=env,
                          capture_output=True, text=True, timeout=60, cwd=REPO, check=False)


def status(root: Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(
        (root / "var/lib/reconfigure/status.json").read_text())
    return loaded


def virtusertable_lines(root: Path) -> int:
    return len((root / "etc/mail/virtusertable").read_text().splitlines())


def test_once_force_unblocks_a_running_daemon(
        world: AwsWorld, root: Path, tmp_path: Path,
        daemons: list[subprocess.Popen[bytes]]) -> None:
    seed(world)
    log = tmp_path / "daemon.log"
    env = daemon_env(world, root, RECONFIGURE_INTERVAL="1")
    del env["SQS_QUEUE_URL"]
    daemons.append(start_daemon(env, log))
    wait_for(lambda: cycles(log), what="startup cycle")
    shrink(world, keep=5)
    wait_for(lambda: cycles(log, event="cycle failed"), what="the guard tripping")
    assert "nothing applied" in cycles(log, event="cycle failed")[-1]["error"]
    assert virtusertable_lines(root) == ROWS

    forced = once(env, "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    done_before = len(cycles(log))
    # The running daemon now applies the smaller table too, and keeps the forced count.
    wait_for(lambda: len(cycles(log)) > done_before + 1, timeout=15,
             what="daemon cycles succeeding after the forced run")
    assert status(root)["addresses"] == 5
    assert virtusertable_lines(root) == 5
    code, took = stop_daemon(daemons[0])
    assert code == 0 and took <= 2.0


def test_a_corrupt_status_file_does_not_switch_the_guard_off(
        world: AwsWorld, root: Path) -> None:
    seed(world)
    env = daemon_env(world, root)
    assert once(env).returncode == 0
    (root / "var/lib/reconfigure/status.json").write_text("{not json")
    shrink(world, keep=3)
    result = once(env)
    assert result.returncode == 1
    assert "nothing applied" in result.stdout
    assert virtusertable_lines(root) == ROWS  # the live maps are the reference


def test_sigterm_during_a_hung_aws_request_stops_within_2_s(
        world: AwsWorld, root: Path, tmp_path: Path,
        daemons: list[subprocess.Popen[bytes]]) -> None:
    log = tmp_path / "daemon.log"
    with hanging_endpoint() as hung:
        env = daemon_env(world, root, AWS_ENDPOINT_URL=hung.url)
        del env["SQS_QUEUE_URL"]
        daemons.append(start_daemon(env, log))
        wait_for(lambda: hung.held, what="the scan request in flight")
        code, took = stop_daemon(daemons[0])
    assert code == 0
    assert took <= 2.0


def test_an_unreachable_table_fails_the_cycle_by_its_deadline(
        world: AwsWorld, root: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hc/fail").respond_with_data("OK")
    with hanging_endpoint() as hung:
        env = daemon_env(world, root, AWS_ENDPOINT_URL=hung.url, RECONFIGURE_READ_DEADLINE="5",
                         HEALTHCHECK_PING_URL=httpserver.url_for("/hc"))
        started = time.monotonic()
        result = once(env)
        took = time.monotonic() - started
    assert result.returncode == 1
    assert took < 30
    assert "sources not read within 5 s" in result.stdout
    last = status(root)["last_cycle"]
    assert isinstance(last, dict) and last["ok"] is False
    fail = wait_for(lambda: [r for r, _ in httpserver.log if r.path == "/hc/fail"])[0]
    assert "sources not read within 5 s" in fail.get_data(as_text=True)
