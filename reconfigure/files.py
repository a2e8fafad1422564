"""Atomic file replacement: readers see the old bytes or the new, never a partial file."""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

DEFAULT_MODE = 0o644  # opendkim runs as its own user and must read the tables


def under(root: Path, container_path: str) -> Path:
    """Where an absolute container path lives below a root (RECONFIGURE_ROOT, --root)."""
    return root / container_path.lstrip("/")


def read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def stage(path: Path, data: bytes) -> Path:
    """Write `data` to a fresh temp file beside `path` (fsynced), owned like `path`.

    A replaced file keeps the live file's owner, group and mode: opendkim reads its tables
    as its own user after a reload, and a table turned root-only is one it silently stops
    reading. A file created for the first time is 0644, owned by the daemon's user and group
    (not the group a setgid directory such as Debian's /etc/mail would hand down).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        live = path.stat()
        owner, group, mode = live.st_uid, live.st_gid, live.st_mode & 0o7777
    except FileNotFoundError:
        owner, group, mode = os.geteuid(), os.getegid(), DEFAULT_MODE
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            copy_owner(handle.fileno(), owner, group, mode)
            os.fsync(handle.fileno())
    except BaseException:
        discard(temp)
        raise
    return temp


def copy_owner(fd: int, owner: int, group: int, mode: int) -> None:
    """Owner and group first: a chown clears the set-id bits the mode may carry."""
    os.fchown(fd, owner, group)
    os.fchmod(fd, mode)


def discard(temp: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        temp.unlink()


def swap_in(temp: Path, path: Path) -> None:
    """Rename a staged file over its destination and make the rename durable."""
    os.replace(temp, path)
    fsync_dir(path.parent)


def settle_like(temp: Path, live: Path) -> None:
    """Give a freshly built file (a makemap or newaliases `.db`) the live file's owner,
    group and mode (a first one keeps what its builder gave it), and make it durable
    before the swap."""
    fd = os.open(temp, os.O_RDONLY)
    try:
        with contextlib.suppress(FileNotFoundError):
            current = live.stat()
            copy_owner(fd, current.st_uid, current.st_gid, current.st_mode & 0o7777)
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data`; a failed rename (say the path is a directory) removes
    its temp file, so a failure repeated every cycle leaks nothing."""
    temp = stage(path, data)
    try:
        swap_in(temp, path)
    except BaseException:
        discard(temp)
        raise


def temp_names(path: Path) -> list[str]:
    """The glob patterns of the temp files written beside `path`: `stage`'s
    `.<name>.XXXXXXXX.tmp`, and the `.db` makemap or newaliases builds from one."""
    base = f".{glob.escape(path.name)}.*.tmp"
    return [base, base + ".db"]


def sweep(paths: Iterable[Path]) -> list[Path]:
    """Remove the temp files a killed process left beside `paths` (docs/design.md §5):
    only our own names, never anything else in the directory. The removed paths."""
    removed = []
    for path in sorted(set(paths)):
        for pattern in temp_names(path):
            for temp in sorted(path.parent.glob(pattern)):
                if temp.is_file() and not temp.is_symlink():
                    discard(temp)
                    removed.append(temp)
    return removed
