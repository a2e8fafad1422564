"""makemap failing, and a daemon killed while makemap runs (docs/design.md §5)."""

from __future__ import annotations

import pytest

from tests.faults.invariants import (
    assert_message_kept,
    assert_no_temps,
    assert_recovered,
    assert_reported,
    assert_serving,
    live,
)
from tests.faults.rig import Rig
from tests.support.world import temp_files, wait_for


def real_makemap(rig: Rig) -> list[str]:
    return ["/usr/sbin/makemap", "-C", str(rig.root / "sendmail.cf")]


@pytest.mark.parametrize("tier", ["imap", "smtp-in"])
def test_makemap_failing_then_working(rig: Rig) -> None:
    makemap = rig.tool("makemap", real_makemap(rig))
    rig.start(RECONFIGURE_MAKEMAP=str(makemap.path))
    rig.wait_event("cycle done")
    before = live(rig.root, rig.tier)
    makemap.fail()  # exits 65 after writing the good lines, as on a bad line
    key = rig.change()

    assert_reported(rig, "makemap exited 65")
    assert_serving(rig.root, rig.tier, before)
    assert_no_temps(rig.root)
    assert_message_kept(rig)

    makemap.fail(False)
    assert_recovered(rig, key)
    code, took = rig.stop()
    assert code == 0 and took <= 2.0


def test_sigkill_during_makemap_then_restart(rig: Rig) -> None:
    makemap = rig.tool("makemap", real_makemap(rig))
    rig.start(RECONFIGURE_MAKEMAP=str(makemap.path))
    rig.wait_event("cycle done")
    before = live(rig.root, rig.tier)
    makemap.hang()  # a big map: the temp .db is written, makemap not done yet
    key = rig.change()
    wait_for(makemap.running, timeout=20, what="makemap running")
    rig.kill()
    makemap.kill()  # the container's processes die with it

    assert_serving(rig.root, rig.tier, before)
    assert temp_files(rig.root), "a SIGKILL during makemap leaves its temp files"

    rig.start()  # supervisord starts it again
    assert_recovered(rig, key)  # ... and its own temp files are swept (issue 10 item 10)
    code, took = rig.stop()
    assert code == 0 and took <= 2.0

