"""Private queue mode: every daemon of a tier hears every change (moto, SNS → SQS)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from reconfigure.queues import (
    TAG_LAST_CYCLE,
    TAG_TIER,
    access_policy,
    identity,
    prefix_for,
    queue_arn,
    queue_name,
)
from tests.support.items import item
from tests.support.world import (
    AwsWorld,
    cycles,
    daemon_env,
    log_events,
    make_root,
    start_daemon,
    stop_daemon,
    wait_for,
)


@pytest.fixture(autouse=True)
def a_row(world: AwsWorld) -> None:
    world.put(item("shop", "example.com", "alice", "acme"))


@pytest.fixture
def topic(world: AwsWorld) -> Iterator[str]:
    sns = world.client("sns")
    arn: str = sns.create_topic(Name="cabal-address-changed")["TopicArn"]
    yield arn
    sns.delete_topic(TopicArn=arn)
    sqs = world.client("sqs")
    for url in sqs.list_queues(QueueNamePrefix="cabal-reconfig-").get("QueueUrls", []):
        sqs.delete_queue(QueueUrl=url)


def private_env(world: AwsWorld, root: Path, topic: str, **extra: str) -> dict[str, str]:
    env = daemon_env(world, root, RECONFIGURE_SNS_TOPIC_ARN=topic, **extra)
    del env["SQS_QUEUE_URL"]
    return env


def publish(world: AwsWorld, topic: str) -> None:
    world.client("sns").publish(TopicArn=topic, Message=json.dumps(
        {"event": "address_changed", "timestamp": "2026-11-29T12:00:00Z"}))


def private_queues(world: AwsWorld) -> list[str]:
    urls = world.client("sqs").list_queues(QueueNamePrefix=prefix_for("imap"))
    return sorted(u.rsplit("/", 1)[1] for u in urls.get("QueueUrls", []))


def subscriptions(world: AwsWorld, topic: str) -> list[str]:
    subs = world.client("sns").list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    return sorted(s["Endpoint"].rsplit(":", 1)[1] for s in subs)


def test_one_publish_reaches_all_three_daemons_and_sigterm_cleans_up(
        world: AwsWorld, topic: str, tmp_path: Path,
        daemons: list[subprocess.Popen[bytes]]) -> None:
    roots: list[Path] = []
    logs: list[Path] = []
    for n in range(3):
        roots.append(make_root(tmp_path / f"root{n}"))
        logs.append(tmp_path / f"daemon{n}.log")
        daemons.append(start_daemon(private_env(world, roots[n], topic), logs[n]))
    wait_for(lambda: all(cycles(log) for log in logs), what="startup cycles")
    wait_for(lambda: len(private_queues(world)) == 3, what="three private queues")
    assert subscriptions(world, topic) == private_queues(world)

    world.put(item("new", "example.com", "bob", "acme"))
    publish(world, topic)
    wait_for(lambda: all("new@acme.example.com" in (root / "etc/mail/virtusertable").read_text()
                         for root in roots), what="new row on every daemon")
    # How fast is a benchmark's business (bench/daemon.py fanout); here: all three, on a message.
    def message_cycles(log: Path) -> list[dict[str, object]]:
        return [c for c in cycles(log) if c["trigger"] == "message"]

    # The files go live just before the cycle's summary line is written.
    wait_for(lambda: all(message_cycles(log) for log in logs), what="every message cycle")

    for process in daemons:
        code, took = stop_daemon(process)
        assert code == 0 and took < 2.0
    assert private_queues(world) == []
    assert subscriptions(world, topic) == []


def test_killed_daemon_queue_is_reaped_and_others_are_never_touched(
        world: AwsWorld, topic: str, tmp_path: Path,
        daemons: list[subprocess.Popen[bytes]]) -> None:
    sqs = world.client("sqs")
    old = str(int(time.time()) - 7200)
    outsiders = ["cabal-reconfig-imap", "cabal-reconfig-smtp-in-task-x",
                 "cabal-reconfig-imap-taskforce", "someone-elses-queue"]
    for name in outsiders:
        sqs.create_queue(QueueName=name, tags={TAG_TIER: "imap", TAG_LAST_CYCLE: old})
    log = tmp_path / "victim.log"
    victim = start_daemon(private_env(world, make_root(tmp_path / "victim"), topic), log)
    daemons.append(victim)
    wait_for(lambda: cycles(log), what="victim's first cycle")
    wait_for(lambda: len(private_queues(world)) == 1, what="victim's queue")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    orphan = private_queues(world)
    assert len(orphan) == 1 and subscriptions(world, topic) == orphan

    wait_for(lambda: time.time() - int(sqs.list_queue_tags(
        QueueUrl=sqs.get_queue_url(QueueName=orphan[0])["QueueUrl"])["Tags"][TAG_LAST_CYCLE])
        > 1.0, what="orphan's tag to age")
    log = tmp_path / "next.log"
    daemons.append(start_daemon(private_env(world, make_root(tmp_path / "next"), topic,
                                            RECONFIGURE_ORPHAN_QUEUE_AGE="1"), log))
    wait_for(lambda: any(e.get("event") == "orphan queue deleted" for e in log_events(log)),
             what="orphan reaped")
    mine = private_queues(world)
    assert orphan[0] not in mine and len(mine) == 1
    assert subscriptions(world, topic) == mine
    remaining = {u.rsplit("/", 1)[1] for u in sqs.list_queues().get("QueueUrls", [])}
    assert set(outsiders) <= remaining
    stop_daemon(daemons[-1])


def test_missing_topic_falls_back_to_periodic_and_retries(
        world: AwsWorld, topic: str, tmp_path: Path, httpserver: HTTPServer,
        daemons: list[subprocess.Popen[bytes]]) -> None:
    httpserver.expect_request("/hc/fail").respond_with_data("OK")
    httpserver.expect_request("/hc").respond_with_data("OK")
    missing = topic.replace("cabal-address-changed", "not-created-yet")
    log = tmp_path / "daemon.log"
    env = private_env(world, make_root(tmp_path / "root"), missing, RECONFIGURE_INTERVAL="1",
                      HEALTHCHECK_PING_URL=httpserver.url_for("/hc"))
    env["SQS_QUEUE_URL"] = world.queue_url  # both set: the private queue wins
    daemons.append(start_daemon(env, log))
    failure = wait_for(lambda: [e for e in log_events(log) if e.get("event", "").startswith(
        "private queue setup failed")], what="setup failure line")[0]
    assert "NotFound" in failure["error"]
    assert any("both set" in e.get("event", "") for e in log_events(log))
    wait_for(lambda: [c for c in cycles(log) if c["trigger"] == "timer"], what="timer cycle")
    fail = wait_for(lambda: [r for r, _ in httpserver.log if r.path == "/hc/fail"])[0]
    assert "private queue setup failed" in fail.get_data(as_text=True)
    world.client("sns").create_topic(Name="not-created-yet")
    wait_for(lambda: any(e.get("event") == "private queue ready" for e in log_events(log)),
             timeout=20, what="setup retried")
    code, _ = stop_daemon(daemons[0])
    assert code == 0


def test_names_arns_and_policy() -> None:
    assert queue_name("smtp-in", "abc") == "cabal-reconfig-smtp-in-task-abc"
    assert len(queue_name("imap", "x" * 200)) == 80
    topic = "arn:aws:sns:eu-west-1:123456789012:cabal-address-changed"
    assert queue_arn("https://sqs.eu-west-1.amazonaws.com/123456789012/q1", topic,
                     "eu-west-1") == "arn:aws:sqs:eu-west-1:123456789012:q1"
    policy = json.loads(access_policy("arn:aws:sqs:eu-west-1:123456789012:q1", topic))
    statement = policy["Statement"][0]
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == topic
    assert statement["Action"] == "sqs:SendMessage"


def test_identity_from_task_metadata_else_host_and_pid(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v4/abc/task").respond_with_json(
        {"TaskARN": "arn:aws:ecs:us-east-1:123456789012:task/cabal/0123456789abcdef"})
    uri = httpserver.url_for("/v4/abc")
    assert identity({"ECS_CONTAINER_METADATA_URI_V4": uri}) == "0123456789abcdef"
    fallback = identity({"ECS_CONTAINER_METADATA_URI_V4": "http://127.0.0.1:9/nothing"})
    assert fallback == identity({})
    assert fallback.endswith(f"-{os.getpid()}")


def test_a_private_queue_deleted_under_the_daemon_is_set_up_again(
        world: AwsWorld, topic: str, tmp_path: Path,
        daemons: list[subprocess.Popen[bytes]]) -> None:
    log = tmp_path / "daemon.log"
    daemons.append(start_daemon(private_env(world, make_root(tmp_path / "root"), topic), log))
    wait_for(lambda: cycles(log), what="startup cycle")
    sqs = world.client("sqs")
    [name] = wait_for(lambda: private_queues(world), what="private queue")
    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=name)["QueueUrl"])
    wait_for(lambda: sum(e.get("event") == "private queue ready" for e in log_events(log)) == 2,
             timeout=30, what="queue set up again")
    assert private_queues(world) == [name]
    world.put(item("again", "example.com", "bob", "acme"))
    publish(world, topic)
    wait_for(lambda: [c for c in cycles(log) if c["trigger"] == "message"], what="message cycle")
    stop_daemon(daemons[0])
