"""The mass-deletion guard: refuse to apply a table read that would drop most addresses.

A table read that suddenly has far fewer addresses than the last applied render is more
likely a mis-pointed table or an IAM change than a real mass deletion; applying it would
bounce mail for everyone. `reconfigure once --force` (or a higher limit) lets it through.
"""

from __future__ import annotations

GUARD_MINIMUM = 20  # below this many rendered addresses the guard stays out of the way


class GuardTripped(RuntimeError):
    """The table read would drop too many addresses: nothing was applied."""


def check(addresses: int, previous: object, limit_percent: float, *, force: bool) -> None:
    """Raise GuardTripped when `addresses` is more than `limit_percent` below `previous`
    (the address count of the last applied render; anything but an int means unknown)."""
    if (not force and isinstance(previous, int) and previous >= GUARD_MINIMUM
            and addresses < previous * (1 - limit_percent / 100)):
        raise GuardTripped(
            f"table read has {addresses} addresses, {previous} are rendered: more than "
            f"{limit_percent:g}% would go, nothing applied. If this is intended, run "
            f"`reconfigure once --force` or raise RECONFIGURE_MAX_SHRINK_PERCENT")
