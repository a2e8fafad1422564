"""Validated addresses → the domain tree (SPEC §3), and its sorted view for templates."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from reconfigure.rows import Address, Skipped, validate


@dataclass(slots=True)
class TldNode:
    """Addresses of one tld: legacy ones by username, and those of each subdomain."""

    addresses: dict[str, str] = field(default_factory=dict)
    subdomains: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)


Tree = dict[str, TldNode]


def _insert(tree: Tree, address: Address) -> None:
    """Later rows overwrite earlier ones on the same (tld, subdomain, username)."""
    node = tree.get(address.tld)
    if node is None:
        node = tree[address.tld] = TldNode()
    if address.subdomain:
        node.subdomains.setdefault(address.subdomain, {})[address.username] = address.accounts
    else:
        node.addresses[address.username] = address.accounts[0]


@dataclass(slots=True)
class TreeBuilder:
    """Validates rows page by page into a tree, so no raw page outlives its turn."""

    tree: Tree = field(default_factory=dict)
    rows: int = 0
    skipped: list[Skipped] = field(default_factory=list)

    def add(self, items: Iterable[Mapping[str, object]]) -> list[Skipped]:
        """Adds a page of scan items; returns the rows of that page that were skipped."""
        return self.add_validated(map(validate, items))

    def add_validated(self, results: Iterable[Address | Skipped]) -> list[Skipped]:
        skipped: list[Skipped] = []
        for result in results:
            self.rows += 1
            if isinstance(result, Skipped):
                skipped.append(result)
            else:
                _insert(self.tree, result)
        self.skipped.extend(skipped)
        return skipped


def count_addresses(tree: Tree) -> int:
    """How many addresses the tree renders: the mass-deletion guard compares these."""
    return sum(
        len(node.addresses) + sum(len(sub) for sub in node.subdomains.values())
        for node in tree.values()
    )


@dataclass(frozen=True, slots=True)
class SubdomainView:
    name: str  # "sub.tld"
    addresses: list[tuple[str, str]]  # (username, target), sorted by username


@dataclass(frozen=True, slots=True)
class TldView:
    name: str
    addresses: list[tuple[str, str]]  # (username, account), sorted by username
    subdomains: list[SubdomainView]  # sorted by subdomain


def target(accounts: tuple[str, ...]) -> str:
    """The virtusertable value, and the alias name for several accounts: `alice_carol`."""
    return "_".join(accounts)


def sorted_view(tree: Tree) -> list[TldView]:
    """Everything in code-point order (Python's sorted), which is what the files use."""
    return [
        TldView(
            name=tld,
            addresses=sorted(node.addresses.items()),
            subdomains=[
                SubdomainView(
                    name=f"{sub}.{tld}",
                    addresses=[(user, target(accs)) for user, accs in sorted(users.items())],
                )
                for sub, users in sorted(node.subdomains.items())
            ],
        )
        for tld, node in sorted(tree.items())
    ]


def shared_aliases(tree: Tree) -> list[tuple[str, tuple[str, ...]]]:
    """One (alias, accounts) per distinct multi-account target, sorted by alias."""
    aliases: dict[str, tuple[str, ...]] = {}
    for node in tree.values():
        for users in node.subdomains.values():
            for accounts in users.values():
                if len(accounts) > 1:
                    aliases[target(accounts)] = accounts
    return sorted(aliases.items())
