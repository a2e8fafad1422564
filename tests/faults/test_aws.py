"""AWS going away: killed with a scan page in flight, unreachable when the daemon starts,
the queue and the table deleted under a running daemon (docs/design.md §6)."""

from __future__ import annotations

import json

import pytest

from reconfigure.queues import prefix_for
from tests.faults.invariants import (
    assert_message_kept,
    assert_no_temps,
    assert_recovered,
    assert_reported,
    assert_serving,
    assert_whole,
    live,
    virtusertable,
)
from tests.faults.rig import Rig, seed_rows
from tests.support.items import item
from tests.support.world import wait_for

SCAN = b"DynamoDB_20120810.Scan"  # the X-Amz-Target of a scan page request
OUTAGE = "sources not read within"  # the cycle's error when AWS does not answer in time


@pytest.mark.parametrize("tier", ["imap", "smtp-in"])
def test_aws_killed_mid_scan_then_back(rig: Rig) -> None:
    rig.start()
    rig.wait_event("cycle done")
    before = live(rig.root, rig.tier)
    rig.gate.hold(SCAN)
    key = rig.change()
    assert rig.gate.held.wait(20), "no scan request reached AWS"
    rig.gate.down()  # AWS dies with the page request in flight, and stays down

    assert_reported(rig, OUTAGE)
    assert_serving(rig.root, rig.tier, before)
    assert_no_temps(rig.root)
    assert_message_kept(rig)

    rig.gate.release()
    rig.gate.up()
    assert_recovered(rig, key)
    code, took = rig.stop()
    assert code == 0 and took <= 2.0


def test_aws_unreachable_at_start_then_up(rig: Rig) -> None:
    prep = rig.once()  # the image's startup prep built the config the daemon starts with
    assert prep.returncode == 0, prep.stdout + prep.stderr
    before = live(rig.root, rig.tier)
    rig.gate.down()
    key = rig.change()
    rig.start()

    assert_reported(rig, OUTAGE)
    assert_serving(rig.root, rig.tier, before)
    assert_no_temps(rig.root)
    assert_message_kept(rig)

    rig.gate.up()
    assert_recovered(rig, key)
    code, took = rig.stop()
    assert code == 0 and took <= 2.0


def test_table_deleted_while_running_then_recreated(rig: Rig) -> None:
    rig.start()
    rig.wait_event("cycle done")
    before = live(rig.root, rig.tier)
    dynamodb = rig.world.client("dynamodb")
    dynamodb.delete_table(TableName=rig.world.table)
    rig.world.notify()

    assert_reported(rig, "ResourceNotFoundException")
    assert_serving(rig.root, rig.tier, before)  # never an empty render
    assert_no_temps(rig.root)
    assert_message_kept(rig)

    dynamodb.create_table(
        TableName=rig.world.table, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "address", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "address", "AttributeType": "S"}])
    seed_rows(rig.world)
    rig.world.put(item("back", "example.com", "bob", "acme"))
    assert_recovered(rig, "back@acme.example.com")
    code, took = rig.stop()
    assert code == 0 and took <= 2.0


@pytest.mark.timeout(180)  # up to 45 s for the report, 60 s for the recovery
def test_shared_queue_deleted_while_running_is_reported_then_recreated(rig: Rig) -> None:
    sqs = rig.world.client("sqs")
    rig.start()
    rig.wait_event("cycle done")
    sqs.delete_queue(QueueUrl=rig.world.queue_url)

    # Timer cycles go on (the maps still follow the table) ...
    done = rig.cycles_done()
    rig.world.put(item("timer", "example.com", "bob", "acme"))
    rig.wait_event("cycle done", after=done, timeout=20,
                   where=lambda e: e.get("trigger") == "timer" and bool(e.get("changed")))
    # ... but a queue that keeps failing is reported, not only logged (issue 10 item 9).
    wait_for(lambda: [e for e in rig.fail_errors() if "queue" in e.lower()],
             timeout=45, what="a /fail ping whose error names the queue")
    assert_no_temps(rig.root)

    recreated = sqs.create_queue(QueueName=rig.world.queue_url.rsplit("/", 1)[1],
                                 Attributes={"VisibilityTimeout": "4"})["QueueUrl"]
    assert recreated == rig.world.queue_url
    key = rig.change()
    assert_recovered(rig, key, timeout=60)  # the receive backoff may have grown meanwhile
    rig.wait_event("cycle done", timeout=5, where=lambda e: e.get("trigger") == "message")
    code, took = rig.stop()
    assert code == 0 and took <= 2.0


def test_private_queue_deleted_while_running_is_set_up_again(rig: Rig) -> None:
    sns, sqs = rig.world.client("sns"), rig.world.client("sqs")
    topic = sns.create_topic(Name=f"cabal-address-changed-{rig.world.table[-8:]}")["TopicArn"]
    del rig.env["SQS_QUEUE_URL"]
    try:
        rig.start(RECONFIGURE_SNS_TOPIC_ARN=topic)
        rig.wait_event("private queue ready")
        rig.wait_event("cycle done")
        urls = sqs.list_queues(QueueNamePrefix=prefix_for(rig.tier)).get("QueueUrls", [])
        assert len(urls) == 1
        sqs.delete_queue(QueueUrl=urls[0])

        # Timer cycles go on meanwhile, and the daemon sets its queue up again by itself.
        rig.wait_event("private queue ready", after=1, timeout=45)
        rig.world.put(item("fanned", "example.com", "bob", "acme"))
        sns.publish(TopicArn=topic, Message=json.dumps(
            {"event": "address_changed", "timestamp": "2026-11-29T12:00:00Z"}))
        wait_for(lambda: "fanned@acme.example.com" in virtusertable(rig.root), timeout=20,
                 what="the change live")
        rig.wait_event("cycle done", timeout=20, where=lambda e: e.get("trigger") == "message")
        assert_whole(rig.root, rig.tier)
        assert_no_temps(rig.root)
        code, took = rig.stop()
        assert code == 0 and took <= 2.0
        assert not sqs.list_queues(QueueNamePrefix=prefix_for(rig.tier)).get("QueueUrls")
    finally:
        rig.close()
        sns.delete_topic(TopicArn=topic)
        for url in sqs.list_queues(QueueNamePrefix=prefix_for(rig.tier)).get("QueueUrls", []):
            sqs.delete_queue(QueueUrl=url)
