"""What reloads what, the reloads still owed, and the signals that do them.

One signal per daemon however many of its files changed; never HUP to opendkim, for
which HUP means stop. A reload that fails after its files went live stays owed: the
files now match the render, so no later plan would ask for it again.
A pid is trusted only when its command line names the daemon: a stale pid file must
never make us signal an unrelated process that reused the pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reconfigure import commands, files
from reconfigure.settings import Settings
from reconfigure.tiers import ALIASES, Reload


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


def newaliases_argv(base: Sequence[str], root: Path) -> list[str]:
    """Under a test or demo root, point sendmail at that root's alias file."""
    if root == Path("/"):
        return list(base)
    return [*base, f"-oA{files.under(root, ALIASES)}"]


@dataclass(frozen=True, slots=True)
class _Signal:
    pid_file: str
    daemon: str
    signame: str


class ReloadFailed(RuntimeError):
    """Some reloads failed (they stay owed); `done` lists the ones that worked."""

    def __init__(self, errors: list[str], done: list[str]) -> None:
        super().__init__("reload failed: " + "; ".join(errors))
        self.done = done


@dataclass
class Reloader:
    settings: Settings
    owed: set[Reload] = field(default_factory=set)

    def _signals(self) -> dict[Reload, _Signal]:
        settings = self.settings
        return {
            Reload.SENDMAIL_RESTART: _Signal(settings.sendmail_pid_file, "sendmail",
                                             settings.sendmail_signal),
            Reload.OPENDKIM_RELOAD: _Signal(settings.opendkim_pid_file, "opendkim", "USR1"),
        }

    def run(self, reloads: set[Reload], stop: threading.Event | None = None) -> list[str]:
        """Do `reloads` and whatever is owed; what was done ("newaliases", "sendmail:HUP",
        "opendkim:not-running"). Raises ReloadFailed when any failed (those stay owed)."""
        settings = self.settings
        self.owed |= reloads
        done, errors = [], []
        if Reload.NEWALIASES in self.owed:
            try:
                commands.run(newaliases_argv(settings.newaliases, settings.root),
                             timeout=settings.command_timeout)
                self.owed.discard(Reload.NEWALIASES)
                done.append("newaliases")
            except commands.CommandFailed as error:
                errors.append(str(error))
        targets = self._signals()
        for reload in sorted(self.owed & targets.keys(), key=lambda r: r.value):
            target = targets[reload]
            try:
                pid = signal_daemon(settings.path(target.pid_file),
                                    signal.Signals[f"SIG{target.signame}"], target.daemon)
            except (OSError, ValueError) as error:
                errors.append(f"{target.daemon}: {error}")
                continue
            self.owed.discard(reload)
            done.append(f"{target.daemon}:{target.signame}" if pid
                        else f"{target.daemon}:not-running")
        if errors:
            raise ReloadFailed(errors, done)
        return done
