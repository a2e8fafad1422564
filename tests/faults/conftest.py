"""Fixtures of the fault suite: a session moto server, this test's table and queue, a tier
root, and the Rig (a daemon behind a Gate, with a ping receiver)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from pytest_httpserver import HTTPServer

from tests.faults.gate import Gate
from tests.faults.rig import VISIBILITY, Rig, rig_env, seed_rows
from tests.support.world import AwsWorld, make_root, make_world


@pytest.fixture
def world(moto_endpoint: str) -> AwsWorld:
    """This test's table (seeded) and queue; a message a failed cycle keeps is visible
    again after VISIBILITY seconds, as the tier queue's 60 s would in production."""
    world = make_world(moto_endpoint)
    world.client("sqs").set_queue_attributes(
        QueueUrl=world.queue_url, Attributes={"VisibilityTimeout": str(VISIBILITY)})
    seed_rows(world)
    return world


@pytest.fixture
def gate(moto_endpoint: str) -> Iterator[Gate]:
    """AWS as the daemon sees it: moto behind a gate the test can shut and open."""
    parsed = urlparse(moto_endpoint)
    assert parsed.hostname is not None and parsed.port is not None
    gate = Gate((parsed.hostname, parsed.port)).up()
    yield gate
    gate.close()


@pytest.fixture
def tier() -> str:
    return "imap"


@pytest.fixture
def rig(world: AwsWorld, gate: Gate, tmp_path: Path, tier: str,
        httpserver: HTTPServer) -> Iterator[Rig]:
    root = make_root(tmp_path / "root")
    rig = Rig(world, gate, root, tmp_path, tier, httpserver)
    rig.answer_pings()
    rig.env = rig_env(world, gate, root, tier, rig.ping_url())
    yield rig
    rig.close()
