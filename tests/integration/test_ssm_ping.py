"""The ping URL from SSM Parameter Store (docs/design.md §7), against moto over HTTP and
real ping receivers: read at start, re-read on a timer and after a 404, a failed read keeps
the last URL, a non-http(s) value pauses pings, and the daemon end to end (the parameter
wins over HEALTHCHECK_PING_URL; a cycle cut short by SIGTERM after its /start gets a /fail)."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from structlog.testing import capture_logs

from reconfigure import ssm
from reconfigure.heartbeat import Heartbeat
from reconfigure.report import CycleReport
from tests.support.world import (
    REGION,
    AwsWorld,
    daemon_env,
    fake_command,
    log_events,
    start_daemon,
    stop_daemon,
    wait_for,
)

SECRET_A = "key-a-0b9e"
SECRET_B = "key-b-77f1"


def report(error: str | None = None) -> CycleReport:
    return CycleReport("imap", "mail-1", "message", rows=3, error=error)


@pytest.fixture
def parameter_name() -> str:
    return f"/cabal/healthcheck_ping_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The environment the daemon gets: boto3 finds moto through AWS_ENDPOINT_URL."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return moto_endpoint


@pytest.fixture
def admin(moto_endpoint: str) -> Any:
    """The operator's SSM client (what rotates the parameter)."""
    return AwsWorld(moto_endpoint, "", "").client("ssm")


def put(admin: Any, name: str, value: str) -> None:
    admin.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)


@pytest.fixture
def made() -> Iterator[list[Heartbeat]]:
    heartbeats: list[Heartbeat] = []
    yield heartbeats
    for heartbeat in heartbeats:
        heartbeat.close(timeout=1)


def pinger(made: list[Heartbeat], name: str, *, refresh: float,
           url: str | None = None) -> tuple[Heartbeat, ssm.Parameter]:
    parameter = ssm.Parameter(ssm.client(REGION), name, refresh=refresh).start()
    heartbeat = Heartbeat(url, "imap", min_interval=0, backoff=0.01, source=parameter)
    made.append(heartbeat)
    return heartbeat, parameter


def ping(heartbeat: Heartbeat, error: str | None = None) -> None:
    started = time.monotonic()
    assert heartbeat.finish(None, report(error))
    assert time.monotonic() - started < 1.0  # the cycle never waits on SSM or the server
    assert heartbeat.flush(10)


def paths(httpserver: HTTPServer) -> list[str]:
    return [request.path for request, _ in httpserver.log]


def test_pings_follow_a_rotated_parameter(aws_env: str, admin: Any, parameter_name: str,
                                          httpserver: HTTPServer,
                                          made: list[Heartbeat]) -> None:
    httpserver.expect_request(f"/ping/{SECRET_A}/imap").respond_with_data("OK")
    httpserver.expect_request(f"/ping/{SECRET_B}/imap/fail").respond_with_data("OK")
    put(admin, parameter_name, httpserver.url_for(f"/ping/{SECRET_A}/{{tier}}"))
    heartbeat, parameter = pinger(made, parameter_name, refresh=0.5)
    ping(heartbeat)
    assert paths(httpserver) == [f"/ping/{SECRET_A}/imap"]

    put(admin, parameter_name, httpserver.url_for(f"/ping/{SECRET_B}/{{tier}}"))
    wait_for(lambda: SECRET_B in (parameter.value or ""), what="the timer's re-read")
    ping(heartbeat, "boom")
    assert paths(httpserver)[1:] == [f"/ping/{SECRET_B}/imap/fail"]
    assert heartbeat.stats().failed == 0


def test_a_404_re_reads_the_parameter_at_once(aws_env: str, admin: Any, parameter_name: str,
                                              httpserver: HTTPServer,
                                              made: list[Heartbeat]) -> None:
    """The check was rotated: the same ping goes to the new URL, with no timer involved."""
    httpserver.expect_request(f"/ping/{SECRET_A}").respond_with_data("gone", status=404)
    httpserver.expect_request(f"/ping/{SECRET_B}").respond_with_data("OK")
    put(admin, parameter_name, httpserver.url_for(f"/ping/{SECRET_A}"))
    heartbeat, parameter = pinger(made, parameter_name, refresh=3600)
    assert parameter.wait_read(10)
    put(admin, parameter_name, httpserver.url_for(f"/ping/{SECRET_B}"))
    with capture_logs() as logs:
        ping(heartbeat)
    assert paths(httpserver) == [f"/ping/{SECRET_A}", f"/ping/{SECRET_B}"]
    bodies = [request.get_data() for request, _ in httpserver.log]
    assert bodies[0] == bodies[1]
    assert parameter.attempts == 2
    stats = heartbeat.stats()
    assert (stats.sent, stats.failed) == (1, 0)
    assert not [e for e in logs if e["event"] == "heartbeat ping failed"]
    changed = [e for e in logs if e["event"] == "ssm parameter changed"]
    assert [e["parameter"] for e in changed] == [parameter_name]
    assert SECRET_A not in repr(logs) and SECRET_B not in repr(logs)


def test_a_404_with_the_same_parameter_is_a_failed_ping(
        aws_env: str, admin: Any, parameter_name: str, httpserver: HTTPServer,
        made: list[Heartbeat]) -> None:
    httpserver.expect_request(f"/ping/{SECRET_A}").respond_with_data("gone", status=404)
    put(admin, parameter_name, httpserver.url_for(f"/ping/{SECRET_A}"))
    heartbeat, parameter = pinger(made, parameter_name, refresh=3600)
    with capture_logs() as logs:
        ping(heartbeat)
    assert paths(httpserver) == [f"/ping/{SECRET_A}"]
    assert parameter.attempts == 2  # the start-up read and the one the 404 asked for
    assert heartbeat.stats().failed == 1
    [failed] = [e for e in logs if e["event"] == "heartbeat ping failed"]
    assert failed["status"] == 404
    assert SECRET_A not in repr(logs)


def test_a_failed_read_keeps_the_last_url(aws_env: str, admin: Any, parameter_name: str,
                                          httpserver: HTTPServer,
                                          made: list[Heartbeat]) -> None:
    httpserver.expect_request(f"/ping/{SECRET_A}").respond_with_data("OK")
    put(admin, parameter_name, httpserver.url_for(f"/ping/{SECRET_A}"))
    with capture_logs() as logs:
        heartbeat, parameter = pinger(made, parameter_name, refresh=0.3)
        ping(heartbeat)
        admin.delete_parameter(Name=parameter_name)
        wait_for(lambda: parameter.failures >= 1, what="a failed re-read")
        ping(heartbeat)
    assert paths(httpserver) == [f"/ping/{SECRET_A}"] * 2
    assert heartbeat.stats().failed == 0
    failed = [e for e in logs if e["event"] == "ssm parameter read failed"]
    assert failed[0]["error"] == "ParameterNotFound"
    assert failed[0]["log_level"] == "warning"
    assert SECRET_A not in repr(logs)


def test_no_parameter_at_start(aws_env: str, parameter_name: str, httpserver: HTTPServer,
                               made: list[Heartbeat]) -> None:
    """Unreadable from the start: HEALTHCHECK_PING_URL stands in; without it the ping is a
    failure (counted and logged), never a blocked cycle."""
    httpserver.expect_request("/fallback").respond_with_data("OK")
    fallback, _ = pinger(made, parameter_name, refresh=3600,
                         url=httpserver.url_for("/fallback"))
    ping(fallback)
    assert paths(httpserver) == ["/fallback"]

    alone, _ = pinger(made, parameter_name, refresh=3600)
    with capture_logs() as logs:
        ping(alone)
    assert alone.stats().failed == 1
    last = alone.stats().last_ping
    assert last is not None and (last.ok, last.status) == (False, None)
    assert [e["error"] for e in logs if e["event"] == "heartbeat ping failed"] == [
        "no ping URL (parameter not read yet)"]


def test_a_non_http_value_pauses_pings(aws_env: str, admin: Any, parameter_name: str,
                                       httpserver: HTTPServer,
                                       made: list[Heartbeat]) -> None:
    """The operators' way to silence a check: set the parameter to e.g. `paused`."""
    put(admin, parameter_name, "paused")
    heartbeat, _ = pinger(made, parameter_name, refresh=3600,
                          url=httpserver.url_for("/not-this"))
    ping(heartbeat)
    ping(heartbeat, "boom")
    assert httpserver.log == []
    stats = heartbeat.stats()
    assert (stats.paused, stats.failed, stats.sent) == (2, 0, 0)


@pytest.mark.timeout(60)
def test_daemon_pings_the_parameter_and_fails_a_cycle_cut_short(
        world: AwsWorld, admin: Any, parameter_name: str, root: Path, tmp_path: Path,
        httpserver: HTTPServer, daemons: list[subprocess.Popen[bytes]]) -> None:
    """End to end: the parameter wins over HEALTHCHECK_PING_URL; SIGTERM during a cycle
    whose /start went out ends in a /fail `stopped`, and the daemon still exits 0 in 2 s."""
    httpserver.expect_request(f"/ping/{SECRET_A}/imap/start").respond_with_data("OK")
    httpserver.expect_request(f"/ping/{SECRET_A}/imap/fail").respond_with_data("OK")
    put(admin, parameter_name, httpserver.url_for(f"/ping/{SECRET_A}/{{tier}}"))
    calls = tmp_path / "makemap.calls"
    slow = fake_command(tmp_path / "makemap", sleep=60, record=calls)
    log = tmp_path / "daemon.log"
    env = daemon_env(world, root, RECONFIGURE_MAKEMAP=str(slow),
                     HEALTHCHECK_PING_URL=httpserver.url_for("/ping/env-url/{tier}"),
                     HEALTHCHECK_PING_SSM_PARAMETER=parameter_name,
                     RECONFIGURE_HEARTBEAT_START="true")
    daemons.append(start_daemon(env, log))
    wait_for(calls.exists, timeout=20, what="makemap started")
    wait_for(lambda: httpserver.log, what="the /start ping")

    code, took = stop_daemon(daemons[0])
    assert code == 0 and took < 2.0
    seen = [(r.path, r.args.get("rid")) for r, _ in httpserver.log]
    assert [path for path, _ in seen] == [f"/ping/{SECRET_A}/imap/start",
                                          f"/ping/{SECRET_A}/imap/fail"]
    assert seen[0][1] is not None and seen[0][1] == seen[1][1]
    assert "error: stopped\n" in httpserver.log[1][0].get_data(as_text=True)
    events = log_events(log)
    assert any(e.get("event") == "cycle abandoned" for e in events)
    assert [e["event"] for e in events if "HEALTHCHECK_PING_SSM_PARAMETER" in e["event"]] == [
        "HEALTHCHECK_PING_URL and HEALTHCHECK_PING_SSM_PARAMETER both set: "
        "the parameter wins once read"]
    text = log.read_text()
    assert SECRET_A not in text and "env-url" not in text


def test_daemon_setting_errors_name_the_variable(world: AwsWorld, root: Path) -> None:
    env = daemon_env(world, root, HEALTHCHECK_PING_SSM_PARAMETER="not a name")
    done = subprocess.run([sys.executable, "-m", "reconfigure", "run"], env=env,
                          capture_output=True, timeout=30, check=False)
    assert done.returncode == 2
    assert done.stderr.decode().strip().splitlines() == [
        "reconfigure: HEALTHCHECK_PING_SSM_PARAMETER: not an SSM parameter name or ARN: "
        "'not a name'"]
