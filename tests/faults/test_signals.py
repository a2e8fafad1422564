"""SIGTERM during the scan, during makemap and right after the swap: exit 0 within 2 s,
nothing half-applied, every /start answered, and what was abandoned after the swap owed
and done after the restart (docs/design.md §5, §6)."""

from __future__ import annotations

import pytest

from tests.faults.invariants import (
    assert_log_lines_only,
    assert_message_kept,
    assert_no_temps,
    assert_recovered,
    assert_serving,
    assert_starts_answered,
    assert_whole,
    live,
    virtusertable,
)
from tests.faults.rig import Rig
from tests.faults.test_aws import SCAN
from tests.support.items import item
from tests.support.world import wait_for


def stopped_pinged(rig: Rig) -> None:
    """The cycle cut short after its /start is a /fail saying `stopped`."""
    wait_for(lambda: "stopped" in rig.fail_errors(), timeout=5,
             what="a /fail ping saying stopped")
    assert_starts_answered(rig)
    assert_log_lines_only(rig)


def test_sigterm_during_scan(rig: Rig) -> None:
    rig.start()
    rig.wait_event("cycle done")
    before = live(rig.root, rig.tier)
    rig.gate.hold(SCAN)
    key = rig.change()
    assert rig.gate.held.wait(20), "no scan request reached AWS"

    code, took = rig.stop()
    assert code == 0 and took <= 2.0
    stopped_pinged(rig)
    assert_serving(rig.root, rig.tier, before)
    assert_no_temps(rig.root)
    assert_message_kept(rig)

    rig.gate.release()
    rig.start()
    assert_recovered(rig, key)
    code, took = rig.stop()
    assert code == 0 and took <= 2.0


@pytest.mark.parametrize("tier", ["imap", "smtp-in"])
def test_sigterm_during_makemap(rig: Rig) -> None:
    makemap = rig.tool("makemap", ["/usr/sbin/makemap", "-C", str(rig.root / "sendmail.cf")])
    rig.start(RECONFIGURE_MAKEMAP=str(makemap.path))
    rig.wait_event("cycle done")
    before = live(rig.root, rig.tier)
    makemap.hang()
    key = rig.change()
    wait_for(makemap.running, timeout=20, what="makemap running")

    code, took = rig.stop()
    assert code == 0 and took <= 2.0
    assert not makemap.running(), "makemap outlived the daemon"
    stopped_pinged(rig)
    assert_serving(rig.root, rig.tier, before)
    assert_no_temps(rig.root)
    assert_message_kept(rig)

    makemap.hang(False)
    rig.start()
    assert_recovered(rig, key)
    code, took = rig.stop()
    assert code == 0 and took <= 2.0


def test_sigterm_right_after_swap_owes_newaliases_across_the_restart(rig: Rig) -> None:
    newaliases = rig.tool("newaliases", None)
    rig.start(RECONFIGURE_NEWALIASES=str(newaliases.path))
    rig.wait_event("cycle done")
    first = newaliases.calls()
    newaliases.hang()  # the swap is done when newaliases runs
    rig.world.put(item("team", "example.com", "bob/dave", "acme"))  # a new alias: bob_dave
    rig.world.notify()
    wait_for(newaliases.running, timeout=20, what="newaliases running after the swap")

    code, took = rig.stop()
    assert code == 0 and took <= 2.0
    assert not newaliases.running(), "newaliases outlived the daemon"
    # The swap finished: the new config is live, whole, and nothing is left behind.
    assert "team@acme.example.com" in virtusertable(rig.root)
    assert_whole(rig.root, rig.tier)
    assert_no_temps(rig.root)
    assert "newaliases" in rig.status().get("owed_reloads", []), \
        "the abandoned newaliases is not persisted as owed"
    stopped_pinged(rig)

    newaliases.hang(False)
    calls = newaliases.calls()
    rig.start()
    # Nothing differs from the render now: only the persisted debt makes it run again.
    wait_for(lambda: newaliases.calls() > calls, timeout=20, what="the owed newaliases")
    assert calls > first
    wait_for(lambda: rig.status().get("owed_reloads", []) == [] and rig.last_cycle().get("ok"),
             timeout=20, what="no reload owed")
    wait_for(lambda: rig.world.queue_depth() == 0, timeout=30, what="the message deleted")
    assert_no_temps(rig.root)
    code, took = rig.stop()
    assert code == 0 and took <= 2.0
