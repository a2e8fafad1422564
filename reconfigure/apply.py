"""Making rendered files live (docs/design.md §5): compare, stage, compile, then swap.

Everything a cycle changes is first staged beside its destination — text files, and
each hash map compiled by makemap into a temp `.db` — and only when every step worked
is anything renamed into place. A failure discards the staged files, so the previous
maps stay in force (last known good) and no `.db` is ever missing or half-built.
"""

from __future__ import annotations

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
    data = static_aliases(root) + ALIASES_HEADER + rendered.files[dynamic.path]
    target = files.under(root, ALIASES)
    if files.read_or_none(target) == data:
        return None
    return Change(ALIASES, target, data, hash_map=False, reload=Reload.NEWALIASES)


class StaticAliasesError(RuntimeError):
    """The image's static aliases cannot be read: the cycle fails, /etc/aliases stays."""


def static_aliases(root: Path) -> bytes:
    """The image's part of /etc/aliases (postmaster, root). Missing or unreadable, it fails
    the cycle: an /etc/aliases assembled without it would silently drop them."""
    path = files.under(root, ALIASES_STATIC)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise StaticAliasesError(f"{path} is missing: it holds postmaster and root, so "
                                 f"{files.under(root, ALIASES)} is left as it is") from None
    except OSError as error:
        raise StaticAliasesError(f"{path} is unreadable ({error.strerror}): "
                                 f"{files.under(root, ALIASES)} is left as it is") from None


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
                files.settle_like(item.db, db_path(change.target))
    except BaseException:
        discard(staged)
        raise
    return staged


def discard(staged: Sequence[Staged]) -> None:
    for item in staged:
        files.discard(item.text)
        if item.db is not None:
            files.discard(item.db)


class SwapFailed(RuntimeError):
    """A rename failed part-way: `applied` is what went live before it (its reloads are
    owed); every temp file not yet renamed has been removed."""

    def __init__(self, message: str, applied: Applied) -> None:
        super().__init__(message)
        self.applied = applied


def swap(staged: Sequence[Staged]) -> Applied:
    """Rename everything into place: each map's `.db` before its text, so a crash between
    the two leaves a text file that differs from the render and is redone next cycle."""
    applied = Applied()
    for index, item in enumerate(staged):
        try:
            if item.db is not None:
                files.swap_in(item.db, db_path(item.change.target))
            files.swap_in(item.text, item.change.target)
        except OSError as error:
            _partly_live(item, applied)
            discard(staged[index:])
            where = error.filename2 or error.filename or item.change.target
            raise SwapFailed(f"cannot replace {where}: {error.strerror or error}",
                             applied) from error
        applied.changed.append(item.change.container_path)
        if item.change.reload is not None:
            applied.reloads.add(item.change.reload)
    return applied


def _partly_live(item: Staged, applied: Applied) -> None:
    """What of a failed item is live anyway: a rename done before its directory's fsync
    failed, or the `.db` renamed before its text; its reload is owed all the same."""
    text_live = not item.text.exists()
    db_live = item.db is not None and not item.db.exists()
    if text_live:
        applied.changed.append(item.change.container_path)
    if (text_live or db_live) and item.change.reload is not None:
        applied.reloads.add(item.change.reload)
