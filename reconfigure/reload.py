"""Signals to running daemons, each only when one of its files changed (SPEC §5).

A pid is trusted only when its command line names the daemon: a stale pid file must
never make us signal an unrelated process that reused the pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def read_pid(pid_file: Path) -> int | None:
    """The first line of a pid file; None when the file is missing (daemon not running)."""
    try:
        first = pid_file.read_text(errors="replace").split("\n", 1)[0].strip()
    except FileNotFoundError:
        return None
    if not first.isascii() or not first.isdigit() or int(first) <= 1:
        raise ValueError(f"{pid_file}: first line is not a process id")
    return int(first)


def _command_line(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace")


def signal_daemon(pid_file: Path, signum: signal.Signals, name: str) -> int | None:
    """Send `signum` to the daemon named in `pid_file`; its pid, or None if not running."""
    pid = read_pid(pid_file)
    if pid is None:
        return None
    command_line = _command_line(pid)
    if command_line is None:
        return None  # stale pid file: the daemon is not running
    if name not in command_line:
        raise ValueError(f"{pid_file}: pid {pid} is not {name} (stale pid file?)")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
        return pid
    return None
