"""A Healthchecks receiver that hangs or answers 500: the cycles, the maps and the queue
never wait on it, the failure shows in the status file and the log, a stop still takes
≤ 2 s, and pings flow again once the receiver is back, without a restart
(docs/design.md §7)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

from tests.faults.gate import Gate
from tests.faults.invariants import (
    assert_log_lines_only,
    assert_no_temps,
    assert_whole,
    virtusertable,
)
from tests.faults.rig import PING_PATH, Rig
from tests.support.world import wait_for


@pytest.fixture
def receiver_gate(rig: Rig) -> Iterator[Gate]:
    """The ping receiver behind a gate: a Healthchecks that accepts and never answers."""
    parsed = urlparse(rig.ping_url())
    assert parsed.hostname is not None and parsed.port is not None
    gate = Gate((parsed.hostname, parsed.port)).up()
    yield gate
    gate.close()


def change_goes_live(rig: Rig) -> None:
    """A change goes live and its message is deleted, whatever the pings do."""
    key = rig.change()
    wait_for(lambda: key in virtusertable(rig.root), timeout=20, what=f"{key} live")
    wait_for(lambda: rig.world.queue_depth() == 0, timeout=20, what="the message deleted")


def ping_failure_in_status(rig: Rig) -> dict[str, object]:
    """The status file's last_ping is the previous cycles' ping: a new cycle records it."""
    change_goes_live(rig)
    last: dict[str, object] = wait_for(
        lambda: (lambda p: p if isinstance(p, dict) and p.get("ok") is False else None)(
            rig.status().get("last_ping")),
        timeout=30, what="the status file recording a failed ping")
    return last


def answered(rig: Rig, status: int) -> int:
    """Success pings the receiver answered with `status`."""
    return sum(1 for request, response in rig.pings.log
               if request.path == PING_PATH and response.status_code == status)


def test_heartbeat_receiver_hangs_then_answers(rig: Rig, receiver_gate: Gate) -> None:
    receiver_gate.hold_all()
    # A long fallback timer: a handful of pings, each held for its timeout and retries.
    rig.start(HEALTHCHECK_PING_URL=receiver_gate.url + PING_PATH, RECONFIGURE_INTERVAL="60")
    rig.wait_event("cycle done")
    change_goes_live(rig)  # no cycle waits on a ping
    rig.wait_event("heartbeat ping failed", timeout=40)
    ping_failure_in_status(rig)
    assert_whole(rig.root, rig.tier)
    assert_no_temps(rig.root)
    assert_log_lines_only(rig)

    receiver_gate.release()
    change_goes_live(rig)
    wait_for(lambda: answered(rig, 200), timeout=40, what="a success ping answered")
    code, took = rig.stop()
    assert code == 0 and took <= 2.0


def test_heartbeat_receiver_hangs_sigterm_within_2_s(rig: Rig, receiver_gate: Gate) -> None:
    receiver_gate.hold_all()
    rig.start(HEALTHCHECK_PING_URL=receiver_gate.url + PING_PATH, RECONFIGURE_INTERVAL="60")
    rig.wait_event("cycle done")
    assert receiver_gate.held.wait(10), "no ping reached the receiver"
    change_goes_live(rig)
    code, took = rig.stop()
    assert code == 0 and took <= 2.0
    assert_whole(rig.root, rig.tier)
    assert_no_temps(rig.root)
    assert_log_lines_only(rig)


def test_heartbeat_receiver_answers_500_then_200(rig: Rig) -> None:
    rig.answer_pings(500)
    rig.start()
    rig.wait_event("cycle done")
    change_goes_live(rig)  # a failed ping never fails a cycle or keeps a message
    rig.wait_event("heartbeat ping failed", where=lambda e: e.get("status") == 500)
    last = ping_failure_in_status(rig)
    assert last["status"] == 500
    assert not rig.events("cycle failed")
    assert_log_lines_only(rig)

    rig.answer_pings(200)
    change_goes_live(rig)
    wait_for(lambda: answered(rig, 200), timeout=30, what="a success ping answered")
    wait_for(lambda: (rig.status().get("last_ping") or {}).get("ok") is True, timeout=30,
             what="the status file recording the recovered ping")
    code, took = rig.stop()
    assert code == 0 and took <= 2.0
