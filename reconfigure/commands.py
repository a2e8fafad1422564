"""Running external programs: argument lists, a timeout, and an early end on shutdown.

The one way the daemon runs a process (makemap, newaliases, useradd, groupadd): never
through a shell, output captured for the one-line error, and the child killed at once
when the daemon is asked to stop.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

_POLL = 0.05  # how quickly a running command notices that the daemon is stopping


class CommandFailed(RuntimeError):
    """A command exited non-zero, timed out or could not start; str() is one line."""


class Stopped(RuntimeError):
    """The daemon is stopping; the command was ended before it finished."""


class Runner(Protocol):
    """What runs a command: `run` below, or a test's recorder around it."""

    def __call__(self, argv: Sequence[str], *, timeout: float, stdin: Path | None = None,
                 stop: threading.Event | None = None) -> str: ...


def run(argv: Sequence[str], *, timeout: float, stdin: Path | None = None,
        stop: threading.Event | None = None) -> str:
    """Run argv (never through a shell); its merged output, or CommandFailed."""
    program = Path(argv[0]).name
    if stop is not None and stop.is_set():
        # Checked before each start, not only while waiting: a run of quick commands
        # (one useradd per account) would otherwise never notice the stop.
        raise Stopped(program)
    with tempfile.TemporaryFile() as output, \
            open(stdin or "/dev/null", "rb") as source:
        try:
            process = subprocess.Popen(list(argv), stdin=source, stdout=output,
                                       stderr=subprocess.STDOUT)
        except OSError as error:
            raise CommandFailed(f"{program}: cannot run: {error.strerror}") from None
        deadline = time.monotonic() + timeout
        while True:
            try:
                process.wait(timeout=_POLL if stop is not None else timeout)
                break
            except subprocess.TimeoutExpired:
                if stop is not None and stop.is_set():
                    _end(process)
                    raise Stopped(program) from None
                if time.monotonic() >= deadline:
                    _end(process)
                    raise CommandFailed(f"{program} timed out after {timeout:g} s") from None
        output.seek(0)
        text = output.read().decode(errors="replace").strip()
    if process.returncode != 0:
        detail = text.splitlines()[-1] if text else "no output"
        raise CommandFailed(f"{program} exited {process.returncode}: {detail[:200]}")
    return text


def _end(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.wait()
