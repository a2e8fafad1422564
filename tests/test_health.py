"""`reconfigure health` on fresh, stale, failed and missing status files."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconfigure import health, status
from reconfigure.report import CycleReport


def run_health(root: Path, interval: str = "900") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONFIGURE_")}
    env.update(RECONFIGURE_ROOT=str(root), RECONFIGURE_INTERVAL=interval)
    return subprocess.run([sys.executable, "-m", "reconfigure", "health"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def status_file(root: Path) -> Path:
    return root / "var/lib/reconfigure/status.json"


def test_fresh_success_is_healthy(tmp_path: Path) -> None:
    status.record(status_file(tmp_path), CycleReport("imap", "h", "timer"), addresses=3)
    result = run_health(tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("ok")


def test_stale_success_is_unhealthy(tmp_path: Path) -> None:
    status.record(status_file(tmp_path), CycleReport("imap", "h", "timer"), addresses=3,
                  now=time.time() - 2 * 60 - 5)
    assert run_health(tmp_path, interval="60").returncode == 1
    assert run_health(tmp_path, interval="900").returncode == 0


def test_failed_last_cycle_is_unhealthy_and_recovers(tmp_path: Path) -> None:
    path = status_file(tmp_path)
    status.record(path, CycleReport("imap", "h", "timer"), addresses=3)
    status.record(path, CycleReport("imap", "h", "message", error="AccessDenied: no"),
                  addresses=None)
    result = run_health(tmp_path)
    assert result.returncode == 1 and "AccessDenied" in result.stdout
    status.record(path, CycleReport("imap", "h", "timer"), addresses=3)
    assert run_health(tmp_path).returncode == 0
    assert health.load(path)["failures"] == 1


@pytest.mark.parametrize("content", [None, "", "not json", "[]"])
def test_missing_or_broken_status_is_unhealthy(tmp_path: Path, content: str | None) -> None:
    if content is not None:
        status_file(tmp_path).parent.mkdir(parents=True)
        status_file(tmp_path).write_text(content)
    result = run_health(tmp_path)
    assert result.returncode == 1 and "no successful cycle" in result.stdout


HEAVY = ("boto3", "botocore", "jinja2", "requests", "structlog", "tenacity")


@pytest.mark.parametrize("command", ["health", "status"])
def test_health_and_status_load_the_standard_library_only(tmp_path: Path, command: str) -> None:
    """They run every minute in the container: no AWS, template or logging libraries."""
    probe = (
        "import sys\n"
        "from reconfigure.cli import main\n"
        f"code = main([{command!r}])\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print('LOADED', loaded)\n"
    )
    env = {**os.environ, "RECONFIGURE_ROOT": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                            text=True, timeout=30, check=False)
    assert "LOADED []" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("argv", [["health", "--bogus"], ["status", "--bogus"],
                                  ["health"]])
def test_health_and_status_never_exit_2(tmp_path: Path, argv: list[str]) -> None:
    """Docker reserves a HEALTHCHECK's exit code 2: a usage or settings error is 1."""
    env = {**os.environ, "RECONFIGURE_ROOT": str(tmp_path), "RECONFIGURE_INTERVAL": "soon"}
    result = subprocess.run([sys.executable, "-m", "reconfigure", *argv], env=env,
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
