"""The one-shot commands an image's entrypoint and an operator use: `users` before Dovecot
starts, a bounded `once`, and `status` for a person."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.test_users_cognito import Pool
from tests.support.accounts import make_account_root, real_tools_available
from tests.support.items import item
from tests.support.world import REPO, AwsWorld, daemon_env, hanging_endpoint, make_root


def cli(*args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "reconfigure", *args], env=env,
                            capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    return result, time.monotonic() - started


@pytest.mark.skipif(not real_tools_available(), reason="needs root, useradd and groupadd")
def test_users_creates_every_account_and_exits_0(world: AwsWorld, tmp_path: Path) -> None:
    root = make_root(make_account_root(tmp_path / "root"))
    pool = Pool(world.client("cognito-idp"))
    pool.admin_created("alice", "70001", confirm=True)
    pool.admin_created("bob", "70002", confirm=True)
    pool.admin_created("root", "70003", confirm=True)  # refused: a system account
    result, _ = cli("users", "--timeout", "30", env=daemon_env(world, root,
                                                                COGNITO_POOL_ID=pool.id))
    assert result.returncode == 0, result.stdout + result.stderr
    passwd = (root / "etc/passwd").read_text()
    assert "alice:x:70001:70001::/home/alice:" in passwd
    assert "bob:x:70002:70002::/home/bob:" in passwd
    assert (root / "home/bob/Maildir").stat().st_uid == 70002
    assert "user refused" in result.stdout
    assert not (root / "var/lib/reconfigure/status.json").exists()  # no cycle ran


def test_users_gives_up_on_time_when_cognito_hangs(world: AwsWorld, root: Path) -> None:
    with hanging_endpoint() as hung:
        env = daemon_env(world, root, AWS_ENDPOINT_URL=hung.url, COGNITO_POOL_ID="us-east-1_x")
        result, took = cli("users", "--timeout", "3", env=env)
    assert result.returncode == 1
    assert took < 3 + 5  # the promise: bounded by the timeout (plus start-up)
    assert result.stderr.strip().splitlines() == [
        "reconfigure users: not finished within 3 s (Cognito unreachable or slow)"]


def test_users_refuses_a_tier_without_users(world: AwsWorld, root: Path) -> None:
    result, _ = cli("users", env=daemon_env(world, root, "smtp-in", COGNITO_POOL_ID="x"))
    assert result.returncode == 2
    assert result.stderr == "reconfigure: TIER: smtp-in has no OS users\n"


def test_once_with_a_timeout_is_bounded_and_leaves_nothing_half_done(
        world: AwsWorld, root: Path) -> None:
    with hanging_endpoint() as hung:
        env = daemon_env(world, root, AWS_ENDPOINT_URL=hung.url)
        result, took = cli("once", "--timeout", "2", env=env)
    assert result.returncode == 1
    assert took < 2 + 5
    assert "timed out after 2 s" in result.stderr
    assert not list((root / "etc/mail").iterdir())


def test_status_for_a_person_and_for_scripts(world: AwsWorld, root: Path) -> None:
    env = daemon_env(world, root)
    result, _ = cli("status", env=env)
    assert result.returncode == 1
    assert "no cycle has finished" in result.stdout
    world.put(item("shop", "example.com", "alice", "acme"), item("bad guy", "example.com",
                                                                  "alice", "acme"))
    assert cli("once", env=env)[0].returncode == 0
    result, _ = cli("status", env=env)
    assert result.returncode == 0
    text = result.stdout
    assert "health:         healthy" in text
    assert "trigger once, ok" in text
    assert "rows:           2 read, 1 skipped" in text
    assert "username: contains whitespace or a control character" in text
    assert "/etc/mail/virtusertable" in text
    assert "queue:          once" in text
    scripted, _ = cli("status", "--json", env=env)
    data = json.loads(scripted.stdout)
    assert data["last_cycle"]["rows"] == 2 and data["addresses"] == 1
