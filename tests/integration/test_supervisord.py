"""The shipped supervisord program section, run by a real supervisord against moto over HTTP.

The test supervisord gets the real `[program:reconfigure]` settings, key for key, with three
test-only changes: `command` runs this venv's console script instead of the image's, the
output goes to a file the test reads, and `environment=` carries the test plumbing (moto's
endpoint and fake credentials, the tier root, a makemap for it). The production settings
(TIER, CERT_DOMAIN, AWS_REGION, SQS_QUEUE_URL, IMAP_INTERNAL_HOST) are in supervisord's own
environment, as in the container, so the test also shows they reach the program by
inheritance, which is what the real file relies on.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from supervisor.options import ServerOptions
from supervisor.xmlrpc import SupervisorTransport

from tests.support.items import item
from tests.support.world import (
    REPO,
    AwsWorld,
    cycles,
    daemon_env,
    log_events,
    wait_for,
)

PROGRAM_CONF = REPO / "supervisord" / "reconfigure.conf"
BIN = Path(sys.executable).parent
# What the container's environment holds in production; the rest of daemon_env is plumbing.
INHERITED = ("TIER", "CERT_DOMAIN", "IMAP_INTERNAL_HOST", "AWS_REGION", "SQS_QUEUE_URL")
SENDMAIL_PRIORITY = 10  # [program:sendmail] in the tier images; prepare-sendmail is 5


def program_settings() -> dict[str, str]:
    """The real section's keys, read the way supervisord reads them (inline ';'/'#' comments)."""
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"))
    assert parser.read(PROGRAM_CONF) == [str(PROGRAM_CONF)]
    assert parser.sections() == ["program:reconfigure"]
    return dict(parser["program:reconfigure"])


def supervisor_value(value: str) -> str:
    """A value as supervisord reads it back: '%' is its expansion character."""
    return value.replace("%", "%%")


def supervisor_environment(env: dict[str, str]) -> str:
    """`environment=` syntax: KEY="value",... (no escapes inside the quotes exist)."""
    pairs = []
    for key, value in sorted(env.items()):
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), key
        assert not re.search(r"[\"\n\r]", value) and not value.endswith("'"), (key, value)
        pairs.append(f'{key}="{supervisor_value(value)}"')
    return ",".join(pairs)


def test_program_section_settings() -> None:
    settings = program_settings()
    argv = shlex.split(settings["command"])
    assert argv == ["/usr/local/bin/reconfigure", "run"]
    assert settings["autorestart"] == "true"
    assert settings["stopsignal"] == "TERM"
    assert settings["stopwaitsecs"] == "30"  # the daemon exits 0 well within supervisord's 30 s
    assert settings["priority"] == "40"  # the tier images' own reconfigure program's
    assert int(settings["priority"]) > SENDMAIL_PRIORITY
    assert 1 <= int(settings["startsecs"]) <= 10
    assert settings["stdout_logfile"] == "/dev/fd/1"
    assert settings["stdout_logfile_maxbytes"] == "0"
    assert settings["redirect_stderr"] == "true"
    assert "environment" not in settings  # inherited from the container
    assert "user" not in settings  # root: it writes /etc/mail, adds users, signals daemons


def test_supervisor_parses_the_real_file(tmp_path: Path) -> None:
    """supervisord's own parser accepts the file as shipped, included like the image does."""
    config = tmp_path / "supervisord.conf"
    config.write_text(f"[supervisord]\nlogfile={tmp_path / 'supervisord.log'}\n"
                      f"pidfile={tmp_path / 'supervisord.pid'}\n"
                      f"[include]\nfiles={PROGRAM_CONF}\n")
    options = ServerOptions()
    options.realize(args=["-c", str(config)])
    [group] = options.process_group_configs
    [program] = group.process_configs
    assert (group.name, program.name) == ("reconfigure", "reconfigure")
    assert program.command == "/usr/local/bin/reconfigure run"
    assert program.stopsignal == signal.SIGTERM
    assert program.stopwaitsecs == 30
    assert program.environment in (None, {})
    assert program.redirect_stderr is True
    assert program.autorestart is not False


def test_the_image_installs_the_command() -> None:
    """The stanza's command is where the Dockerfile links the venv's console script."""
    command = shlex.split(program_settings()["command"])[0]
    links = re.findall(r"ln -s (\S+) (\S+)", (REPO / "Dockerfile").read_text())
    assert ("/opt/reconfigure/bin/reconfigure", command) in links, links


@pytest.mark.parametrize("tier", ["smtp-in", "smtp-out"])
def test_stanza_pasted_into_a_tier_config(tmp_path: Path, tier: str) -> None:
    """The tier images' supervisord.conf has no [include]: the stanza is pasted in place of
    their [program:reconfigure]. The tier-shaped config the box runs (tests/e2e), with the
    shipped file appended verbatim, parses; reconfigure starts after sendmail and the
    milter and stops before them."""
    shaped = (REPO / "tests/e2e/tiers" / tier / "supervisord.conf").read_text()
    assert not re.search(r"^\[include\]", shaped, re.MULTILINE)
    text = shaped + PROGRAM_CONF.read_text()
    text = text.replace("logfile=/var/log/supervisord.log",
                        f"logfile={tmp_path / 'supervisord.log'}")
    config = tmp_path / "supervisord.conf"
    config.write_text(text)
    options = ServerOptions()
    options.realize(args=["-c", str(config)])
    priorities = {group.name: group.priority for group in options.process_group_configs}
    expected = {"sendmail": 10, "reconfigure": 40}
    if tier == "smtp-out":
        expected["opendkim"] = 20
    assert priorities == expected
    [reconfigure] = [g for g in options.process_group_configs if g.name == "reconfigure"]
    assert [p.command for p in reconfigure.process_configs] == [
        program_settings()["command"]]


class Supervised:
    """A supervisord of the test's own: config, socket, pid file and logs under one directory."""

    def __init__(self, directory: Path, world: AwsWorld, root: Path) -> None:
        self.directory = directory
        self.config = directory / "supervisord.conf"
        self.socket = directory / "sv.sock"
        self.log = directory / "reconfigure.log"
        self.supervisord_log = directory / "supervisord.log"
        self.pids: set[int] = set()
        env = daemon_env(world, root)
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("AWS_", "RECONFIGURE_"))}
        self.inherited = {**base, **{k: env[k] for k in INHERITED}}
        self.plumbing = {k: v for k, v in env.items()
                         if k not in INHERITED and base.get(k) != v}
        self.config.write_text(self._config_text())
        self.process: subprocess.Popen[bytes] | None = None

    def _config_text(self) -> str:
        settings = program_settings()
        script = BIN / "reconfigure"
        assert script.exists(), f"{script}: the console script is not installed"
        argv = [str(script), *shlex.split(settings["command"])[1:]]
        settings["command"] = supervisor_value(shlex.join(argv))
        settings["stdout_logfile"] = supervisor_value(str(self.log))
        settings["environment"] = supervisor_environment(self.plumbing)
        program = "\n".join(f"{key}={value}" for key, value in settings.items())
        return (
            "[supervisord]\n"
            f"logfile={supervisor_value(str(self.supervisord_log))}\n"
            f"pidfile={supervisor_value(str(self.directory / 'supervisord.pid'))}\n"
            f"childlogdir={supervisor_value(str(self.directory))}\n"
            "nodaemon=true\n"
            "loglevel=info\n"
            "[unix_http_server]\n"
            f"file={supervisor_value(str(self.socket))}\n"
            "chmod=0700\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
            "[supervisorctl]\n"
            f"serverurl=unix://{supervisor_value(str(self.socket))}\n"
            "[program:reconfigure]\n"
            f"{program}\n")

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(BIN / "supervisord"), "-n", "-c", str(self.config)], env=self.inherited,
            cwd=self.directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.ctl("status").returncode != 4 or self.supervisord_gone(),
                 timeout=20, what="supervisord's socket")
        assert not self.supervisord_gone(), self.supervisord_log.read_text()

    def supervisord_gone(self) -> bool:
        return self.process is None or self.process.poll() is not None

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "supervisorctl"), "-c", str(self.config), *args],
                              capture_output=True, text=True, timeout=60, check=False)

    def state(self) -> str:
        words = self.ctl("status", "reconfigure").stdout.split()
        return words[1] if len(words) > 1 and words[0] == "reconfigure" else ""

    def pid(self) -> int:
        text = self.ctl("pid", "reconfigure").stdout.strip()
        pid = int(text) if text.isdigit() else 0
        if pid:
            self.pids.add(pid)
        return pid

    def info(self) -> dict[str, Any]:
        transport = SupervisorTransport(None, None, f"unix://{self.socket}")
        proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
        info = proxy.supervisor.getProcessInfo("reconfigure")
        assert isinstance(info, dict)
        return info

    def events(self, event: str) -> list[dict[str, Any]]:
        return cycles(self.log, event=event) if self.log.exists() else []

    def shutdown(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is not None:
            return
        self.ctl("shutdown")  # stops the program (TERM, up to stopwaitsecs), then exits
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            for pid in self.pids:  # a daemon left behind by the killed supervisord
                cmdline = Path(f"/proc/{pid}/cmdline")
                with contextlib.suppress(OSError):
                    if str(BIN / "reconfigure").encode() in cmdline.read_bytes():
                        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def supervised(world: AwsWorld, root: Path) -> Iterator[Supervised]:
    # A unix socket path must stay under ~100 bytes, which a deep tmp_path may not.
    with tempfile.TemporaryDirectory(prefix="sv-") as directory:
        supervisor = Supervised(Path(directory), world, root)
        try:
            supervisor.start()
            yield supervisor
        finally:
            supervisor.shutdown()


def test_supervisord_starts_restarts_and_stops_the_daemon(
        supervised: Supervised, world: AwsWorld, root: Path) -> None:
    world.put(item("shop", "example.com", "carol/alice", "acme"))
    first = wait_for(lambda: supervised.state() == "RUNNING" and supervised.pid(),
                     timeout=30, what="RUNNING")
    wait_for(lambda: supervised.events("cycle done"), timeout=30, what="first cycle")
    [starting] = supervised.events("starting")
    assert starting["tier"] == "imap" and starting["queue"] is True  # inherited settings
    assert (root / "etc/mail/virtusertable.db").exists()

    # A crash: supervisord sees an unexpected exit and starts a new daemon.
    os.kill(first, signal.SIGKILL)
    second = wait_for(lambda: supervised.state() == "RUNNING"
                      and supervised.pid() not in (0, first) and supervised.pid(),
                      timeout=30, what="RUNNING again after SIGKILL")
    assert "exited: reconfigure (terminated by SIGKILL; not expected)" in \
        supervised.supervisord_log.read_text()
    wait_for(lambda: len(supervised.events("cycle done")) >= 2, timeout=30,
             what="a cycle from the restarted daemon")
    assert len(supervised.events("starting")) == 2

    # A clean stop: TERM, exit 0 well inside stopwaitsecs, nothing killed.
    started = time.monotonic()
    stop = supervised.ctl("stop", "reconfigure")
    took = time.monotonic() - started
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert took < 5.0
    info = supervised.info()
    assert (info["statename"], info["exitstatus"], info["pid"]) == ("STOPPED", 0, 0)
    assert supervised.state() == "STOPPED"
    assert [e for e in log_events(supervised.log) if e.get("event") == "stopped"]
    assert "stopped: reconfigure (exit status 0)" in supervised.supervisord_log.read_text()
    wait_for(lambda: not Path(f"/proc/{second}").exists(), what="the daemon process gone")
