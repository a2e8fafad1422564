"""Making rendered files live (docs/design.md §5): compare, stage, compile, then swap.

Everything a cycle changes is first staged beside its destination — text files, and
each hash map compiled by makemap into a temp `.db` — and only when every step worked
is anything renamed into place. A failure discards the staged files, so the previous
maps stay in force (last known good) and no `.db` is ever missing or half-built.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reconfigure import commands, files
from reconfigure.render import Rendered
from reconfigure.tiers import ALIASES, ALIASES_STATIC, Artifact, Reload, Tier

ALIASES_HEADER = b"\n# Dynamic aliases (generated from DynamoDB)\n"


@dataclass(frozen=True, slots=True)
class Change:
    """One file whose rendered bytes differ from disk, or a hash map without its `.db`."""

    container_path: str
    target: Path
    data: bytes
    hash_map: bool
    reload: Reload | None


@dataclass(slots=True)
class Staged:
    change: Change
    text: Path
    db: Path | None = None


@dataclass(slots=True)
class Applied:
    changed: list[str] = field(default_factory=list)  # container paths
    reloads: set[Reload] = field(default_factory=set)


def db_path(path: Path) -> Path:
    return path.with_name(path.name + ".db")


def plan(tier: Tier, rendered: Rendered, root: Path) -> list[Change]:
    """The files that need replacing: drift on disk heals, and an unchanged file is left alone."""
    changes = []
    for artifact in tier.artifacts:
        target = files.under(root, artifact.path)
        data = rendered.files[artifact.path]
        stale = files.read_or_none(target) != data
        if stale or (artifact.hash_map and not db_path(target).exists()):
            changes.append(Change(artifact.path, target, data, artifact.hash_map,
                                  artifact.reload))
    return changes


def aliases_change(tier: Tier, rendered: Rendered, root: Path) -> Change | None:
    """imap's /etc/aliases = the image's static part + the dynamic aliases, when it differs."""
    dynamic = _aliases_artifact(tier)
    if dynamic is None:
        return None
    static = files.read_or_none(files.under(root, ALIASES_STATIC)) or b""
    data = static + ALIASES_HEADER + rendered.files[dynamic.path]
    target = files.under(root, ALIASES)
    if files.read_or_none(target) == data:
        return None
    return Change(ALIASES, target, data, hash_map=False, reload=Reload.NEWALIASES)


def _aliases_artifact(tier: Tier) -> Artifact | None:
    return next((a for a in tier.artifacts if a.reload is Reload.NEWALIASES), None)


def stage(changes: Sequence[Change], *, makemap: Sequence[str], timeout: float,
          stop: threading.Event | None = None) -> list[Staged]:
    """Write every change to a temp file and compile every map; all or nothing.
    makemap exits 65 on any bad line yet writes the good ones: its exit status decides."""
    staged: list[Staged] = []
    try:
        for change in changes:
            if stop is not None and stop.is_set():
                raise commands.Stopped("staging")
            item = Staged(change, files.stage(change.target, change.data))
            staged.append(item)
            if change.hash_map:
                item.db = db_path(item.text)
                commands.run([*makemap, "hash", str(item.text)], stdin=item.text,
                             timeout=timeout, stop=stop)
                _settle_db(item.db, db_path(change.target))
    except BaseException:
        discard(staged)
        raise
    return staged


def _settle_db(temp_db: Path, live_db: Path) -> None:
    """Give a freshly built map the live map's owner, group and mode (a first map keeps
    what makemap gave it), and make it durable before the swap."""
    fd = os.open(temp_db, os.O_RDONLY)
    try:
        with contextlib.suppress(FileNotFoundError):
            live = live_db.stat()
            files.copy_owner(fd, live.st_uid, live.st_gid, live.st_mode & 0o7777)
        os.fsync(fd)
    finally:
        os.close(fd)


def discard(staged: Sequence[Staged]) -> None:
    for item in staged:
        files.discard(item.text)
        if item.db is not None:
            files.discard(item.db)


def swap(staged: Sequence[Staged]) -> Applied:
    """Rename everything into place: each map's `.db` before its text, so a crash between
    the two leaves a text file that differs from the render and is redone next cycle."""
    applied = Applied()
    for item in staged:
        if item.db is not None:
            files.swap_in(item.db, db_path(item.change.target))
        files.swap_in(item.text, item.change.target)
        applied.changed.append(item.change.container_path)
        if item.change.reload is not None:
            applied.reloads.add(item.change.reload)
    return applied
