"""The real makemap, run the way the daemon runs it: the map's text in a file on its stdin.

A pipe on stdin ends only when every copy of its write end is closed (a process forked by
another thread of the test run while it is open holds one); a file always ends. The
deadline is generous: the test machines keep little page cache, so a process start can
wait on the disk.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

MAKEMAP = shutil.which("makemap") or "/usr/sbin/makemap"
EMPTY_CF = "# empty: makemap needs no options from a cf\n"  # no TrustedUser from the machine's
WORLD_WRITABLE = "WARNING: World writable directory"  # /tmp's, which makemap only mentions


def _where(pid: int) -> str:
    """What a process is blocked in, for a failure message."""
    seen = []
    for name in ("wchan", "syscall"):
        try:
            seen.append(f"{name}={Path(f'/proc/{pid}/{name}').read_text().strip()}")
        except OSError as error:
            seen.append(f"{name}: {error}")
    try:
        seen.append(f"stdin={os.readlink(f'/proc/{pid}/fd/0')}")
    except OSError as error:
        seen.append(f"stdin: {error}")
    return " ".join(seen)


def makemap(directory: Path, name: str, data: bytes,
            timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """`makemap hash directory/name` of `data`, with an empty cf (no TrustedUser from the
    machine's); on a timeout the error says where makemap was stuck."""
    cf = directory / "sendmail.cf"
    if not cf.exists():
        cf.write_text(EMPTY_CF)
    source = directory / name
    source.write_bytes(data)
    argv = [MAKEMAP, "-C", str(cf), "hash", str(directory / f"{name}.db")]
    with source.open("rb") as stdin, subprocess.Popen(
            argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            where = _where(process.pid)
            process.kill()
            process.communicate()
            raise AssertionError(f"makemap still running after {timeout} s: {where}") from None
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


def makemap_errors(directory: Path, name: str, data: bytes) -> str:
    """"" when makemap compiles `data`, else its exit status and complaints."""
    done = makemap(directory, name, data)
    complaints = [line for line in done.stderr.decode(errors="replace").splitlines()
                  if not line.startswith(WORLD_WRITABLE)]
    return "" if done.returncode == 0 and not complaints else (
        f"exit {done.returncode}: {complaints[:5]}")
