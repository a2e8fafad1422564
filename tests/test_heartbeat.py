"""Heartbeat pings against a real local HTTP server (docs/design.md §7): paths, bodies, the
rate rule, /start pairing, the body cap, and that a dead or hanging server never holds up a cycle or
leaks the (secret) ping URL into the log."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from structlog.testing import capture_logs
from werkzeug import Request, Response

from reconfigure import status
from reconfigure.heartbeat import MAX_PENDING, Cycle, Heartbeat, join_url, ping_url
from reconfigure.metrics import Metrics
from reconfigure.report import BODY_LIMIT, CycleReport, format_body
from reconfigure.settings import SettingsError, from_env

SECRET = "s3cr3t-ping-key"
PATH = f"/ping/{SECRET}"

Factory = Callable[..., Heartbeat]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def report(*, error: str | None = None, **fields: Any) -> CycleReport:
    values: dict[str, Any] = {"tier": "imap", "host": "mail-1", "trigger": "message",
                              "rows": 12, "duration_ms": 340, "aws_ms": 120}
    values.update(fields)
    return CycleReport(error=error, **values)


@pytest.fixture
def make() -> Iterator[Factory]:
    """Heartbeats that are closed after the test, whatever happened."""
    made: list[Heartbeat] = []

    def factory(url: str | None, tier: str = "imap", **options: Any) -> Heartbeat:
        options.setdefault("backoff", 0.01)
        heartbeat = Heartbeat(url, tier, **options)
        made.append(heartbeat)
        return heartbeat

    yield factory
    for heartbeat in made:
        heartbeat.close(timeout=1)


@pytest.fixture
def server(httpserver: HTTPServer) -> HTTPServer:
    httpserver.expect_request(PATH, method="POST").respond_with_data("OK")
    httpserver.expect_request(f"{PATH}/fail", method="POST").respond_with_data("OK")
    httpserver.expect_request(f"{PATH}/start", method="POST").respond_with_data("OK")
    return httpserver


def requests_seen(httpserver: HTTPServer) -> list[Request]:
    return [request for request, _ in httpserver.log]


def paths(httpserver: HTTPServer) -> list[str]:
    return [request.path for request in requests_seen(httpserver)]


def closed_port() -> int:
    """A port nothing listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def silent_server() -> Iterator[tuple[str, socket.socket]]:
    """Accepts connections (through the kernel backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}{PATH}", sock
    sock.close()


def assert_no_secret(logs: Sequence[Mapping[str, Any]], url: str) -> None:
    text = repr(logs)
    assert url not in text
    assert SECRET not in text


# ----- what is sent where


def test_success_posts_the_body_to_the_exact_url(make: Factory, server: HTTPServer) -> None:
    heartbeat = make(server.url_for(PATH))
    assert heartbeat.finish(heartbeat.begin(), report(changed=["/etc/mail/virtusertable"]))
    assert heartbeat.flush(5)

    [request] = requests_seen(server)
    assert (request.method, request.path, request.query_string) == ("POST", PATH, b"")
    assert request.headers["Content-Type"] == "text/plain; charset=utf-8"
    body = request.get_data().decode("utf-8")
    assert "tier: imap\n" in body
    assert "host: mail-1\n" in body
    assert "trigger: message\n" in body
    assert "changed: /etc/mail/virtusertable\n" in body
    assert "error" not in body
    stats = heartbeat.stats()
    assert (stats.sent, stats.failed, stats.suppressed, stats.last_sent_ok) == (1, 0, 0, True)


def test_tier_placeholder_is_replaced(make: Factory, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/ping/smtp-out", method="POST").respond_with_data("OK")
    heartbeat = make(httpserver.url_for("/ping/{tier}"), "smtp-out")
    assert heartbeat.finish(heartbeat.begin(), report(tier="smtp-out"))
    assert heartbeat.flush(5)
    assert paths(httpserver) == ["/ping/smtp-out"]
    assert heartbeat.stats().sent == 1


def test_failure_goes_to_fail_with_the_error(make: Factory, server: HTTPServer) -> None:
    heartbeat = make(server.url_for(PATH))
    assert heartbeat.finish(heartbeat.begin(), report(error="AccessDeniedException: no scan"))
    assert heartbeat.flush(5)

    [request] = requests_seen(server)
    assert request.path == f"{PATH}/fail"
    body = request.get_data().decode("utf-8")
    assert "status: failed\n" in body
    assert "error: AccessDeniedException: no scan\n" in body
    assert heartbeat.stats().last_sent_ok is False


def test_trailing_slash_and_query_string(make: Factory, httpserver: HTTPServer) -> None:
    """Healthchecks slug URLs may carry ?create=1: suffixes go in the path, before it."""
    for path in (f"{PATH}/", f"{PATH}/fail", f"{PATH}/start"):
        httpserver.expect_request(path, method="POST").respond_with_data("OK")
    clock = FakeClock()
    heartbeat = make(httpserver.url_for(f"{PATH}/?create=1"), send_start=True, clock=clock)
    cycle = heartbeat.begin()
    assert heartbeat.finish(cycle, report(error="boom"))
    clock.now += 1
    assert heartbeat.finish(heartbeat.begin(), report())
    assert heartbeat.flush(5)

    seen = [(r.path, r.query_string.decode()) for r in requests_seen(httpserver)]
    assert seen[0] == (f"{PATH}/start", f"create=1&rid={cycle.rid}")
    assert seen[1] == (f"{PATH}/fail", f"create=1&rid={cycle.rid}")
    assert seen[2][0] == f"{PATH}/start"
    assert seen[3][0] == f"{PATH}/"  # the success URL is the configured one
    assert seen[2][1] == seen[3][1]


@pytest.mark.parametrize(("base", "suffix", "rid", "expected"), [
    ("https://hc.example/ping/k", "", None, "https://hc.example/ping/k"),
    ("https://hc.example/ping/k/", "", None, "https://hc.example/ping/k/"),
    ("https://hc.example/ping/k", "fail", None, "https://hc.example/ping/k/fail"),
    ("https://hc.example/ping/k/", "fail", None, "https://hc.example/ping/k/fail"),
    ("https://hc.example/ping/k/", "start", "r1", "https://hc.example/ping/k/start?rid=r1"),
    ("https://hc.example/p/k/slug?create=1", "fail", "r1",
     "https://hc.example/p/k/slug/fail?create=1&rid=r1"),
    ("https://hc.example", "fail", None, "https://hc.example/fail"),
    ("https://hc.example/ping/k#frag", "", "r1", "https://hc.example/ping/k?rid=r1"),
])
def test_join_url(base: str, suffix: str, rid: str | None, expected: str) -> None:
    assert join_url(base, suffix, rid) == expected


# ----- the rate rule


def test_rate_rule_with_a_fake_clock(make: Factory, server: HTTPServer) -> None:
    clock = FakeClock()
    heartbeat = make(server.url_for(PATH), min_interval=60, clock=clock)
    sent = []
    for step, error in [(0, None), (1, None), (30, None), (59.9, None),  # burst: first only
                        (60, None),                                      # interval elapsed
                        (61, "boom"), (62, "boom"),                      # failures: always
                        (63, None),                                      # first success after
                        (64, None)]:                                     # suppressed again
        clock.now = 1000 + step
        sent.append(heartbeat.finish(heartbeat.begin(), report(error=error)))
    assert sent == [True, False, False, False, True, True, True, True, False]
    assert heartbeat.flush(5)
    assert paths(server) == [PATH, PATH, f"{PATH}/fail", f"{PATH}/fail", PATH]
    stats = heartbeat.stats()
    assert (stats.sent, stats.suppressed, stats.failed) == (5, 4, 0)


def test_rate_is_decided_at_cycle_time_not_send_time(
        make: Factory, silent_server: tuple[str, socket.socket]) -> None:
    """Even while the first ping is stuck on the network, the next success is suppressed."""
    url, _ = silent_server
    clock = FakeClock()
    heartbeat = make(url, clock=clock, timeout=5)
    assert heartbeat.finish(None, report())
    clock.now += 1
    assert not heartbeat.finish(None, report())
    assert heartbeat.stats().suppressed == 1


# ----- /start pairing


def test_start_precedes_the_outcome_with_the_same_rid(make: Factory, server: HTTPServer) -> None:
    clock = FakeClock()
    heartbeat = make(server.url_for(PATH), send_start=True, clock=clock)
    first = heartbeat.begin()
    assert first.rid is not None
    assert uuid.UUID(first.rid).version == 4
    clock.now += 5
    assert heartbeat.finish(first, report())

    clock.now += 1  # inside the interval: no start, and the success is suppressed
    second = heartbeat.begin()
    assert second == Cycle(None)
    assert not heartbeat.finish(second, report())

    clock.now += 1  # a failure inside the interval: no start (a success would not be sent)
    third = heartbeat.begin()
    assert third.rid is None
    assert heartbeat.finish(third, report(error="boom"))

    clock.now += 1  # first success after the failure: start and outcome
    fourth = heartbeat.begin()
    assert fourth.rid is not None
    clock.now += 1
    assert heartbeat.finish(fourth, report(error="again"))
    assert heartbeat.flush(5)

    seen = [(r.path, r.args.get("rid")) for r in requests_seen(server)]
    assert seen == [
        (f"{PATH}/start", first.rid), (PATH, first.rid),
        (f"{PATH}/fail", None),
        (f"{PATH}/start", fourth.rid), (f"{PATH}/fail", fourth.rid),
    ]


def test_no_start_unless_asked(make: Factory, server: HTTPServer) -> None:
    heartbeat = make(server.url_for(PATH))
    assert heartbeat.begin() == Cycle(None)
    assert heartbeat.finish(Cycle(None), report())
    assert heartbeat.flush(5)
    assert paths(server) == [PATH]


# ----- the body


def huge_report() -> CycleReport:
    return report(
        error="Kaboom: " + "é" * 5000,
        skipped=4000,
        skipped_by_rule={f"rule {n}: ünïcode, with commas": n for n in range(50)},
        changed=[f"/etc/mail/фаил-{n}" for n in range(5000)],
        users_created=[f"user{n}" for n in range(3000)],
        users_refused=[f"námé{n}: uid held by another name" for n in range(3000)],
        reloads=["sendmail:TERM", "newaliases"],
    )


def test_body_is_capped_and_valid_utf8(make: Factory, server: HTTPServer) -> None:
    big = huge_report()
    body = format_body(big)
    data = body.encode("utf-8")
    assert len(data) <= BODY_LIMIT
    assert body.startswith("tier: imap\nhost: mail-1\ntrigger: message\nstatus: failed\nerror: ")
    assert "changed files: 5000\n" in body
    assert "users refused: 3000\n" in body
    assert "refused: … and " in body
    assert "changed: … and 5000 more" in body

    heartbeat = make(server.url_for(PATH))
    assert heartbeat.finish(None, big)
    assert heartbeat.flush(5)
    [request] = requests_seen(server)
    wire = request.get_data()
    assert len(wire) <= BODY_LIMIT
    assert wire.decode("utf-8") == body  # strict decoding: no cut inside a character


@pytest.mark.parametrize("limit", range(200, 260))
def test_body_never_cuts_inside_a_character(limit: int) -> None:
    body = format_body(report(host="хост-" * 100, changed=["€" * 40] * 10), limit=limit)
    assert len(body.encode("utf-8")) <= limit


def test_body_names_counts_and_omits_empty_user_lines() -> None:
    body = format_body(report(skipped=3, skipped_by_rule={"username: starts with #": 2,
                                                          "tld: missing": 1},
                              dropped_lines=4, messages=2))
    lines = body.splitlines()
    assert "skipped: 3" in lines
    assert "skipped [username: starts with #]: 2" in lines
    assert "skipped [tld: missing]: 1" in lines
    assert "dropped duplicate lines: 4" in lines
    assert "messages: 2" in lines
    assert "duration_ms: 340" in lines
    assert "aws_ms: 120" in lines
    assert "reloads: none" in lines
    assert not any(line.startswith("users") for line in lines)
    assert all(": " in line for line in lines)


def test_body_never_holds_the_ping_url(make: Factory, server: HTTPServer) -> None:
    url = server.url_for(PATH)
    heartbeat = make(url)
    assert heartbeat.finish(None, report(error=f"could not reach {url}\nsecond line"))
    assert heartbeat.flush(5)
    [request] = requests_seen(server)
    body = request.get_data().decode("utf-8")
    assert SECRET not in body
    assert "\nsecond line" not in body  # one line per key


# ----- failures never block and never leak the URL


def test_http_4xx_is_not_retried(make: Factory, httpserver: HTTPServer) -> None:
    httpserver.expect_request(PATH).respond_with_data("not found", status=404)
    url = httpserver.url_for(PATH)
    heartbeat = make(url, retries=3)
    with capture_logs() as logs:
        assert heartbeat.finish(None, report())
        assert heartbeat.flush(5)
    assert len(httpserver.log) == 1
    assert heartbeat.stats().failed == 1
    [entry] = [e for e in logs if e["event"] == "heartbeat ping failed"]
    assert (entry["log_level"], entry["kind"], entry["status"], entry["error"]) == (
        "warning", "success", 404, "HTTP 404")
    assert_no_secret(logs, url)
    last = heartbeat.stats().last_ping
    assert last is not None
    assert (last.kind, last.ok, last.status, last.error) == ("success", False, 404, "HTTP 404")


def test_redirect_to_a_login_page_is_a_failed_ping(make: Factory,
                                                   httpserver: HTTPServer) -> None:
    """An authenticating load balancer answers 302 to its login page, which answers 200:
    never followed, so never mistaken for a delivered ping; its Location is never logged."""
    url = httpserver.url_for(PATH)
    login = httpserver.url_for("/login")
    httpserver.expect_request("/login").respond_with_data("<form>sign in</form>")
    httpserver.expect_request(PATH, method="POST").respond_with_data(
        "", status=302, headers={"Location": f"{login}?next={url}"})
    heartbeat = make(url, retries=3)
    with capture_logs() as logs:
        assert heartbeat.finish(None, report())
        assert heartbeat.flush(5)
    assert paths(httpserver) == [PATH]  # not retried, /login never requested
    stats = heartbeat.stats()
    assert (stats.sent, stats.failed) == (0, 1)
    assert stats.last_ping is not None
    assert (stats.last_ping.ok, stats.last_ping.status, stats.last_ping.error) == (
        False, 302, "HTTP 302")
    [entry] = [e for e in logs if e["event"] == "heartbeat ping failed"]
    assert (entry["status"], entry["error"], entry["attempts"]) == (302, "HTTP 302", 1)
    assert_no_secret(logs, url)
    assert "/login" not in repr(logs)


def test_http_5xx_is_retried_then_failed(make: Factory, httpserver: HTTPServer) -> None:
    httpserver.expect_request(PATH).respond_with_data("down", status=500)
    url = httpserver.url_for(PATH)
    heartbeat = make(url, retries=2)
    with capture_logs() as logs:
        assert heartbeat.finish(None, report(error="boom"))
        assert heartbeat.flush(5)
    assert paths(httpserver) == [f"{PATH}/fail"] * 3
    stats = heartbeat.stats()
    assert (stats.sent, stats.failed) == (0, 1)
    [entry] = [e for e in logs if e["event"] == "heartbeat ping failed"]
    assert (entry["kind"], entry["status"], entry["attempts"]) == ("fail", 500, 3)
    assert_no_secret(logs, url)


def test_http_5xx_is_retried(make: Factory, httpserver: HTTPServer) -> None:
    statuses = iter([503, 502, 200])

    def handler(request: Request) -> Response:
        return Response("x", status=next(statuses))

    httpserver.expect_request(PATH).respond_with_handler(handler)
    heartbeat = make(httpserver.url_for(PATH), retries=3)
    assert heartbeat.finish(None, report())
    assert heartbeat.flush(5)
    assert len(httpserver.log) == 3
    stats = heartbeat.stats()
    assert (stats.sent, stats.failed) == (1, 0)


def test_server_down(make: Factory) -> None:
    url = f"http://127.0.0.1:{closed_port()}{PATH}"
    heartbeat = make(url, retries=2)
    with capture_logs() as logs:
        started = time.monotonic()
        assert heartbeat.finish(heartbeat.begin(), report(error="boom"))
        assert time.monotonic() - started < 1.0  # returns at once; the server may hang 5 s
        assert heartbeat.flush(5)
    [entry] = [e for e in logs if e["event"] == "heartbeat ping failed"]
    assert entry["kind"] == "fail"
    assert entry["error"].startswith("ConnectionError")
    assert entry["attempts"] == 3
    assert heartbeat.stats().failed == 1
    assert_no_secret(logs, url)
    started = time.monotonic()
    assert heartbeat.close(timeout=1)
    assert time.monotonic() - started < 1.5


def test_server_hanging_times_out_and_is_logged(
        make: Factory, silent_server: tuple[str, socket.socket]) -> None:
    url, _ = silent_server
    heartbeat = make(url, timeout=0.3, retries=1)
    with capture_logs() as logs:
        started = time.monotonic()
        assert heartbeat.finish(None, report())
        assert time.monotonic() - started < 1.0  # returns at once; the server may hang 5 s
        assert heartbeat.flush(5)
    [entry] = [e for e in logs if e["event"] == "heartbeat ping failed"]
    assert entry["error"] == "ReadTimeout"
    assert entry["attempts"] == 2
    assert_no_secret(logs, url)


def test_close_does_not_wait_for_a_hanging_server(
        make: Factory, silent_server: tuple[str, socket.socket]) -> None:
    url, sock = silent_server
    heartbeat = make(url, send_start=True)  # production timeout (5 s) and retries
    with capture_logs() as logs:
        started = time.monotonic()
        assert heartbeat.finish(heartbeat.begin(), report())
        assert time.monotonic() - started < 1.0  # returns at once; the server may hang 5 s
        assert not heartbeat.flush(0.3)  # stuck on the network, as intended

        started = time.monotonic()
        assert not heartbeat.close(timeout=1)  # gave up waiting: the worker is still stuck
        assert time.monotonic() - started < 1.5
        assert not heartbeat.finish(None, report())  # closed: nothing more is queued

        sock.close()  # resets the stuck connection; after close(timeout) no more retries
        assert heartbeat.flush(10)
    assert heartbeat.stats().failed == 2  # the /start and the outcome, one attempt each
    assert len([e for e in logs if e["event"] == "heartbeat ping failed"]) == 2
    assert_no_secret(logs, url)


def test_too_many_waiting_pings_are_dropped(
        make: Factory, silent_server: tuple[str, socket.socket]) -> None:
    url, sock = silent_server
    heartbeat = make(url, retries=0)
    with capture_logs() as logs:
        queued = [heartbeat.finish(None, report(error="boom")) for _ in range(MAX_PENDING + 5)]
        assert queued == [True] * MAX_PENDING + [False] * 5
        sock.close()
        assert heartbeat.flush(20)
    stats = heartbeat.stats()
    assert (stats.dropped, stats.failed, stats.pending) == (5, MAX_PENDING, 0)
    assert len([e for e in logs if e["event"] == "heartbeat ping dropped"]) == 5
    assert_no_secret(logs, url)


def test_close_lets_pending_pings_retry_within_its_timeout(
        make: Factory, httpserver: HTTPServer) -> None:
    """`reconfigure once` closes right after its cycle: the outcome must still get through."""
    statuses = iter([503, 200])

    def handler(request: Request) -> Response:
        return Response("x", status=next(statuses))

    httpserver.expect_request(PATH).respond_with_handler(handler)
    heartbeat = make(httpserver.url_for(PATH), retries=3)
    assert heartbeat.finish(None, report())
    assert heartbeat.close(timeout=5)
    assert len(httpserver.log) == 2
    assert heartbeat.stats().sent == 1


def test_abandoned_cycle_without_start_sends_nothing(make: Factory, server: HTTPServer) -> None:
    """Shutting down is not a failure: a cycle Healthchecks never heard of stays silent."""
    heartbeat = make(server.url_for(PATH))
    abandoned = report(error="abandoned: shutting down", abandoned=True)
    assert "status: stopped\n" in format_body(abandoned)
    assert not heartbeat.finish(heartbeat.begin(), abandoned)
    assert heartbeat.close(timeout=1)
    assert server.log == []
    assert heartbeat.stats().suppressed == 0


# ----- every /start gets an outcome


def test_stopped_cycle_after_its_start_is_a_fail(make: Factory, server: HTTPServer) -> None:
    """Healthchecks would otherwise see a run that never ended."""
    heartbeat = make(server.url_for(PATH), send_start=True)
    cycle = heartbeat.begin()
    assert cycle.rid is not None
    assert heartbeat.finish(cycle, report(error="abandoned: shutting down", abandoned=True))
    assert heartbeat.close(timeout=1)
    seen = [(r.path, r.args.get("rid")) for r in requests_seen(server)]
    assert seen == [(f"{PATH}/start", cycle.rid), (f"{PATH}/fail", cycle.rid)]
    body = requests_seen(server)[1].get_data(as_text=True)
    assert "status: stopped\nerror: stopped\n" in body
    assert "trigger: message\n" in body


def test_close_sends_the_fail_of_a_started_cycle_that_never_finished(
        make: Factory, server: HTTPServer) -> None:
    """The cycle was cut short before its report (the daemon is stopping): `close`, which
    the daemon calls on its way out, sends the /fail within its budget."""
    heartbeat = make(server.url_for(PATH), send_start=True, host="mail-1", min_interval=0)
    done = heartbeat.begin()
    assert heartbeat.finish(done, report())
    cut = heartbeat.begin()
    assert cut.rid is not None and cut.rid != done.rid
    started = time.monotonic()
    assert heartbeat.close(timeout=0.7)
    assert time.monotonic() - started < 0.7 + 0.2
    seen = [(r.path, r.args.get("rid")) for r in requests_seen(server)]
    assert seen == [(f"{PATH}/start", done.rid), (PATH, done.rid),
                    (f"{PATH}/start", cut.rid), (f"{PATH}/fail", cut.rid)]
    assert requests_seen(server)[3].get_data(as_text=True) == (
        "tier: imap\nhost: mail-1\nstatus: stopped\nerror: stopped\n")
    assert heartbeat.close(timeout=1)  # a second close sends nothing more
    assert len(server.log) == 4


def test_close_after_finished_cycles_sends_nothing_more(make: Factory,
                                                        server: HTTPServer) -> None:
    heartbeat = make(server.url_for(PATH), send_start=True)
    assert heartbeat.finish(heartbeat.begin(), report(error="boom"))
    assert heartbeat.close(timeout=1)
    assert paths(server) == [f"{PATH}/start", f"{PATH}/fail"]


# ----- the failure counter and the status file


def test_failures_counter_for_prometheus(make: Factory, httpserver: HTTPServer) -> None:
    httpserver.expect_request(PATH).respond_with_data("", status=302,
                                                      headers={"Location": "/login"})
    heartbeat = make(httpserver.url_for(PATH), send_start=True, min_interval=0)
    metrics = Metrics("smtp-in", heartbeat_failures=lambda: heartbeat.stats().failed)
    assert 'reconfigure_heartbeat_failures_total{tier="smtp-in"} 0' in metrics.render()
    assert heartbeat.finish(heartbeat.begin(), report())
    assert heartbeat.flush(5)
    lines = metrics.render().splitlines()
    assert 'reconfigure_heartbeat_failures_total{tier="smtp-in"} 2' in lines  # /start too
    assert "# TYPE reconfigure_heartbeat_failures_total counter" in lines
    assert 'reconfigure_heartbeat_failures_total{tier="imap"} 0' in Metrics("imap").render()


def test_status_file_carries_the_last_ping(make: Factory, httpserver: HTTPServer,
                                           tmp_path: Path) -> None:
    httpserver.expect_request(PATH).respond_with_data("", status=302,
                                                      headers={"Location": "/login"})
    httpserver.expect_request(f"{PATH}/fail").respond_with_data("OK")
    heartbeat = make(httpserver.url_for(PATH))
    path = tmp_path / "status.json"
    assert heartbeat.last_ping() is None
    status.record(path, report(), addresses=3, last_ping=heartbeat.last_ping())
    assert "last_ping" not in json.loads(path.read_text())

    before = time.time()
    assert heartbeat.finish(None, report())
    assert heartbeat.flush(5)
    written = status.record(path, report(), addresses=3, last_ping=heartbeat.last_ping())
    on_disk = json.loads(path.read_text())
    assert on_disk == written
    last = on_disk["last_ping"]
    assert (last["kind"], last["ok"], last["status"], last["error"]) == (
        "success", False, 302, "HTTP 302")
    assert before <= last["at"] <= time.time()

    assert heartbeat.finish(None, report(error="boom"))
    assert heartbeat.flush(5)
    status.record(path, report(error="boom"), addresses=None, last_ping=heartbeat.last_ping())
    last = json.loads(path.read_text())["last_ping"]
    assert (last["kind"], last["ok"], last["status"], last["error"]) == ("fail", True, 200, None)


# ----- settings


def test_ssm_settings() -> None:
    base = {"TIER": "imap", "CERT_DOMAIN": "cabal.example", "AWS_REGION": "us-east-1"}
    plain = from_env(base)
    assert (plain.ping_ssm_parameter, plain.ssm_refresh) == (None, 300)
    named = from_env({**base, "HEALTHCHECK_PING_SSM_PARAMETER":
                      " /cabal/healthcheck_ping_ecs_reconfigure ",
                      "RECONFIGURE_SSM_REFRESH": "60"})
    assert named.ping_ssm_parameter == "/cabal/healthcheck_ping_ecs_reconfigure"
    assert named.ssm_refresh == 60
    arn = "arn:aws:ssm:us-east-1:123456789012:parameter/cabal/healthcheck_ping_x"
    assert from_env({**base, "HEALTHCHECK_PING_SSM_PARAMETER": arn}).ping_ssm_parameter == arn
    for variable, value in [("HEALTHCHECK_PING_SSM_PARAMETER", "/cabal/has space"),
                            ("HEALTHCHECK_PING_SSM_PARAMETER", "https://hc.example/ping/k"),
                            ("RECONFIGURE_SSM_REFRESH", "0"),
                            ("RECONFIGURE_SSM_REFRESH", "86401"),
                            ("RECONFIGURE_SSM_REFRESH", "often")]:
        with pytest.raises(SettingsError) as raised:
            from_env({**base, variable: value})
        assert raised.value.variable == variable


# ----- pings off


@pytest.mark.parametrize("url", [None, "", "   ", "ftp://127.0.0.1/{tier}", "not a url",
                                 "http://", "file:///tmp/x"])
def test_no_url_means_no_pings(make: Factory, httpserver: HTTPServer, url: str | None) -> None:
    heartbeat = make(url, send_start=True)
    assert not heartbeat.enabled
    assert heartbeat.begin() == Cycle(None)
    assert not heartbeat.finish(Cycle(None), report())
    assert not heartbeat.finish(None, report(error="boom"))
    assert heartbeat.flush(0)
    assert heartbeat.close(timeout=0)
    assert heartbeat.stats().sent == heartbeat.stats().suppressed == 0
    assert httpserver.log == []


def test_ping_url_resolution() -> None:
    assert ping_url("https://hc.example/ping/k/{tier}", "imap") == "https://hc.example/ping/k/imap"
    assert ping_url(" HTTPS://hc.example/x ", "imap") == "HTTPS://hc.example/x"
    assert ping_url("hc.example/ping", "imap") is None

