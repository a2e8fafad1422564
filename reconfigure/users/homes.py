"""Per-user directories under a home, made without ever following a symlink.

Homes are user-controlled and live on a network file system with large Maildirs: every
step works relative to a directory fd opened with O_NOFOLLOW, changes only the one inode
it names (never recursive), and refuses a home that is a symlink or someone else's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

HOME_MODE = 0o755  # for a home created here (useradd makes the others)
MAILDIR_MODE = 0o700
PROCMAIL_DIR_MODE = 0o755
PROCMAILRC_MODE = 0o644
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Refused(Exception):
    """A home that breaks a safety rule: this user is skipped and nothing is changed."""


def check_new_home(home: Path, uid: int) -> None:
    """Before useradd -m: it would follow a symlink here, so refuse one up front."""
    try:
        st = os.lstat(home)
    except FileNotFoundError:
        return
    _check_owner_and_type(st, "home", uid)


def _check_owner_and_type(st: os.stat_result, what: str, uid: int) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise Refused(f"{what} is a symlink")
    if not stat.S_ISDIR(st.st_mode):
        raise Refused(f"{what} is not a directory")
    if st.st_uid not in (0, uid):
        raise Refused(f"{what} owned by uid {st.st_uid}")


def _open_dir(parent_fd: int, name: str, what: str, uid: int) -> int:
    """Open `name` below `parent_fd` without following a symlink; refuse a wrong kind."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as error:
        if error.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
    _check_owner_and_type(os.stat(name, dir_fd=parent_fd, follow_symlinks=False), what, uid)
    raise Refused(f"{what} changed while being opened")  # pragma: no cover - a race


def _ensure_dir(home_fd: int, name: str, uid: int, mode: int) -> None:
    """`name` in the home: a directory owned by uid:uid with `mode`; only that one inode
    is created or changed (never recursive)."""
    try:
        st = os.stat(name, dir_fd=home_fd, follow_symlinks=False)
    except FileNotFoundError:
        with contextlib.suppress(FileExistsError):  # made meanwhile: checked below
            os.mkdir(name, mode, dir_fd=home_fd)
    else:
        _check_owner_and_type(st, name, uid)
        if (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, uid, mode):
            return
    fd = _open_dir(home_fd, name, name, uid)
    try:
        st = os.fstat(fd)  # what we actually hold; the lstat above may be stale
        if st.st_uid not in (0, uid):
            raise Refused(f"{name} owned by uid {st.st_uid}")
        if (st.st_uid, st.st_gid) != (uid, uid):
            os.fchown(fd, uid, uid)
        if stat.S_IMODE(st.st_mode) != mode:
            os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _ensure_procmailrc(home_fd: int, uid: int, source: Callable[[], bytes]) -> None:
    """Copy the image's procmailrc in when the user has none; an existing one is the
    user's and is never replaced. Written to a temp file, then hard-linked into place:
    no reader sees a partial file, and a file that appeared meanwhile is not replaced."""
    try:
        st = os.stat(".procmailrc", dir_fd=home_fd, follow_symlinks=False)
    except FileNotFoundError:
        pass
    else:
        if stat.S_ISLNK(st.st_mode):
            raise Refused(".procmailrc is a symlink")
        return
    data = source()
    temp = f".procmailrc.{secrets.token_hex(6)}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 PROCMAILRC_MODE, dir_fd=home_fd)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchown(fd, uid, uid)
            os.fchmod(fd, PROCMAILRC_MODE)
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):  # the user made one meanwhile: theirs
            os.link(temp, ".procmailrc", src_dir_fd=home_fd, dst_dir_fd=home_fd,
                    follow_symlinks=False)
    finally:
        os.unlink(temp, dir_fd=home_fd)  # only ever our own temp file


def ensure_home(parent_fd: int, name: str, uid: int, source: Callable[[], bytes]) -> None:
    """Home, Maildir, .procmail and .procmailrc of one user, all relative to an fd of the
    home opened with O_NOFOLLOW, so that no symlink a user planted is ever followed."""
    made = False
    try:
        home_fd = _open_dir(parent_fd, name, "home", uid)
    except FileNotFoundError:
        # An existing account whose home is gone (useradd -m makes the new ones).
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, HOME_MODE, dir_fd=parent_fd)
        home_fd, made = _open_dir(parent_fd, name, "home", uid), True
    try:
        st = os.fstat(home_fd)
        if made and st.st_uid == 0:
            os.fchown(home_fd, uid, uid)
            os.fchmod(home_fd, HOME_MODE)
        elif st.st_uid not in (0, uid):
            raise Refused(f"home owned by uid {st.st_uid}")
        _ensure_dir(home_fd, "Maildir", uid, MAILDIR_MODE)
        _ensure_dir(home_fd, ".procmail", uid, PROCMAIL_DIR_MODE)
        _ensure_procmailrc(home_fd, uid, source)
    finally:
        os.close(home_fd)


def reader(path: Path) -> Callable[[], bytes]:
    """Reads `path` at most once, and only if some user needs it."""
    cache: list[bytes] = []

    def read() -> bytes:
        if not cache:
            cache.append(path.read_bytes())
        return cache[0]

    return read
