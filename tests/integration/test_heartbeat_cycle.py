"""The heartbeat as the cycle drives it: the status file carries the last ping's outcome,
and a ping answered by a login-page redirect shows there as a failure."""

from __future__ import annotations

import json
from pathlib import Path

from pytest_httpserver import HTTPServer

from reconfigure.heartbeat import Heartbeat
from tests.integration.test_cycle import cycler_for, rows, settings_for
from tests.support.world import AwsWorld


def test_status_file_shows_the_last_heartbeat_ping(world: AwsWorld, root: Path,
                                                   httpserver: HTTPServer) -> None:
    world.put(*rows(2))
    httpserver.expect_request("/hc").respond_with_data(
        "", status=302, headers={"Location": httpserver.url_for("/login")})
    settings = settings_for(world, root, HEALTHCHECK_PING_URL=httpserver.url_for("/hc"))
    heartbeat = Heartbeat(settings.ping_url, "imap", min_interval=0, backoff=0.01)
    cycler = cycler_for(settings, world, heartbeat)
    status_file = settings.path(settings.status_file)
    try:
        assert cycler.run("startup").ok
        assert "last_ping" not in json.loads(status_file.read_text())  # no ping yet
        assert heartbeat.flush(5)
        assert cycler.run("timer").ok
        assert heartbeat.flush(5)
    finally:
        heartbeat.close()
    status = json.loads(status_file.read_text())
    assert status["last_cycle"]["ok"] is True  # the cycle itself is unaffected
    last = status["last_ping"]
    assert (last["kind"], last["ok"], last["status"], last["error"]) == (
        "success", False, 302, "HTTP 302")
    assert [r.path for r, _ in httpserver.log] == ["/hc", "/hc"]  # /login never requested
    assert heartbeat.stats().failed == 2
