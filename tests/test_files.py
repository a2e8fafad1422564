"""A replaced file (text or `.db`) keeps the live file's owner, group and mode.

opendkim reads KeyTable/SigningTable as its own user after SIGUSR1: a table the daemon
replaced as root:root 0640 is unreadable to it, and opendkim then keeps its old tables
without a word, so DKIM signing of new domains silently stops. These tests run as root
(they chown to ids nobody holds) and use the real makemap.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from reconfigure import apply, files

OWNER, GROUP = 61234, 61235  # ids no account on the machine holds
MAKEMAP = ("makemap",)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")


def ownership(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


@pytest.fixture
def cf(tmp_path: Path) -> Path:
    """makemap reads a cf for TrustedUser; an empty one keeps it from the machine's."""
    path = tmp_path / "sendmail.cf"
    path.write_text("# no options\n")
    return path


def test_replaced_file_keeps_owner_group_and_mode(tmp_path: Path) -> None:
    live = tmp_path / "KeyTable"
    live.write_bytes(b"old\n")
    os.chown(live, OWNER, GROUP)
    live.chmod(0o640)
    files.atomic_write(live, b"new\n")
    assert live.read_bytes() == b"new\n"
    assert ownership(live) == (OWNER, GROUP, 0o640)


def test_special_bits_survive_the_chown(tmp_path: Path) -> None:
    """chown clears set-id bits, so the mode is set after the owner."""
    live = tmp_path / "odd"
    live.write_bytes(b"old\n")
    os.chown(live, OWNER, GROUP)
    live.chmod(0o2640)
    files.atomic_write(live, b"new\n")
    assert ownership(live) == (OWNER, GROUP, 0o2640)


def test_new_file_is_0644_root_even_in_a_setgid_directory(tmp_path: Path) -> None:
    """Debian's /etc/mail is setgid smmsp: a first-time file still comes out root:root 0644."""
    directory = tmp_path / "mail"
    directory.mkdir()
    os.chown(directory, 0, GROUP)
    directory.chmod(0o2755)
    created = directory / "masq-domains"
    files.atomic_write(created, b"example.com\n")
    assert ownership(created) == (0, 0, 0o644)


def test_staged_file_already_carries_the_owner(tmp_path: Path) -> None:
    """Ownership is set on the temp file, so the rename never shows a root-owned table."""
    live = tmp_path / "SigningTable"
    live.write_bytes(b"old\n")
    os.chown(live, OWNER, GROUP)
    live.chmod(0o640)
    temp = files.stage(live, b"new\n")
    try:
        assert ownership(temp) == (OWNER, GROUP, 0o640)
    finally:
        files.discard(temp)


def change(target: Path, data: bytes) -> apply.Change:
    return apply.Change(f"/etc/mail/{target.name}", target, data, hash_map=True, reload=None)


def test_replaced_map_db_keeps_owner_group_and_mode(tmp_path: Path, cf: Path) -> None:
    target = tmp_path / "access"
    makemap = (*MAKEMAP, "-C", str(cf))
    apply.swap(apply.stage([change(target, b"To:a@x.example\tRELAY\n")], makemap=makemap,
                           timeout=30))
    live_db = apply.db_path(target)
    os.chown(live_db, OWNER, GROUP)
    live_db.chmod(0o640)
    os.chown(target, OWNER + 1, GROUP + 1)
    target.chmod(0o600)

    apply.swap(apply.stage([change(target, b"To:b@x.example\tRELAY\n")], makemap=makemap,
                           timeout=30))
    assert ownership(live_db) == (OWNER, GROUP, 0o640)
    assert ownership(target) == (OWNER + 1, GROUP + 1, 0o600)
    assert b"b@x.example" in live_db.read_bytes()


def test_first_map_db_is_what_makemap_gives(tmp_path: Path, cf: Path) -> None:
    target = tmp_path / "mailertable"
    apply.swap(apply.stage([change(target, b".x.example\tsmtp:[imap.internal]\n")],
                           makemap=(*MAKEMAP, "-C", str(cf)), timeout=30))
    uid, gid, _mode = ownership(apply.db_path(target))
    assert (uid, gid) == (os.geteuid(), os.getegid())
    assert ownership(target) == (0, 0, 0o644)
