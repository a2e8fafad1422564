"""What the box looks at, from inside its namespaces: SMTP answers, listening sockets, pids,
opendkim's milter answers. Each probe is one short, bounded look; the box polls them."""

from __future__ import annotations

import smtplib
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

SMTP_PORT = 25
MILTER_SOCKET = "inet:8891@127.0.0.1"
SIGN_SCRIPT = Path(__file__).with_name("sign.lua")
SENDER = "someone@sender.example.net"  # resolvable through the box's /etc/hosts

T = TypeVar("T")


class TimedOut(AssertionError):
    """A poll that did not see its condition before its deadline."""


def poll(probe: Callable[[], T], done: Callable[[T], bool], *, timeout: float,
         what: str, every: float = 0.02) -> tuple[T, float]:
    """Probe until `done` holds: (last value, seconds it took). TimedOut names the last value."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        value = probe()
        if done(value):
            return value, time.monotonic() - started
        if time.monotonic() >= deadline:
            raise TimedOut(f"{what}: not seen within {timeout:g} s (last: {value!r})")
        time.sleep(every)


@dataclass(frozen=True)
class Reply:
    code: int  # 0: no SMTP answer at all (refused, reset, timed out)
    text: str


def rcpt(address: str, *, sender: str = SENDER, timeout: float = 5.0) -> Reply:
    """A fresh SMTP session up to RCPT TO. A new session each time: a session's sendmail
    child keeps the maps it opened, so only a new one sees a renamed map."""
    try:
        with smtplib.SMTP("127.0.0.1", SMTP_PORT, timeout=timeout) as session:
            code, text = session.ehlo("client.cabal.example")
            if code != 250:
                return Reply(code, f"EHLO: {text.decode(errors='replace')}")
            code, text = session.mail(sender)
            if code != 250:
                return Reply(code, f"MAIL: {text.decode(errors='replace')}")
            code, text = session.rcpt(address)
            return Reply(code, text.decode(errors="replace"))
    except (OSError, smtplib.SMTPException) as error:
        return Reply(0, f"{type(error).__name__}: {error}")


def listening_inode(port: int) -> int | None:
    """The inode of the socket listening on 127.0.0.1:port, from /proc/net/tcp."""
    local = f"0100007F:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[3] == "0A":  # 0A: LISTEN
            return int(fields[9])
    return None


def socket_owners(inode: int) -> set[int]:
    """The processes holding a socket open."""
    target = f"socket:[{inode}]"
    owners = set()
    for process in Path("/proc").iterdir():
        if not process.name.isdigit():
            continue
        try:
            for fd in (process / "fd").iterdir():
                if fd.readlink().as_posix() == target:
                    owners.add(int(process.name))
                    break
        except OSError:
            continue
    return owners


def pid_from(pid_file: Path) -> int | None:
    try:
        first = pid_file.read_text().split("\n", 1)[0].strip()
    except FileNotFoundError:
        return None
    return int(first) if first.isdigit() else None


def alive(pid: int | None) -> bool:
    """Running (a zombie is not): the state letter after the command name in /proc/pid/stat."""
    if pid is None:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@dataclass(frozen=True)
class Listener:
    """A listening socket and who holds it."""

    inode: int
    pids: frozenset[int]


def listener(port: int) -> Listener | None:
    inode = listening_inode(port)
    if inode is None:
        return None
    return Listener(inode, frozenset(socket_owners(inode)))


@dataclass(frozen=True)
class Signing:
    ok: bool  # the answer was the expected one
    output: str


def milter_sign(sender: str, expect: str | None, *, timeout: float = 10.0) -> Signing:
    """One message From `sender` through opendkim's milter; `expect` is the d= domain the
    signature must carry, or None for no signature."""
    argv = ["miltertest", "-s", str(SIGN_SCRIPT), "-D", f"socket={MILTER_SOCKET}",
            "-D", f"from={sender}", "-D", f"expect={expect or 'none'}"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        return Signing(False, f"miltertest timed out after {timeout:g} s")
    return Signing(done.returncode == 0, (done.stdout + done.stderr).strip())
