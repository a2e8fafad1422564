"""The trigger queue under trouble, through a counting proxy in front of moto: upkeep that
cannot reach SQS never stops the timer, a queue that keeps failing is reported, messages
are deleted once the render is live, and an idle daemon only long-polls."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from pytest_httpserver import HTTPServer

from reconfigure import queues
from reconfigure.aws import Aws
from reconfigure.queues import TAG_LAST_CYCLE, TAG_TIER, PrivateQueue, prefix_for
from reconfigure.settings import from_env
from tests.support.items import item
from tests.support.proxy import Proxy, counting_proxy
from tests.support.world import (
    AwsWorld,
    cycles,
    daemon_env,
    dump_map,
    log_events,
    start_daemon,
    stop_daemon,
    wait_for,
)

T = TypeVar("T")


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[Proxy]:
    with counting_proxy(moto_endpoint) as running:
        yield running


@pytest.fixture
def topic(world: AwsWorld) -> Iterator[str]:
    sns = world.client("sns")
    arn: str = sns.create_topic(Name=f"changed-{world.table[-8:]}")["TopicArn"]
    yield arn
    sns.delete_topic(TopicArn=arn)


def timer_cycles(log: Path, event: str = "cycle done") -> list[dict[str, object]]:
    return [c for c in cycles(log, event=event) if c["trigger"] == "timer"]


def private_queues(world: AwsWorld, tier: str = "imap") -> list[str]:
    urls = world.client("sqs").list_queues(QueueNamePrefix=prefix_for(tier))
    return sorted(u.rsplit("/", 1)[1] for u in urls.get("QueueUrls", []))


def test_createqueue_503_never_stops_the_timer_and_setup_recovers_without_restart(
        world: AwsWorld, proxy: Proxy, topic: str, tmp_path: Path, root: Path,
        daemons: list[subprocess.Popen[bytes]]) -> None:
    world.put(item("shop", "example.com", "alice", "acme"))
    proxy.fail("CreateQueue")
    log = tmp_path / "daemon.log"
    env = daemon_env(world, root, AWS_ENDPOINT_URL=proxy.url, RECONFIGURE_INTERVAL="1",
                     RECONFIGURE_SNS_TOPIC_ARN=topic)
    del env["SQS_QUEUE_URL"]
    daemons.append(start_daemon(env, log))
    # Timer cycles go on while SQS refuses to create the queue (main: 0 cycles).
    wait_for(lambda: len(timer_cycles(log)) >= 3, timeout=45, what="timer cycles while 503")
    assert proxy.count("CreateQueue") >= 2  # setup is being retried meanwhile
    assert private_queues(world) == []

    proxy.heal()
    wait_for(lambda: any(e.get("event") == "private queue ready" for e in log_events(log)),
             timeout=60, what="queue set up once SQS answers")
    assert len(private_queues(world)) == 1
    world.put(item("new", "example.com", "bob", "acme"))
    world.client("sns").publish(TopicArn=topic, Message=json.dumps({"event": "changed"}))
    wait_for(lambda: [c for c in cycles(log) if c["trigger"] == "message"], timeout=30,
             what="a message cycle on the new queue")
    code, took = stop_daemon(daemons[0])
    assert code == 0 and took <= 2.0
    assert private_queues(world) == []


def test_a_queue_that_keeps_failing_is_reported_like_a_failed_cycle(
        world: AwsWorld, proxy: Proxy, tmp_path: Path, root: Path, httpserver: HTTPServer,
        daemons: list[subprocess.Popen[bytes]]) -> None:
    httpserver.expect_request("/hc/fail").respond_with_data("OK")
    httpserver.expect_request("/hc").respond_with_data("OK")
    proxy.fail("ReceiveMessage")
    log = tmp_path / "daemon.log"
    env = daemon_env(world, root, AWS_ENDPOINT_URL=proxy.url, RECONFIGURE_INTERVAL="2",
                     RECONFIGURE_READ_DEADLINE="5",
                     HEALTHCHECK_PING_URL=httpserver.url_for("/hc"))
    daemons.append(start_daemon(env, log))
    failed = wait_for(lambda: cycles(log, event="cycle failed"), timeout=60,
                      what="a cycle reporting the queue")[0]
    assert "queue failing for" in failed["error"] and "ServiceUnavailable" in failed["error"]
    status = json.loads((root / "var/lib/reconfigure/status.json").read_text())
    assert "queue failing for" in status["last_cycle"]["error"]
    fail = wait_for(lambda: [r for r, _ in httpserver.log if r.path == "/hc/fail"])[0]
    assert "queue failing for" in fail.get_data(as_text=True)

    proxy.heal()
    reported = len(cycles(log, event="cycle failed"))
    wait_for(lambda: len(cycles(log, event="cycle done")) > 1 and
             cycles(log, event="cycle done")[-1]["trigger"] == "timer"
             and log_events(log)[-1].get("event") != "cycle failed",
             timeout=60, what="cycles succeeding again once the queue answers")
    assert len(cycles(log, event="cycle failed")) >= reported
    code, took = stop_daemon(daemons[0])
    assert code == 0 and took <= 2.0


def test_messages_are_deleted_once_the_render_is_live_even_if_the_reload_fails(
        world: AwsWorld, tmp_path: Path, root: Path,
        daemons: list[subprocess.Popen[bytes]]) -> None:
    world.put(item("shop", "example.com", "alice", "acme"))
    impostor = subprocess.Popen(["sleep", "300"])  # a live pid that is not sendmail
    try:
        (root / "var/run/sendmail.pid").write_text(f"{impostor.pid}\n")
        log = tmp_path / "daemon.log"
        daemons.append(start_daemon(daemon_env(world, root, tier="smtp-in",
                                               RECONFIGURE_INTERVAL="2"), log))
        wait_for(lambda: cycles(log, event="cycle failed"), what="startup cycle")
        world.put(item("new", "example.com", "bob", "acme"))
        world.notify()
        message = wait_for(lambda: [c for c in cycles(log, event="cycle failed")
                                    if c["trigger"] == "message"], timeout=30,
                           what="message cycle")[0]
        assert "sendmail" in message["error"] and "reload" in message["error"]
        assert "new@acme.example.com" in dump_map(root / "etc/mail/virtusertable.db",
                                                  root / "sendmail.cf")
        wait_for(lambda: world.queue_depth() == 0, timeout=30, what="message deleted")
        # The owed reload is still reported by the following cycles.
        after = len(cycles(log, event="cycle failed"))
        wait_for(lambda: len(cycles(log, event="cycle failed")) >= after + 2, timeout=30,
                 what="later cycles still reporting the owed reload")
        assert all("sendmail" in c["error"] for c in cycles(log, event="cycle failed"))
        assert world.queue_depth() == 0
        assert impostor.poll() is None  # never signalled
        code, took = stop_daemon(daemons[0])
        assert code == 0 and took <= 2.0
    finally:
        impostor.kill()
        impostor.wait()


def test_an_idle_daemon_makes_one_long_poll_per_20_s_and_no_short_polls(
        world: AwsWorld, proxy: Proxy, tmp_path: Path, root: Path,
        daemons: list[subprocess.Popen[bytes]]) -> None:
    world.put(item("shop", "example.com", "alice", "acme"))
    log = tmp_path / "daemon.log"
    env = daemon_env(world, root, AWS_ENDPOINT_URL=proxy.url, RECONFIGURE_INTERVAL="10")
    daemons.append(start_daemon(env, log))
    wait_for(lambda: cycles(log), timeout=30, what="startup cycle")
    started = time.monotonic()
    before = len(proxy.waits())
    # Four timer cycles: about 40 s of an idle daemon with an empty queue.
    wait_for(lambda: len(timer_cycles(log)) >= 4, timeout=80, what="four timer cycles")
    elapsed = time.monotonic() - started
    waits = proxy.waits()[before:]
    assert waits and all(w == 20 for w in waits), waits  # no WaitTimeSeconds=0 or shortened
    assert len(waits) <= elapsed / 20 + 1, (len(waits), elapsed)
    assert proxy.count("ChangeMessageVisibilityBatch") == 0
    code, took = stop_daemon(daemons[0])
    assert code == 0 and took <= 2.0


def _direct(what: str, function: Callable[[], T], /) -> T:
    return function()


def test_reaper_lists_every_page_of_queues(world: AwsWorld, proxy: Proxy, topic: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queues, "LIST_PAGE_SIZE", 2)
    sqs = world.client("sqs")
    old = str(int(time.time()) - 7200)
    tier = f"t{world.table[-8:]}"  # a tier name of its own: other tests' queues stay out
    names = [f"{prefix_for(tier)}orphan{n}" for n in range(5)]
    for name in names:
        sqs.create_queue(QueueName=name, tags={TAG_TIER: tier, TAG_LAST_CYCLE: old})
    world.endpoint = proxy.url
    private = PrivateQueue(sqs=world.client("sqs"), sns=world.client("sns"), call=_direct,
                           tier=tier, owner="me", topic_arn=topic, region="us-east-1")
    assert sorted(private.reap()) == names
    assert proxy.count("ListQueues") >= 3  # five queues, two a page
    assert private_queues(world, tier) == []


class _SlowSqs:
    """CreateQueue that answers only when told: a setup under way."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def create_queue(self, **_: object) -> dict[str, str]:
        self.release.wait(10)
        raise ConnectionError("no answer")


def test_a_setup_under_way_is_not_due_again_so_the_loop_never_spins() -> None:
    sqs = _SlowSqs()
    private = PrivateQueue(sqs=sqs, sns=None, call=_direct, tier="imap", owner="me",
                           topic_arn="arn:aws:sns:us-east-1:123456789012:t", region="us-east-1")
    triggers = queues.PrivateTriggers(private)
    wake = threading.Event()
    now = time.monotonic()
    triggers.upkeep(wake)  # returns at once: setup and reaper run on the worker
    assert time.monotonic() - now < 1.0
    assert triggers.next_upkeep() > now + 60  # the reaper's next hour, not "now"
    sqs.release.set()
    assert wake.wait(10)
    fault = wait_for(triggers.fault, what="setup failure recorded")
    assert "private queue setup failed" in fault[1]
    assert triggers.next_upkeep() >= now + queues.MIN_SETUP_BACKOFF


def test_extending_visibility_keeps_a_message_hidden_and_zero_releases_it(
        world: AwsWorld) -> None:
    sqs = world.client("sqs")
    shared = queues.SharedQueue(world.queue_url, sqs, _direct)
    world.notify()
    [held] = wait_for(lambda: shared.receive(world.queue_url, 1), what="the message")
    shared.extend(world.queue_url, [held], queues.VISIBILITY_SECONDS)
    assert shared.receive(world.queue_url, 1) == []  # still hidden, extended
    shared.extend(world.queue_url, [held], 0)  # visible again at once
    again = wait_for(lambda: shared.receive(world.queue_url, 1), what="the message again")
    assert [m.message_id for m in again] == [held.message_id]
    shared.delete(world.queue_url, again)
    wait_for(lambda: world.queue_depth() == 0, what="deleted by the worker")


def test_the_connection_pool_holds_every_scan_segment() -> None:
    env = {"TIER": "imap", "CERT_DOMAIN": "cabal.example", "AWS_REGION": "us-east-1",
           "RECONFIGURE_SCAN_SEGMENTS": "32"}
    aws = Aws.from_settings(from_env(env))
    assert aws.dynamodb.meta.config.max_pool_connections >= 32


def test_sigterm_while_setup_retries_503_exits_within_2_s(
        world: AwsWorld, proxy: Proxy, topic: str, tmp_path: Path, root: Path,
        daemons: list[subprocess.Popen[bytes]]) -> None:
    proxy.fail("CreateQueue", "ReceiveMessage")
    log = tmp_path / "daemon.log"
    env = daemon_env(world, root, AWS_ENDPOINT_URL=proxy.url, RECONFIGURE_INTERVAL="1",
                     RECONFIGURE_SNS_TOPIC_ARN=topic)
    del env["SQS_QUEUE_URL"]
    daemons.append(start_daemon(env, log))
    wait_for(lambda: timer_cycles(log) and proxy.count("CreateQueue") >= 2, timeout=30,
             what="a timer cycle while setup is being retried")
    code, took = stop_daemon(daemons[0])
    assert code == 0 and took <= 2.0
