"""The one process runner: a timeout and a stop both end the child for real."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from reconfigure import commands


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_command_that_outlives_its_timeout_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    started = time.monotonic()
    with pytest.raises(commands.CommandFailed, match=r"^sh timed out after 0.5 s$"):
        commands.run(["/bin/sh", "-c", f"echo $$ > {pid_file}; exec sleep 30"], timeout=0.5)
    assert time.monotonic() - started < 5
    assert not alive(int(pid_file.read_text()))


def test_stop_ends_a_running_command(tmp_path: Path) -> None:
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    with pytest.raises(commands.Stopped):
        commands.run(["/bin/sleep", "30"], timeout=60, stop=stop)
    assert time.monotonic() - started < 2


def test_a_stop_already_set_starts_no_command(tmp_path: Path) -> None:
    """Quick commands in a row (one useradd per account) each finish inside one poll
    interval: the stop must be seen before the next one starts, not only while waiting."""
    stop, marker = threading.Event(), tmp_path / "ran"
    stop.set()
    with pytest.raises(commands.Stopped):
        commands.run(["/usr/bin/touch", str(marker)], timeout=5, stop=stop)
    assert not marker.exists()


def test_failures_are_one_line() -> None:
    with pytest.raises(commands.CommandFailed, match=r"^sh exited 3: last$"):
        commands.run(["/bin/sh", "-c", "echo first; echo last; exit 3"], timeout=5)
    with pytest.raises(commands.CommandFailed, match=r"^nope: cannot run: No such file"):
        commands.run(["/nonexistent/nope"], timeout=5)
    assert commands.run(["/bin/sh", "-c", "echo ok"], timeout=5) == "ok"
