"""One daemon of a tier against moto (through a Gate the test can cut), with a real ping
receiver: what every fault scenario starts from, and the few verbs they share."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request

from tests.faults.gate import Gate
from tests.support.items import item
from tests.support.world import (
    REPO,
    AwsWorld,
    daemon_env,
    log_events,
    start_daemon,
    wait_for,
)

VISIBILITY = 4  # seconds: a message a failed cycle kept comes back within a test's budget
INTERVAL = "3"  # the fallback timer: recovery never waits on a restart
READ_DEADLINE = "5"  # the shortest RECONFIGURE_READ_DEADLINE: an outage fails a cycle fast
PING_PATH = "/hc"
SEED = 5  # rows the live config starts with


def seed_rows(world: AwsWorld) -> None:
    world.put(*(item(f"user{n}", "example.com", "alice", "acme") for n in range(SEED)),
              item("shop", "example.com", "carol/alice", "acme"),
              item("postmaster", "example.org", "alice"))


@dataclass
class Rig:
    world: AwsWorld  # the test's own view of moto (never cut)
    gate: Gate  # what the daemon talks to
    root: Path
    tmp: Path
    tier: str
    pings: HTTPServer
    env: dict[str, str] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    changes: int = 0
    tools: list[Tool] = field(default_factory=list)

    def tool(self, name: str, real: list[str] | None) -> Tool:
        """A wrapper for makemap or newaliases the test can make fail or hang (see Tool)."""
        tool = Tool(self.tmp / name, real).write()
        self.tools.append(tool)
        return tool

    @property
    def log(self) -> Path:
        return self.tmp / "daemon.log"

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.processes[-1]

    # ----- the daemon

    def start(self, **extra: str) -> subprocess.Popen[bytes]:
        """`reconfigure run` as supervisord starts it; `extra` settings override."""
        self.env.update(extra)
        process = start_daemon(self.env, self.log)
        self.processes.append(process)
        return process

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> tuple[int, float]:
        """Send `sig`; (exit status, seconds to exit). A daemon still running 5 s later is
        SIGKILLed and reported as -9, so a hang fails the caller's assert, not the fixture."""
        started = time.monotonic()
        self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        return code, time.monotonic() - started

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(5)

    def once(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`reconfigure once`: the image's startup prep, which builds the first config."""
        env = {**self.env, "AWS_ENDPOINT_URL": self.world.endpoint}
        return subprocess.run([sys.executable, "-m", "reconfigure", "once", *args], env=env,
                              capture_output=True, text=True, timeout=60, cwd=REPO,
                              check=False)

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for tool in self.tools:
            tool.kill()

    # ----- the log

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        events = log_events(self.log)
        return events if name is None else [e for e in events if e.get("event") == name]

    def wait_event(self, name: str, *, after: int = 0, timeout: float = 20.0,
                   where: Callable[[dict[str, Any]], bool] = lambda e: True) -> dict[str, Any]:
        """The first `name` event past the first `after` ones that satisfies `where`."""
        found: dict[str, Any] = wait_for(
            lambda: next((e for e in self.events(name)[after:] if where(e)), None),
            timeout=timeout, what=f"log event {name!r}")
        return found

    def cycles_done(self) -> int:
        return len(self.events("cycle done"))

    # ----- the sources

    def change(self) -> str:
        """A new row and its SNS message on the queue; the virtusertable key it adds."""
        self.changes += 1
        name = f"new{self.changes}"
        self.world.put(item(name, "example.com", "bob", "acme"))
        self.world.notify()
        return f"{name}@acme.example.com"

    # ----- the status file and the pings

    def status(self) -> dict[str, Any]:
        path = self.root / "var/lib/reconfigure/status.json"
        try:
            loaded: dict[str, Any] = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return loaded

    def last_cycle(self) -> dict[str, Any]:
        last = self.status().get("last_cycle")
        return last if isinstance(last, dict) else {}

    def ping_log(self) -> list[Request]:
        return [request for request, _ in self.pings.log]

    def pings_to(self, suffix: str) -> list[Request]:
        return [r for r in self.ping_log() if r.path == PING_PATH + suffix]

    def fail_errors(self) -> list[str]:
        """The `error:` line of each /fail ping's body (Healthchecks shows it)."""
        errors = []
        for request in self.pings_to("/fail"):
            lines = request.get_data(as_text=True).splitlines()
            errors += [line.removeprefix("error: ") for line in lines
                       if line.startswith("error: ")]
        return errors

    def answer_pings(self, status: int = 200) -> None:
        self.pings.clear_all_handlers()
        for suffix in ("", "/fail", "/start"):
            self.pings.expect_request(PING_PATH + suffix).respond_with_data("OK", status=status)

    def ping_url(self) -> str:
        return self.pings.url_for(PING_PATH)


_TOOL = """\
import os, pathlib, subprocess, sys, time
here = pathlib.Path({path!r})
real = {real!r}
code = 0
if real:
    code = subprocess.run([*real, *sys.argv[1:]], check=False).returncode
with open(str(here) + ".calls", "a") as calls:  # after the real one: its output is written
    calls.write(str(os.getpid()) + "\\n")
while pathlib.Path(str(here) + ".hang").exists():
    time.sleep(0.05)
if pathlib.Path(str(here) + ".fail").exists():
    code = 65
sys.exit(code)
"""


@dataclass
class Tool:
    """An executable standing in for makemap or newaliases: runs `real` (if any) with its
    arguments, then hangs while `<path>.hang` exists and exits 65 while `<path>.fail`
    exists (after the real one wrote its output, as a failing makemap does). Each call's
    pid goes to `<path>.calls`."""

    path: Path
    real: list[str] | None

    def write(self) -> Tool:
        self.path.write_text(f"#!{sys.executable}\n" + _TOOL.format(path=str(self.path),
                                                                      real=self.real))
        self.path.chmod(0o755)
        return self

    def _flag(self, name: str) -> Path:
        return self.path.with_name(self.path.name + name)

    def hang(self, on: bool = True) -> None:
        self._set(".hang", on)

    def fail(self, on: bool = True) -> None:
        self._set(".fail", on)

    def _set(self, name: str, on: bool) -> None:
        if on:
            self._flag(name).write_text("")
        else:
            self._flag(name).unlink(missing_ok=True)

    def pids(self) -> list[int]:
        calls = self._flag(".calls")
        return [int(p) for p in calls.read_text().split()] if calls.exists() else []

    def calls(self) -> int:
        return len(self.pids())

    def running(self) -> bool:
        """A call hangs right now (what a test waits for before it signals the daemon)."""
        return any(_alive(pid) for pid in self.pids()) and self._flag(".hang").exists()

    def kill(self) -> None:
        """What dies with the container: the calls a killed daemon left hanging."""
        self.hang(False)
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def rig_env(world: AwsWorld, gate: Gate, root: Path, tier: str, ping_url: str,
            **extra: str) -> dict[str, str]:
    env = daemon_env(world, root, tier, AWS_ENDPOINT_URL=gate.url,
                     HEALTHCHECK_PING_URL=ping_url, RECONFIGURE_HEARTBEAT_START="true",
                     RECONFIGURE_INTERVAL=INTERVAL, RECONFIGURE_READ_DEADLINE=READ_DEADLINE,
                     RECONFIGURE_COMMAND_TIMEOUT="60",
                     # what the rig's queues are created with: a message a failed cycle
                     # kept comes back within a test's budget
                     RECONFIGURE_VISIBILITY_TIMEOUT=str(VISIBILITY))
    env.update(extra)
    return env
