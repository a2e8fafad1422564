"""A full file system under the live maps: staging fails, the previous maps stay in force,
no temp file is left, and the next cycle after space is freed applies the change
(docs/design.md §5)."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture
def small_fs(rig: Rig) -> Iterator[Path]:
    """A 256 kB tmpfs mounted over the root's /etc/mail (root only; skipped elsewhere)."""
    target = rig.root / "etc/mail"
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs",
                              str(target)], capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root and CAP_SYS_ADMIN): "
                    f"{mounted.stderr.strip()}")
    try:
        yield target
    finally:
        rig.close()  # nothing may hold the mount when it goes
        subprocess.run(["umount", "-l", str(target)], check=False)


def fill(directory: Path, leave: int) -> Path:
    """Fill the file system but `leave` bytes, with one file; the file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as error:
        assert error.errno == errno.ENOSPC
    finally:
        os.close(fd)
    os.truncate(filler, max(filler.stat().st_size - leave, 0))
    return filler


@pytest.mark.parametrize(("tier", "leave"), [
    ("imap", 0), ("smtp-in", 0),
    ("imap", 8192),  # room for the text files, not for makemap's .db
])
def test_full_file_system_then_space_freed(rig: Rig, small_fs: Path, leave: int) -> None:
    rig.start()
    rig.wait_event("cycle done")
    before = live(rig.root, rig.tier)
    filler = fill(small_fs, leave)
    key = rig.change()

    assert_reported(rig, "No space left on device" if leave == 0 else "makemap exited")
    assert_serving(rig.root, rig.tier, before)
    assert_no_temps(rig.root)
    assert_message_kept(rig)

    filler.unlink()
    assert_recovered(rig, key)
    code, took = rig.stop()
    assert code == 0 and took <= 2.0
