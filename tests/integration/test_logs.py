"""What operators count in CloudWatch: every line one JSON object with the same keys, the
libraries' lines included, and a bad row logged once rather than every cycle."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.items import item
from tests.support.world import (
    REPO,
    AwsWorld,
    cycles,
    daemon_env,
    log_events,
    start_daemon,
    stop_daemon,
    wait_for,
)

KEYS = {"logger", "tier", "level", "event", "timestamp"}


def test_every_line_is_json_with_the_counted_keys_even_from_botocore(
        world: AwsWorld, root: Path) -> None:
    world.put(item("shop", "example.com", "alice", "acme"))
    env = daemon_env(world, root, "smtp-in", RECONFIGURE_LOG_LEVEL="debug")
    result = subprocess.run([sys.executable, "-m", "reconfigure", "once"], env=env,
                            capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in (result.stdout + result.stderr).splitlines()]
    assert all(line.keys() >= KEYS for line in lines), [
        line for line in lines if not line.keys() >= KEYS][:3]
    assert {line["logger"] for line in lines} == {"reconfigure"}
    assert {line["tier"] for line in lines} == {"smtp-in"}
    assert any(str(line.get("source", "")).startswith("botocore") for line in lines)
    assert [line["event"] for line in lines if line["event"] == "cycle done"] == ["cycle done"]


def test_a_bad_setting_for_the_log_level_is_one_line(world: AwsWorld, root: Path) -> None:
    env = daemon_env(world, root, RECONFIGURE_LOG_LEVEL="loud")
    result = subprocess.run([sys.executable, "-m", "reconfigure", "once"], env=env,
                            capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "reconfigure: RECONFIGURE_LOG_LEVEL: must be one of info, debug, warning, error, "
        "got 'loud'"]


def test_a_bad_row_is_logged_when_it_appears_and_counted_every_cycle(
        world: AwsWorld, root: Path, tmp_path: Path,
        daemons: list[subprocess.Popen[bytes]]) -> None:
    world.put(item("shop", "example.com", "alice", "acme"),
              item("bad guy", "example.com", "alice", "acme"))
    log = tmp_path / "daemon.log"
    env = daemon_env(world, root, RECONFIGURE_INTERVAL="1", RECONFIGURE_SCAN_SEGMENTS="4")
    daemons.append(start_daemon(env, log))
    wait_for(lambda: len(cycles(log)) >= 3, timeout=20, what="three cycles")
    world.put(item("worse guy", "example.com", "alice", "acme"))
    count = len(cycles(log))
    wait_for(lambda: len(cycles(log)) >= count + 2, timeout=20, what="two more cycles")
    stop_daemon(daemons[0])
    skipped = [e["address"] for e in log_events(log) if e.get("event") == "row skipped"]
    assert skipped == ["bad guy@acme.example.com", "worse guy@acme.example.com"]
    done = cycles(log)
    assert done[0]["skipped"] == 1 and done[-1]["skipped"] == 2
    # four scan segments in parallel: aws_ms is the read's wall time, never their sum
    assert all(0 < c["aws_ms"] <= c["duration_ms"] for c in done), done
    assert done[-1]["skipped_by_rule"] == {
        "username: contains whitespace or a control character": 2}
