"""The mass-deletion guard: refuse to apply a table read that would drop most addresses.

A table read that suddenly has far fewer addresses than the last applied render is more
likely a mis-pointed table or an IAM change than a real mass deletion; applying it would
bounce mail for everyone. `reconfigure once --force` (or a higher limit) lets it through.
"""

from __future__ import annotations

from pathlib import Path

from reconfigure import files
from reconfigure.tiers import Tier

GUARD_MINIMUM = 20  # below this many rendered addresses the guard stays out of the way


class GuardTripped(RuntimeError):
    """The table read would drop too many addresses: nothing was applied."""


def check(addresses: int, previous: int | None, limit_percent: float, *, force: bool) -> None:
    """Raise GuardTripped when `addresses` is more than `limit_percent` below `previous`
    (see `reference`; None means unknown)."""
    if (not force and previous is not None and previous >= GUARD_MINIMUM
            and addresses < previous * (1 - limit_percent / 100)):
        raise GuardTripped(
            f"table read has {addresses} addresses, {previous} are rendered: more than "
            f"{limit_percent:g}% would go, nothing applied. If this is intended, run "
            f"`reconfigure once --force` or raise RECONFIGURE_MAX_SHRINK_PERCENT")


def reference(recorded: object, tier: Tier, root: Path) -> int | None:
    """The address count to compare with: the one recorded after the last applied render,
    else (no status file yet, or a corrupt one) the lines of the live virtusertable, one
    per address. None when neither exists (a first start: nothing to protect)."""
    if isinstance(recorded, int) and not isinstance(recorded, bool) and recorded >= 0:
        return recorded
    artifact = next((a for a in tier.artifacts if a.path.endswith("/virtusertable")), None)
    if artifact is None:
        return None
    data = files.read_or_none(files.under(root, artifact.path))
    if data is None:
        return None
    return sum(1 for line in data.split(b"\n") if line.strip())
