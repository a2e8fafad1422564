"""What reloads what, the reloads still owed, and the signals that do them (docs/design.md §5).

One signal per daemon however many of its files changed; never HUP to opendkim, for
which HUP means stop. A reload that fails after its files went live stays owed until it
succeeds: the files now match the render, so no later plan would ask for it again. What is
owed is kept in the status file as well as in memory, so a process killed between a swap
and its signals leaves the debt to the next one.

A pid is trusted only when its executable is the daemon's (`/proc/<pid>/exe`, or argv[0]
when that cannot be read), never a substring of a command line: a stale pid file must
never make us signal `tail -f /var/log/sendmail.log` or a process that reused the pid.
Before a signal makes a daemon re-read its files, its process must be able to read them;
after a signal to sendmail, a sendmail must be back (its pid file rewritten, naming a live
sendmail) within RECONFIGURE_SENDMAIL_BACK_TIMEOUT.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reconfigure import commands, files, log, status
from reconfigure.settings import Settings
from reconfigure.tiers import ALIASES, TIERS, Reload

SENDMAIL_NAMES = frozenset({"sendmail", "sendmail-mta", "sm-mta"})  # Debian: libexec/sendmail
OPENDKIM_NAMES = frozenset({"opendkim"})
_POLL = 0.05  # how often a wait for sendmail looks at its pid file
_PID_DIGITS = 10  # longer than any pid_max allows


class ReloadError(RuntimeError):
    """One reload that could not be done; str() is the one line an operator sees."""


def _pid_max() -> int:
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        return 4194304  # the kernel's ceiling


def read_pid(pid_file: Path) -> int | None:
    """The first line of a pid file; None when the file is missing (daemon not running).
    Anything but a plausible pid (empty, garbage, negative, 0, 1, beyond pid_max) is a
    ReloadError naming the file."""
    try:
        raw = pid_file.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ReloadError(f"{pid_file}: cannot read: {error.strerror}") from None
    first = raw.split(b"\n", 1)[0].strip()
    shown = first[:40].decode("ascii", errors="replace")
    if not first:
        raise ReloadError(f"{pid_file}: empty first line, no process id")
    if not first.isdigit():
        raise ReloadError(f"{pid_file}: first line {shown!r} is not a process id")
    if len(first) > _PID_DIGITS or int(first) > _pid_max():
        raise ReloadError(f"{pid_file}: pid {shown} is beyond the system's pid_max")
    pid = int(first)
    if pid <= 1:
        raise ReloadError(f"{pid_file}: pid {pid} is never signalled (not a daemon's pid)")
    return pid


@dataclass(frozen=True, slots=True)
class Process:
    """What a reload needs to know of a running process."""

    pid: int
    name: str  # the executable's file name ("" when neither exe nor argv[0] says)
    uid: int  # the file-system uid and gid, which decide what it may open
    gid: int
    groups: frozenset[int]


def executable_name(pid: int) -> str:
    """The basename of `/proc/<pid>/exe`; argv[0]'s when exe cannot be read (no ptrace
    access), without a process title's suffix ("sendmail: MTA: accepting connections")."""
    try:
        target = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return ""
        argv0 = raw.split(b"\0", 1)[0].decode(errors="replace")
        words = argv0.split(":", 1)[0].split()
        return Path(words[0]).name if words else ""
    return Path(target.removesuffix(" (deleted)")).name


def inspect(pid: int) -> Process | None:
    """The process `pid`, or None when there is none (or only a zombie is left)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    if fields.get("State", "").split()[:1] in (["Z"], ["X"]):
        return None
    try:
        uid = int(fields["Uid"].split()[3])
        gid = int(fields["Gid"].split()[3])
        groups = frozenset(int(g) for g in fields.get("Groups", "").split())
    except (KeyError, IndexError, ValueError):
        return None
    return Process(pid, executable_name(pid), uid, gid, groups)


def _allowed(process: Process, info: os.stat_result, bits: int) -> bool:
    """The owner's, the group's or the others' bits, as the kernel picks them (ACLs aside)."""
    if info.st_uid == process.uid:
        mode = info.st_mode >> 6
    elif info.st_gid == process.gid or info.st_gid in process.groups:
        mode = info.st_mode >> 3
    else:
        mode = info.st_mode
    return mode & bits == bits


def unreadable(process: Process, path: Path) -> str | None:
    """Why `process` could not read `path` (a directory it cannot search, the file's
    mode and owner), or None when it can. uid 0 reads everything."""
    if process.uid == 0:
        return None
    real = Path(os.path.realpath(path))
    for directory in reversed(real.parents):
        info = os.stat(directory)
        if not _allowed(process, info, stat.S_IXOTH):
            return f"directory {directory} is not searchable ({_owner(info)})"
    info = os.stat(real)
    if not _allowed(process, info, stat.S_IROTH):
        return f"{_owner(info)}"
    return None


def _owner(info: os.stat_result) -> str:
    return f"mode {info.st_mode & 0o7777:04o}, owner {info.st_uid}:{info.st_gid}"


def aliases_db(alias_file: Path) -> Path:
    return alias_file.with_name(alias_file.name + ".db")


def rebuild_aliases(base: Sequence[str], root: Path, *, timeout: float,
                    stop: threading.Event | None) -> None:
    """newaliases, atomically: `sendmail -bi -oA<temp copy of /etc/aliases>` builds a temp
    `.db` beside the live one, which is then renamed over `aliases.db`. Killed at any point
    (SIGTERM ends the child at once), the live `aliases.db` is the old one, never missing or
    half-built. A command that builds no `.db` of its own (a site wrapper) is taken at its
    exit status."""
    live = files.under(root, ALIASES)
    try:
        data = live.read_bytes()
    except OSError as error:
        raise commands.CommandFailed(f"newaliases: cannot read {live}: {error.strerror}"
                                     ) from None
    temp = files.stage(live, data)
    temp_db = aliases_db(temp)
    try:
        commands.run([*base, f"-oA{temp}"], timeout=timeout, stop=stop)
        if temp_db.exists():
            files.settle_like(temp_db, aliases_db(live))
            files.swap_in(temp_db, aliases_db(live))
    finally:
        files.discard(temp)
        files.discard(temp_db)


@dataclass(frozen=True, slots=True)
class _Target:
    reload: Reload
    daemon: str
    names: frozenset[str]
    pid_file: Path
    signame: str
    confirm: bool  # wait for the daemon to be back (sendmail re-execs or restarts)


_PidFileState = tuple[int, int, int, bytes] | None


def _pid_file_state(pid_file: Path) -> _PidFileState:
    """Enough of a pid file to tell that it was rewritten."""
    try:
        with open(pid_file, "rb") as handle:
            info = os.fstat(handle.fileno())
            return info.st_ino, info.st_mtime_ns, info.st_ctime_ns, handle.read(64)
    except OSError:
        return None


class ReloadFailed(RuntimeError):
    """Some reloads failed (they stay owed); `done` lists the ones that worked."""

    def __init__(self, errors: list[str], done: list[str]) -> None:
        super().__init__("reload failed: " + "; ".join(errors))
        self.done = done


@dataclass
class Reloader:
    """Does the reloads a swap needs and keeps those it could not do, across cycles and
    across processes (the status file's `owed_reloads`)."""

    settings: Settings
    owed: set[Reload] = field(default_factory=set)
    # Signalled, not yet seen back: the pid file's state just before the signal.
    _unconfirmed: dict[Reload, _PidFileState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.owed |= self._persisted()

    @property
    def store(self) -> Path:
        return self.settings.path(self.settings.status_file)

    def _persisted(self) -> set[Reload]:
        known = {reload.value: reload for reload in Reload}
        return {known[name] for name in status.read_owed(self.store) if name in known}

    def names(self) -> list[str]:
        return sorted(reload.value for reload in self.owed)

    def _save(self, owed: Iterable[Reload]) -> None:
        try:
            status.write_owed(self.store, sorted(reload.value for reload in owed))
        except OSError as error:
            log.get().error("owed reloads not recorded", path=str(self.store),
                            error=f"{type(error).__name__}: {error}")

    def expect(self, reloads: set[Reload]) -> None:
        """Before a swap: record what it will owe, so a process killed mid-swap leaves
        them owed (at worst a reload is done once more than needed)."""
        if reloads - self.owed:
            self._save(self.owed | reloads)

    def owe(self, reloads: set[Reload]) -> None:
        """After a swap, whole or partial: what went live owes its reloads."""
        self.owed |= reloads
        self._save(self.owed)

    def _targets(self) -> dict[Reload, _Target]:
        settings = self.settings
        return {
            Reload.SENDMAIL_RESTART: _Target(
                Reload.SENDMAIL_RESTART, "sendmail", SENDMAIL_NAMES,
                settings.path(settings.sendmail_pid_file), settings.sendmail_signal, True),
            Reload.OPENDKIM_RELOAD: _Target(
                Reload.OPENDKIM_RELOAD, "opendkim", OPENDKIM_NAMES,
                settings.path(settings.opendkim_pid_file), "USR1", False),
        }

    def run(self, reloads: set[Reload], stop: threading.Event | None = None,
            done: list[str] | None = None) -> list[str]:
        """Do `reloads` and whatever is owed; what was done ("newaliases", "sendmail:HUP",
        "opendkim:not-running"), also appended to `done` as it happens, so a caller keeps
        them whatever is raised. Raises ReloadFailed when any failed (those stay owed), and
        commands.Stopped when the daemon stops first (what is left stays owed)."""
        settings, stop = self.settings, stop or threading.Event()
        done = [] if done is None else done
        first = len(done)
        self.owed |= reloads
        errors = []
        try:
            if Reload.NEWALIASES in self.owed:
                try:
                    rebuild_aliases(settings.newaliases, settings.root,
                                    timeout=settings.command_timeout, stop=stop)
                    self.owed.discard(Reload.NEWALIASES)
                    done.append("newaliases")
                except commands.CommandFailed as error:
                    errors.append(str(error))
            targets = self._targets()
            for reload in sorted(self.owed & targets.keys(), key=lambda r: r.value):
                if stop.is_set():
                    raise commands.Stopped("reloads")
                try:
                    done.append(self._signal(targets[reload], stop))
                    self.owed.discard(reload)
                except (ReloadError, OSError) as error:
                    errors.append(f"{targets[reload].daemon}: {error}")
        finally:
            self._save(self.owed)
        if errors:
            raise ReloadFailed(errors, done[first:])
        return done[first:]

    def _signal(self, target: _Target, stop: threading.Event) -> str:
        """One reload by signal; what was done, or ReloadError."""
        if target.reload in self._unconfirmed and self._back(
                target, self._unconfirmed[target.reload]):
            del self._unconfirmed[target.reload]
            return f"{target.daemon}:back"
        pid = read_pid(target.pid_file)
        handle = _open_process(pid) if pid is not None else None
        try:
            process = inspect(pid) if handle is not None and pid is not None else None
            if process is None or handle is None:
                if target.reload in self._unconfirmed:
                    raise ReloadError(f"not running since the {target.signame} "
                                      f"({target.pid_file} names no live {target.daemon})")
                return f"{target.daemon}:not-running"  # its next start reads the new files
            if process.name not in target.names:
                raise ReloadError(f"{target.pid_file}: pid {process.pid} is not "
                                  f"{target.daemon} (its executable is "
                                  f"{process.name or 'unknown'!r}; stale pid file?)")
            self._check_readable(target, process)
            before = _pid_file_state(target.pid_file)
            try:
                handle.send(signal.Signals[f"SIG{target.signame}"])
            except ProcessLookupError:
                return f"{target.daemon}:not-running"
        finally:
            if handle is not None:
                handle.close()
        if target.confirm:
            self._unconfirmed[target.reload] = before
            self._wait_back(target, before, stop)
            del self._unconfirmed[target.reload]
        return f"{target.daemon}:{target.signame}"

    def _check_readable(self, target: _Target, process: Process) -> None:
        """The daemon re-reads these files as the user it runs as: a file it cannot read
        is one it silently keeps its old copy of, so the reload fails (and stays owed)."""
        tier = TIERS[self.settings.tier]
        for artifact in tier.artifacts:
            if artifact.reload is not target.reload:
                continue
            path = self.settings.path(artifact.path)
            if not path.exists():
                continue
            why = unreadable(process, path)
            if why is not None:
                raise ReloadError(f"pid {process.pid} (uid {process.uid}, gid {process.gid}) "
                                  f"cannot read {path}: {why}; not signalled")

    def _back(self, target: _Target, before: _PidFileState) -> bool:
        """A daemon is back: its pid file was rewritten since the signal and names a live
        process with the daemon's executable (sendmail writes it once it listens)."""
        now = _pid_file_state(target.pid_file)
        if now is None or now == before:
            return False
        try:
            pid = read_pid(target.pid_file)
        except ReloadError:
            return False
        process = inspect(pid) if pid is not None else None
        return process is not None and process.name in target.names

    def _wait_back(self, target: _Target, before: _PidFileState,
                   stop: threading.Event) -> None:
        bound = self.settings.sendmail_back_timeout
        deadline = time.monotonic() + bound
        while not self._back(target, before):
            if stop.wait(_POLL):
                raise commands.Stopped(f"waiting for {target.daemon}")
            if time.monotonic() >= deadline:
                raise ReloadError(f"not back within {bound:g} s after {target.signame}: "
                                  f"{target.pid_file} was not rewritten naming a live "
                                  f"{target.daemon} (RECONFIGURE_SENDMAIL_BACK_TIMEOUT)")


@dataclass(slots=True)
class _Handle:
    """A process held by a pidfd while it is inspected and signalled: the process looked
    at is the one signalled, even if it exits and its pid is reused in between (plain
    kill(2) on kernels without pidfds)."""

    pid: int
    fd: int | None

    def send(self, signum: signal.Signals) -> None:
        if self.fd is None:
            os.kill(self.pid, signum)
        else:
            signal.pidfd_send_signal(self.fd, signum)

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


def _open_process(pid: int) -> _Handle | None:
    """A handle on `pid`, or None when there is no such process."""
    try:
        return _Handle(pid, os.pidfd_open(pid))
    except ProcessLookupError:
        return None
    except OSError:
        return _Handle(pid, None)
