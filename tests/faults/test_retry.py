"""A failed cycle is tried again by the loop itself, with backoff: no message, a far timer,
and the change still goes live soon after the fault ends (issue 10 item 9: "the loop
tries again with backoff"; docs/design.md §6)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from tests.faults.invariants import assert_no_temps, assert_reported, assert_whole
from tests.faults.rig import Rig
from tests.faults.test_aws import OUTAGE


def aws_down(rig: Rig) -> tuple[str, Callable[[], None]]:
    rig.gate.down()

    def end() -> None:
        rig.gate.up()

    return OUTAGE, end


def makemap_failing(rig: Rig) -> tuple[str, Callable[[], None]]:
    makemap = rig.tool("makemap", ["/usr/sbin/makemap", "-C", str(rig.root / "sendmail.cf")])
    makemap.fail()
    rig.env["RECONFIGURE_MAKEMAP"] = str(makemap.path)
    return "makemap exited 65", lambda: makemap.fail(False)


@pytest.mark.timeout(150)  # up to 40 s for the second try, 60 s for the recovery
@pytest.mark.parametrize("fault", [aws_down, makemap_failing], ids=["aws-down", "makemap-65"])
def test_failed_cycle_is_retried_with_backoff_before_the_timer(
        rig: Rig, fault: Callable[[Rig], tuple[str, Callable[[], None]]]) -> None:
    cause, end = fault(rig)
    del rig.env["SQS_QUEUE_URL"]  # periodic mode: no redelivered message retries for it
    rig.start(RECONFIGURE_INTERVAL="900")
    assert_reported(rig, cause)
    assert_no_temps(rig.root)

    rig.wait_event("cycle failed", after=1, timeout=40)  # tried again, not only at 900 s
    first, second = (e["timestamp"] for e in rig.events("cycle failed")[:2])
    gap = (datetime.fromisoformat(second) - datetime.fromisoformat(first)).total_seconds()
    assert gap >= 1.0, f"retried {gap:.2f} s after the failure: a tight loop, not a backoff"

    end()
    done = rig.wait_event("cycle done", timeout=60)
    assert done["trigger"] != "startup"
    assert rig.last_cycle().get("ok") is True
    assert_whole(rig.root, rig.tier)
    assert_no_temps(rig.root)
    code, took = rig.stop()
    assert code == 0 and took <= 2.0
