"""Shared builders for test data: DynamoDB-typed items and the worked example
(docs/design.md §4)."""

from __future__ import annotations

from reconfigure.render import Rendered, RenderOptions, render_tier
from reconfigure.tiers import TIERS
from reconfigure.tree import TreeBuilder

Item = dict[str, object]
RELAY = "imap.cabal.internal"


def item(username: str, tld: str, user: str, subdomain: str | None = None,
         **extra: object) -> Item:
    """A scan item shaped like the real table's rows."""
    domain = f"{subdomain}.{tld}" if subdomain else tld
    row: Item = {
        "address": {"S": f"{username}@{domain}"},
        "tld": {"S": tld},
        "username": {"S": username},
        "user": {"S": user},
    }
    if subdomain is not None:
        row["subdomain"] = {"S": subdomain}
    row.update(extra)
    return row


def worked_example() -> list[Item]:
    return [
        item("shop", "example.com", "carol/alice", "acme"),
        item("news", "example.com", "alice", "acme", suspended={"BOOL": True}),
        item("bank", "example.org", "bob", "zz"),
        item("postmaster", "example.org", "alice"),
        item("bad guy", "example.com", "alice", "acme"),
    ]


def render(items: list[Item], tier: str, *, sinkhole: bool = False) -> Rendered:
    builder = TreeBuilder()
    builder.add(items)
    return render_tier(TIERS[tier], builder.tree, RenderOptions(RELAY, sinkhole))


def text(items: list[Item], tier: str, path: str, *, sinkhole: bool = False) -> str:
    return render(items, tier, sinkhole=sinkhole).files[path].decode()
