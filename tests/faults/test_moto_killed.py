"""moto itself SIGKILLed while a scan of a large table is in flight, then started again on
the same port (docs/design.md §6). moto keeps nothing across a restart, so the test puts
back what AWS would still hold (table, rows, queue) and re-sends the message it lost; the
gate-held variant in test_aws.py keeps the queue and checks the message itself."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.invariants import (
    assert_no_temps,
    assert_recovered,
    assert_reported,
    assert_serving,
    live,
)
from tests.faults.moto_process import MotoProcess
from tests.faults.rig import VISIBILITY, Rig, seed_rows
from tests.faults.test_aws import OUTAGE, SCAN
from tests.support.items import item
from tests.support.world import AwsWorld

LARGE = 2000  # rows: moto takes about a second to answer the scan


@pytest.fixture
def moto() -> Iterator[MotoProcess]:
    process = MotoProcess().start()
    yield process
    process.kill()


@pytest.fixture
def moto_endpoint(moto: MotoProcess) -> str:
    """This module's AWS: its own moto process, not the session's."""
    return moto.url


def put_large_table(world: AwsWorld) -> None:
    dynamodb = world.client("dynamodb")
    rows = [item(f"bulk{n}", "example.com", "alice", "bulk") for n in range(LARGE)]
    for start in range(0, len(rows), 25):
        dynamodb.batch_write_item(RequestItems={world.table: [
            {"PutRequest": {"Item": row}} for row in rows[start:start + 25]]})


def recreate(world: AwsWorld) -> None:
    """What AWS would still hold after its outage: the table, its rows, the queue."""
    world.client("dynamodb").create_table(
        TableName=world.table, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "address", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "address", "AttributeType": "S"}])
    seed_rows(world)
    put_large_table(world)
    url = world.client("sqs").create_queue(
        QueueName=world.queue_url.rsplit("/", 1)[1],
        Attributes={"VisibilityTimeout": str(VISIBILITY)})["QueueUrl"]
    assert url == world.queue_url


def test_moto_killed_mid_scan_then_restarted(rig: Rig, moto: MotoProcess) -> None:
    put_large_table(rig.world)
    rig.start()
    rig.wait_event("cycle done", timeout=30)
    before = live(rig.root, rig.tier)
    rig.gate.watch(SCAN)
    key = rig.change()
    assert rig.gate.seen.wait(20), "no scan request reached moto"
    moto.kill()  # moto is computing the large page: the connection is reset mid-scan

    assert_reported(rig, OUTAGE)
    assert_serving(rig.root, rig.tier, before)
    assert_no_temps(rig.root)

    moto.start()
    recreate(rig.world)
    rig.world.put(item(key.split("@")[0], "example.com", "bob", "acme"))
    rig.world.notify()  # the message moto lost
    assert_recovered(rig, key)
    code, took = rig.stop()
    assert code == 0 and took <= 2.0


def test_moto_not_running_at_start_then_up_on_its_port(rig: Rig, moto: MotoProcess) -> None:
    prep = rig.once()  # the image's startup prep built the config the daemon starts with
    assert prep.returncode == 0, prep.stdout + prep.stderr
    before = live(rig.root, rig.tier)
    moto.kill()
    rig.start(AWS_ENDPOINT_URL=moto.url)  # nothing listens there: connection refused

    assert_reported(rig, OUTAGE)
    assert_serving(rig.root, rig.tier, before)
    assert_no_temps(rig.root)

    moto.start()
    recreate(rig.world)
    rig.world.put(item("late", "example.com", "bob", "acme"))
    rig.world.notify()
    assert_recovered(rig, "late@acme.example.com")
    code, took = rig.stop()
    assert code == 0 and took <= 2.0
