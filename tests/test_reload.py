"""The reloader against real processes: pid files, executables, readability, sendmail's
return after its signal, and owed reloads that outlive the process (docs/design.md §5)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog

from reconfigure import files, status
from reconfigure.reload import (
    Reloader,
    ReloadError,
    ReloadFailed,
    inspect,
    read_pid,
    unreadable,
)
from reconfigure.settings import Settings, from_env
from reconfigure.tiers import Reload
from tests.support.world import named_interpreter, wait_for

Starter = Callable[[str], "subprocess.Popen[bytes]"]
NOBODY = 65534
SENDMAIL_PID = "var/run/sendmail.pid"
OPENDKIM_PID = "var/run/opendkim/opendkim.pid"


def settings_for(root: Path, tier: str = "smtp-out", **extra: str) -> Settings:
    env = {"TIER": tier, "CERT_DOMAIN": "cabal.example", "RECONFIGURE_ROOT": str(root),
           **extra}
    return from_env(env, need_aws=False)


@pytest.fixture
def root() -> Iterator[Path]:
    """A root every user may traverse (pytest's own tmp dirs are 0700 root), so that a
    process running as nobody is refused by the file's mode, not by a parent directory."""
    path = Path(tempfile.mkdtemp(prefix="reconfigure-reload-"))
    for name in ("etc/opendkim", "etc/mail", "var/run/opendkim", "var/lib"):
        (path / name).mkdir(parents=True)
    for directory in [path, *path.rglob("*")]:
        directory.chmod(0o755)
    yield path
    shutil.rmtree(path)


def spawn(argv: list[str], executable: Path | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, executable=executable, stdin=subprocess.DEVNULL)


def owed_on_disk(settings: Settings) -> list[str]:
    return status.read_owed(settings.path(settings.status_file))


# --- pid files -------------------------------------------------------------------------

@pytest.mark.parametrize(("content", "says"), [
    ("", "empty first line"),
    ("\n12\n", "empty first line"),
    ("garbage\n", "'garbage' is not a process id"),
    ("-5\n", "'-5' is not a process id"),
    ("0\n", "pid 0 is never signalled"),
    ("1\n", "pid 1 is never signalled"),
    ("99999999999\n", "beyond the system's pid_max"),
    ("9" * 5000 + "\n", "beyond the system's pid_max"),
])
def test_a_malformed_pid_file_is_a_clear_error_and_the_reload_stays_owed(
        root: Path, content: str, says: str) -> None:
    pid_file = root / SENDMAIL_PID
    pid_file.write_text(content)
    with pytest.raises(ReloadError, match=str(pid_file)) as raised:
        read_pid(pid_file)
    assert says in str(raised.value)
    settings = settings_for(root)
    reloader = Reloader(settings)
    with pytest.raises(ReloadFailed) as failed:
        reloader.run({Reload.SENDMAIL_RESTART})
    assert says in str(failed.value) and str(pid_file) in str(failed.value)
    assert reloader.owed == {Reload.SENDMAIL_RESTART}
    assert owed_on_disk(settings) == ["sendmail"]


def test_a_pid_beyond_pid_max_is_refused_not_ignored(root: Path) -> None:
    """The largest pid the kernel can hand out, plus one: no process, and a clear error
    rather than a silent "not running"."""
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    (root / SENDMAIL_PID).write_text(f"{pid_max + 1}\n")
    with pytest.raises(ReloadError, match="pid_max"):
        read_pid(root / SENDMAIL_PID)


@pytest.mark.parametrize(("reload", "pid_file", "daemon", "log"), [
    (Reload.SENDMAIL_RESTART, SENDMAIL_PID, "sendmail", "sendmail.log"),
    (Reload.OPENDKIM_RELOAD, OPENDKIM_PID, "opendkim", "opendkim.log"),
])
def test_a_tail_of_the_daemons_log_named_in_its_pid_file_is_never_signalled(
        root: Path, reload: Reload, pid_file: str, daemon: str, log: str) -> None:
    """Its command line mentions the daemon; its executable is tail."""
    (root / log).write_text("")
    tail = spawn(["tail", "-f", str(root / log)])
    try:
        wait_for(lambda: inspect(tail.pid) is not None, what="tail running")
        (root / pid_file).write_text(f"{tail.pid}\n")
        settings = settings_for(root)
        reloader = Reloader(settings)
        with pytest.raises(ReloadFailed) as failed:
            reloader.run({reload})
        assert f"pid {tail.pid} is not {daemon}" in str(failed.value)
        assert "'tail'" in str(failed.value)
        assert tail.poll() is None, "tail was signalled"
        assert reloader.owed == {reload}
        assert owed_on_disk(settings) == [reload.value]
    finally:
        tail.kill()
        tail.wait()


def test_without_access_to_exe_argv0_names_the_process(root: Path, tmp_path: Path) -> None:
    """Another user's /proc/<pid>/exe cannot be read: its argv[0] is taken instead, without
    the process title's suffix sendmail writes ("sendmail: MTA: accepting connections")."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv")
    (root / "sendmail.log").write_text("")
    titled = spawn(["sendmail: MTA: accepting connections", "-c", "import time; "
                    "time.sleep(60)"], executable=Path(sys.executable))
    tail = spawn(["tail", "-f", str(root / "sendmail.log")])
    # The checkout (and its venv) may sit in a directory only root may enter (a CI clone
    # under `mktemp -d`): the unprivileged probe runs the base interpreter on copies, that
    # every user may read, of the package and of the one library it imports (structlog).
    readable = Path(tempfile.mkdtemp(prefix="reconfigure-probe-"))
    try:
        readable.chmod(0o755)
        for package in (Path(__file__).parents[1] / "reconfigure",
                        Path(structlog.__file__).parent):
            shutil.copytree(package, readable / package.name, symlinks=True)
        code = ("import sys; sys.path.insert(0, sys.argv[1]); "
                "from reconfigure.reload import executable_name as n; "
                "print(n(int(sys.argv[2])), n(int(sys.argv[3])))")
        out = subprocess.run(
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
             getattr(sys, "_base_executable", sys.executable), "-I", "-c", code,
             str(readable), str(titled.pid), str(tail.pid)],
            capture_output=True, text=True, check=True, cwd="/").stdout
        assert out.split() == ["sendmail", "tail"]
    finally:
        shutil.rmtree(readable, ignore_errors=True)
        for process in (titled, tail):
            process.kill()
            process.wait()


# --- can the daemon read what it re-reads ------------------------------------------------

def named_sleep(name: str) -> Path:
    """`sleep` under the daemon's name, in a directory every user may enter."""
    directory = Path(tempfile.gettempdir()) / "reconfigure-fake-daemons" / "sleep"
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    directory.parent.chmod(0o755)
    target = directory / name
    if not target.exists():
        temp = directory / f".{name}.{os.getpid()}"
        shutil.copy2("/usr/bin/sleep", temp)
        os.replace(temp, target)
    return target


@pytest.fixture
def opendkim_as_nobody(root: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real process named opendkim running as nobody:nogroup, no supplementary groups.
    SIGUSR1 kills `sleep`: its exit shows the signal was sent."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv")
    process = spawn(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                     str(named_sleep("opendkim")), "60"])
    wait_for(lambda: (p := inspect(process.pid)) is not None and p.name == "opendkim"
             and p.uid == NOBODY, what="opendkim as nobody")
    (root / OPENDKIM_PID).write_text(f"{process.pid}\n")
    yield process
    process.kill()
    process.wait()


def test_a_keytable_opendkim_cannot_read_fails_its_reload_naming_the_file(
        root: Path, opendkim_as_nobody: subprocess.Popen[bytes]) -> None:
    keytable = root / "etc/opendkim/KeyTable"
    keytable.write_text("x._domainkey.example x.example:x:/etc/opendkim/keys/x\n")
    keytable.chmod(0o600)  # root:root 0600, as a replaced file once came out
    (root / "etc/opendkim/SigningTable").write_text("*@x.example x._domainkey.example\n")
    settings = settings_for(root)
    reloader = Reloader(settings)
    with pytest.raises(ReloadFailed) as failed:
        reloader.run({Reload.OPENDKIM_RELOAD})
    assert f"cannot read {keytable}" in str(failed.value)
    assert "mode 0600, owner 0:0" in str(failed.value)
    assert opendkim_as_nobody.poll() is None, "signalled although it cannot read the file"
    assert owed_on_disk(settings) == ["opendkim"]

    os.chown(keytable, 0, NOBODY)  # opendkim's group may read it now
    keytable.chmod(0o640)
    assert reloader.run(set()) == ["opendkim:USR1"]
    assert opendkim_as_nobody.wait(5) == -signal.SIGUSR1
    assert reloader.owed == set() and owed_on_disk(settings) == []


def test_readability_follows_owner_group_and_other_bits(
        root: Path, opendkim_as_nobody: subprocess.Popen[bytes]) -> None:
    process = inspect(opendkim_as_nobody.pid)
    assert process is not None
    table = root / "etc/opendkim/SigningTable"
    table.write_text("x\n")
    cases = [((NOBODY, 0, 0o400), True), ((0, NOBODY, 0o040), True), ((0, 0, 0o604), True),
             ((0, 0, 0o640), False), ((NOBODY, NOBODY, 0o044), False)]  # owner bits rule
    for (owner, group, mode), readable in cases:
        os.chown(table, owner, group)
        table.chmod(mode)
        assert (unreadable(process, table) is None) is readable, (owner, group, oct(mode))
    table.chmod(0o644)
    (root / "etc/opendkim").chmod(0o750)
    assert "directory" in (unreadable(process, table) or "")


# --- sendmail must be back after its signal ----------------------------------------------

FAKE_SENDMAIL = """
import os, signal, sys, time
EXE = os.readlink("/proc/self/exe")
ARGV = open("/proc/self/cmdline", "rb").read().split(b"\\0")[:-1]
pid_file, on_hup = sys.argv[1], sys.argv[2]
def hup(signum, frame):
    if on_hup == "reexec":
        os.execv(EXE, ARGV)  # as sendmail re-execs itself, same pid
    os._exit(0)  # gone for good: nothing restarts it
signal.signal(signal.SIGHUP, hup)
time.sleep(0.2)  # a start-up: sockets, then the pid file
with open(pid_file + ".new", "w") as f:
    f.write(f"{os.getpid()}\\n/usr/sbin/sendmail -bD\\n")
os.replace(pid_file + ".new", pid_file)
while True:
    time.sleep(3600)
"""


@pytest.fixture
def fake_sendmail(root: Path) -> Iterator[Starter]:
    started: list[subprocess.Popen[bytes]] = []

    def start(on_hup: str) -> subprocess.Popen[bytes]:
        pid_file = root / SENDMAIL_PID
        before = pid_file.read_bytes() if pid_file.exists() else None
        process = spawn(["sendmail", "-c", FAKE_SENDMAIL, str(pid_file), on_hup],
                        executable=named_interpreter("sendmail"))
        started.append(process)
        wait_for(lambda: pid_file.exists() and pid_file.read_bytes() != before
                 and pid_file.read_text().split()[0] == str(process.pid), what="pid file")
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


def test_hup_is_confirmed_once_sendmail_has_re_executed_and_rewritten_its_pid_file(
        root: Path, fake_sendmail: Starter) -> None:
    sendmail = fake_sendmail("reexec")
    settings = settings_for(root, "smtp-in", RECONFIGURE_SENDMAIL_SIGNAL="HUP")
    mtime = (root / SENDMAIL_PID).stat().st_mtime_ns
    assert Reloader(settings).run({Reload.SENDMAIL_RESTART}) == ["sendmail:HUP"]
    assert (root / SENDMAIL_PID).stat().st_mtime_ns != mtime  # it waited for the rewrite
    assert sendmail.poll() is None
    assert read_pid(root / SENDMAIL_PID) == sendmail.pid  # re-executed in place


def test_a_sendmail_that_is_not_back_fails_the_reload_until_one_is(
        root: Path, fake_sendmail: Starter) -> None:
    fake_sendmail("exit")
    settings = settings_for(root, "smtp-in", RECONFIGURE_SENDMAIL_SIGNAL="HUP",
                            RECONFIGURE_SENDMAIL_BACK_TIMEOUT="1")
    reloader = Reloader(settings)
    started = time.monotonic()
    with pytest.raises(ReloadFailed, match="not back within 1 s after HUP"):
        reloader.run({Reload.SENDMAIL_RESTART})
    assert time.monotonic() - started < 5
    assert owed_on_disk(settings) == ["sendmail"]
    with pytest.raises(ReloadFailed, match="not running since the HUP"):
        reloader.run(set())  # still gone: not a silent "not running"
    replacement = fake_sendmail("reexec")  # supervisord (or an operator) starts one
    assert reloader.run(set()) == ["sendmail:back"]  # it read the new files at its start
    assert replacement.poll() is None and owed_on_disk(settings) == []


def test_stopping_while_waiting_for_sendmail_is_prompt_and_leaves_it_owed(
        root: Path, fake_sendmail: Starter) -> None:
    fake_sendmail("exit")
    settings = settings_for(root, "smtp-in", RECONFIGURE_SENDMAIL_SIGNAL="HUP",
                            RECONFIGURE_SENDMAIL_BACK_TIMEOUT="60")
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="waiting for sendmail"):
        Reloader(settings).run({Reload.SENDMAIL_RESTART}, stop)
    assert time.monotonic() - started < 2
    assert owed_on_disk(settings) == ["sendmail"]


# --- owed reloads outlive the process ----------------------------------------------------

def test_owed_reloads_are_read_by_a_new_process_and_done_in_its_first_run(
        root: Path) -> None:
    settings = settings_for(root)
    (root / SENDMAIL_PID).write_text("garbage\n")
    first = Reloader(settings)
    with pytest.raises(ReloadFailed):
        first.run({Reload.SENDMAIL_RESTART, Reload.OPENDKIM_RELOAD})
    assert owed_on_disk(settings) == ["sendmail"]  # opendkim: not running, nothing owed
    (root / SENDMAIL_PID).unlink()
    code = ("import sys; from reconfigure.reload import Reloader; "
            "from reconfigure.settings import from_env; "
            "r = Reloader(from_env({'TIER': 'smtp-out', 'CERT_DOMAIN': 'cabal.example', "
            f"'RECONFIGURE_ROOT': {str(root)!r}}}, need_aws=False)); "
            "print(sorted(x.value for x in r.owed), r.run(set()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['sendmail'] ['sendmail:not-running']"
    assert owed_on_disk(settings) == []


def test_a_daemon_sweeps_only_its_own_temp_names(tmp_path: Path) -> None:
    mail = tmp_path / "etc/mail"
    mail.mkdir(parents=True)
    ours = [mail / ".access.k2x9_abc.tmp", mail / ".access.k2x9_abc.tmp.db",
            mail / ".virtusertable.zz.tmp", tmp_path / "etc/.aliases.q1.tmp.db"]
    theirs = [mail / "access", mail / "access.db", mail / ".access.db", mail / "notes.tmp",
              mail / ".other.x.tmp", mail / ".access.swp", tmp_path / "etc/aliases"]
    for path in ours + theirs:
        path.write_text("x")
    removed = files.sweep([mail / "access", mail / "virtusertable", tmp_path / "etc/aliases"])
    assert sorted(removed) == sorted(ours)
    assert all(p.exists() for p in theirs) and not any(p.exists() for p in ours)


def test_a_failed_atomic_write_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "status.json"
    target.mkdir()
    for _ in range(3):
        with pytest.raises(IsADirectoryError):
            files.atomic_write(target, b"{}\n")
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]
