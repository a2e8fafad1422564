"""Validated addresses → the domain tree (SPEC §3), and its sorted view for templates."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from reconfigure.rows import Address, Skipped, validate

# One address in the tree: (target, accounts, created). `target` is what virtusertable
# maps the address to; `created` is the row's RequestTime ("" = oldest).
Entry = tuple[str, tuple[str, ...], str]
# Where an address sits in the tree: (tld, subdomain or "", username).
AddressKey = tuple[str, str, str]


@dataclass(slots=True)
class TldNode:
    """Addresses of one tld: legacy ones by username, and those of each subdomain."""

    addresses: dict[str, Entry] = field(default_factory=dict)
    subdomains: dict[str, dict[str, Entry]] = field(default_factory=dict)


Tree = dict[str, TldNode]


def target(accounts: tuple[str, ...]) -> str:
    """The virtusertable value, and the alias name for several accounts: `alice_carol`."""
    return "_".join(accounts)


def _insert(tree: Tree, address: Address) -> None:
    """Later rows overwrite earlier ones on the same (tld, subdomain, username)."""
    node = tree.get(address.tld)
    if node is None:
        node = tree[address.tld] = TldNode()
    entry = (target(address.accounts), address.accounts, address.created)
    if address.subdomain:
        node.subdomains.setdefault(address.subdomain, {})[address.username] = entry
    else:
        node.addresses[address.username] = entry


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


def _domains(tree: Tree) -> Iterable[tuple[str, str, dict[str, Entry]]]:
    """(tld, subdomain, addresses) of every domain that has addresses."""
    for tld, node in tree.items():
        if node.addresses:
            yield tld, "", node.addresses
        for sub, users in node.subdomains.items():
            yield tld, sub, users


def _has_no_case_variants(users: dict[str, Entry]) -> bool:
    # Usernames hold no newline. Equal after ASCII lower-casing implies equal after
    # str.lower, so distinct str.lower values rule case variants out.
    return len(set("\n".join(users).lower().split("\n"))) == len(users)


def address_losers(tree: Tree) -> frozenset[AddressKey]:
    """The addresses that are case variants of an older address (makemap would see one
    key twice): the row created first keeps the key — its RequestTime, "" (none) being
    the oldest — and equal times go to the code-point-first `user@domain<TAB>target`."""
    groups: dict[str, list[tuple[str, str, dict[str, Entry]]]] = {}
    for tld, sub, users in _domains(tree):
        # Domain names are ASCII (validated), so str.lower is makemap's lower-casing.
        groups.setdefault(f"{sub}.{tld}".lower() if sub else tld.lower(), []).append(
            (tld, sub, users))
    losers: set[AddressKey] = set()
    for members in groups.values():
        if len(members) == 1 and _has_no_case_variants(members[0][2]):
            continue
        variants: dict[bytes, list[tuple[tuple[str, str, str], AddressKey]]] = {}
        for tld, sub, users in members:
            domain = f"{sub}.{tld}" if sub else tld
            for username, (value, _, created) in users.items():
                variants.setdefault(username.encode().lower(), []).append(
                    ((created, f"{username}@{domain}", value), (tld, sub, username)))
        for same_key in variants.values():
            if len(same_key) > 1:
                same_key.sort()
                losers.update(key for _, key in same_key[1:])
    return frozenset(losers)


@dataclass(frozen=True, slots=True)
class SubdomainView:
    name: str  # "sub.tld"
    addresses: list[tuple[str, str]]  # (username, target), sorted by username


@dataclass(frozen=True, slots=True)
class TldView:
    name: str
    addresses: list[tuple[str, str]]  # (username, account), sorted by username
    subdomains: list[SubdomainView]  # sorted by subdomain


def _pairs(tld: str, sub: str, users: dict[str, Entry],
           without: frozenset[AddressKey]) -> list[tuple[str, str]]:
    if without:
        return [(user, entry[0]) for user, entry in sorted(users.items())
                if (tld, sub, user) not in without]
    return [(user, entry[0]) for user, entry in sorted(users.items())]


def sorted_view(tree: Tree, without: frozenset[AddressKey] = frozenset()) -> list[TldView]:
    """Everything in code-point order (Python's sorted), which is what the files use;
    the addresses in `without` are left out (their domains stay)."""
    return [
        TldView(
            name=tld,
            addresses=_pairs(tld, "", node.addresses, without),
            subdomains=[
                SubdomainView(name=f"{sub}.{tld}", addresses=_pairs(tld, sub, users, without))
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
            for alias, accounts, _ in users.values():
                if len(accounts) > 1:
                    aliases[alias] = accounts
    return sorted(aliases.items())
