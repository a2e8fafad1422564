"""Validated addresses → the domain tree (docs/design.md §3), and its sorted view for templates."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

from reconfigure.rows import (
    _ACCESS_ADDRESS_EXTRA,
    _FORBIDDEN_IN_USERNAME,
    _LINE_BUDGET,
    _VIRTUSERTABLE_EXTRA,
    MAX_USERNAME_LENGTH,
    Address,
    Skipped,
    StringRows,
    _accounts,
    _created,
    _subdomain_rule,
    _tld_rule,
    validate,
)

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


class _Domain:
    """A valid (tld, subdomain) as TreeBuilder remembers it."""

    __slots__ = ("budget", "users")

    def __init__(self, budget: int) -> None:
        self.budget = budget  # bytes a map line leaves for the username and target
        self.users: dict[str, Entry] | None = None  # its dict in the tree, once made


class _Target:
    """A valid `user` value as TreeBuilder remembers it, with the entries made of it:
    rows with the same `user` and RequestTime share one (bulk imports repeat both)."""

    __slots__ = ("accounts", "entries", "target", "width")

    def __init__(self, accounts: tuple[str, ...]) -> None:
        self.accounts = accounts
        self.target = target(accounts)
        self.width = max(_VIRTUSERTABLE_EXTRA + len(self.target), _ACCESS_ADDRESS_EXTRA)
        self.entries: dict[str, Entry] = {}


# The attributes a StringRows page needs for TreeBuilder's row loop, in its order.
_COLUMNS = ("tld", "subdomain", "username", "user", "RequestTime")
_HAS_COLUMNS = frozenset(_COLUMNS).issubset
# ASCII but blanks and control characters, and the newline that joins usernames
_GRAPHIC_OR_NEWLINE = bytes([*range(0x21, 0x7F), ord("\n")])


# A row as TreeBuilder._add_rows reads it (a StringRows tuple or a scan item), and its fields.
_Row = TypeVar("_Row")
_Fields = tuple[str, str, str, str, str]
# No row has an empty tld: a domain that breaks a rule, so the row goes to rows.validate.
_UNUSUAL: _Fields = ("", "", "", "", "")


def _fields(item: Mapping[str, object]) -> _Fields:
    """A scan item's (tld, subdomain or "", username, user, RequestTime as rows.validate
    reads it), when each of the first four is a DynamoDB string; else _UNUSUAL."""
    try:
        t, u, a = item["tld"], item["username"], item["user"]
        if not (type(t) is dict and type(u) is dict and type(a) is dict
                and len(t) == 1 and len(u) == 1 and len(a) == 1):
            return _UNUSUAL
        tld, username, user = t["S"], u["S"], a["S"]
        if not (type(tld) is str and type(username) is str and type(user) is str):
            return _UNUSUAL
        sub = ""
        if "subdomain" in item:
            s = item["subdomain"]
            if not (type(s) is dict and len(s) == 1):
                return _UNUSUAL
            sub = s["S"]
            if type(sub) is not str:
                return _UNUSUAL
    except KeyError:
        return _UNUSUAL
    return tld, sub, username, user, _created(item)


def _same(item: Mapping[str, object]) -> Mapping[str, object]:
    return item


def _plain_usernames(usernames: list[str]) -> bool:
    """Whether every username passes its own checks, found for them all at once (C
    loops over their joined text): 1 to 64 characters, ASCII graphic characters only
    (no blank, no control character), no `#` first. False says nothing of any one."""
    if not usernames or min(map(len, usernames)) == 0 \
            or max(map(len, usernames)) > MAX_USERNAME_LENGTH:
        return False
    joined = "\n".join(usernames)
    return joined.isascii() and joined.count("\n") == len(usernames) - 1 \
        and joined[:1] != "#" and "\n#" not in joined \
        and not joined.encode().translate(None, _GRAPHIC_OR_NEWLINE)


@dataclass(slots=True)
class TreeBuilder:
    """Validates rows page by page into a tree, so no raw page outlives its turn.

    `add` checks the common row (well-typed strings, a known-good domain and `user`)
    inline, with each domain's and each `user` value's verdict remembered; any other
    row goes through `rows.validate`, so every rule and its wording stay there."""

    tree: Tree = field(default_factory=dict)
    rows: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    # tld → subdomain → _Domain, or None for a domain that breaks a rule; `user` values
    # (apart for tld and subdomain addresses) → _Target, or None for a bad one.
    _domains: dict[str, dict[str, _Domain | None]] = field(
        default_factory=dict, init=False, repr=False, compare=False)
    _targets: tuple[dict[str, _Target | None], dict[str, _Target | None]] = field(
        default_factory=lambda: ({}, {}), init=False, repr=False, compare=False)
    _for_tree: Tree | None = field(default=None, init=False, repr=False, compare=False)

    def add(self, items: Iterable[Mapping[str, object]]) -> list[Skipped]:
        """Adds a page of scan items; returns the rows of that page that were skipped."""
        if self._for_tree is not self.tree:  # the tree was replaced: forget its dicts
            self._domains.clear()
            self._for_tree = self.tree
        if type(items) is StringRows and _HAS_COLUMNS(items.names):
            names, rows = items.names, items.rows
            skipped = self._add_rows(
                rows, operator.itemgetter(*map(names.index, _COLUMNS)), items.item,
                checked=_plain_usernames(list(map(operator.itemgetter(
                    names.index("username")), rows))))
            self.rows += len(rows)
        else:
            page = items if type(items) is list else list(items)
            skipped = self._add_rows(page, _fields, _same, checked=False)
            self.rows += len(page)
        self.skipped.extend(skipped)
        return skipped

    def _add_rows(self, rows: Iterable[_Row], fields: Callable[[_Row], _Fields],
                  item: Callable[[_Row], Mapping[str, object]], *,
                  checked: bool) -> list[Skipped]:
        """Puts each row in the tree if it passes every check on the fast path, else as
        rows.validate says (`checked`: every username already passed its own checks).

        One flat loop over `fields(row)`, (tld, subdomain, username, user, RequestTime):
        it runs once per row of the table, each cycle, so nothing in it is a call but
        on a first sight of a domain or a `user` value, or for a row that fails."""
        domains = self._domains
        by_tld, by_subdomain = self._targets
        skipped: list[Skipped] = []
        for row in rows:
            tld, sub, username, user, created = fields(row)
            try:
                domain = domains[tld][sub]
            except KeyError:
                domain = self._domain(tld, sub)
            # An ASCII name that str.isprintable accepts holds no control character, and
            # no blank but the space: the expression is asked only about others (a
            # regular expression call is the dearer test).
            if domain is not None and (checked or (
                    0 < len(username) <= MAX_USERNAME_LENGTH
                    and username[0] != "#" and " " not in username and (
                        (username.isascii() and username.isprintable())
                        or not _FORBIDDEN_IN_USERNAME.search(username)))):
                try:
                    found = (by_subdomain if sub else by_tld)[user]
                except KeyError:
                    found = self._target(user, bool(sub))
                # The first bound of rows._address_line_rule (a target is as long as its
                # `user`); a row near it goes the slow way.
                if found is not None and len(username) * 4 + found.width <= domain.budget:
                    try:
                        entry = found.entries[created]
                    except KeyError:
                        entry = found.entries[created] = (found.target, found.accounts,
                                                          created)
                    users = domain.users
                    if users is None:
                        users = self._users_of(domain, tld, sub)
                    users[username] = entry
                    continue
            # Anything else, unusual types included: the reference validator decides.
            result = validate(item(row))
            if isinstance(result, Skipped):
                skipped.append(result)
            else:
                _insert(self.tree, result)
        return skipped

    def _domain(self, tld: str, sub: str) -> _Domain | None:
        """A domain seen for the first time: its verdict, remembered."""
        subs = self._domains.setdefault(tld, {})
        rule = _tld_rule(tld) or _subdomain_rule(sub, tld)
        domain = subs[sub] = None if rule else _Domain(
            _LINE_BUDGET - (len(sub) + 1 + len(tld) if sub else len(tld)))
        return domain

    def _target(self, user: str, shared: bool) -> _Target | None:
        """A `user` value seen for the first time: its verdict, remembered."""
        accounts = _accounts(user, shared)
        found = self._targets[1 if shared else 0][user] = (
            None if isinstance(accounts, str) else _Target(accounts))
        return found

    def _users_of(self, domain: _Domain, tld: str, sub: str) -> dict[str, Entry]:
        """The domain's username → Entry dict in the tree, made on its first address."""
        node = self.tree.get(tld)
        if node is None:
            node = self.tree[tld] = TldNode()
        users = domain.users = node.subdomains.setdefault(sub, {}) if sub else node.addresses
        return users

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


def _all_lower_case(domains: list[tuple[str, str, dict[str, Entry]]]) -> bool:
    """Whether str.lower leaves every username as it is (then a domain's usernames,
    distinct as dict keys, are distinct lowered: no case variants), checked in one pass
    over them all. str.lower maps each character on its own but for a capital sigma,
    which it changes either way."""
    names = "\n".join(itertools.chain.from_iterable(users for _, _, users in domains))
    return names.lower() == names


def address_losers(tree: Tree) -> frozenset[AddressKey]:
    """The addresses that are case variants of an older address (makemap would see one
    key twice): the row created first keeps the key — its RequestTime, "" (none) being
    the oldest — and equal times go to the code-point-first `user@domain<TAB>target`."""
    groups: dict[str, list[tuple[str, str, dict[str, Entry]]]] = {}
    tree_domains = list(_domains(tree))
    for tld, sub, users in tree_domains:
        # Domain names are ASCII (validated), so str.lower is makemap's lower-casing.
        groups.setdefault(f"{sub}.{tld}".lower() if sub else tld.lower(), []).append(
            (tld, sub, users))
    losers: set[AddressKey] = set()
    if len(groups) == len(tree_domains) and _all_lower_case(tree_domains):
        return frozenset()  # one domain a group, and no username changes when lowered
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


class SubdomainView(NamedTuple):
    """A tuple, so a template unpacks it in its loop (no attribute look-up per domain)."""

    name: str  # "sub.tld"
    usernames: list[str]  # sorted
    targets: list[str]  # each username's virtusertable value, in the same order

    @property
    def addresses(self) -> list[tuple[str, str]]:
        """(username, target), sorted by username."""
        return list(zip(self.usernames, self.targets, strict=True))


class TldView(NamedTuple):
    name: str
    usernames: list[str]  # the tld's own (legacy) addresses, sorted
    targets: list[str]  # each one's account, in the same order
    subdomains: list[SubdomainView]  # sorted by subdomain

    @property
    def addresses(self) -> list[tuple[str, str]]:
        """(username, account), sorted by username."""
        return list(zip(self.usernames, self.targets, strict=True))

    @property
    def subdomain_names(self) -> list[str]:
        return [sub.name for sub in self.subdomains]


_TARGET = operator.itemgetter(0)  # an Entry's target


def _columns(tld: str, sub: str, users: dict[str, Entry],
             without: frozenset[AddressKey]) -> tuple[list[str], list[str]]:
    """The usernames in code-point order, and their targets: whole columns, so the
    templates write a domain's lines as one block (docs/design.md §4)."""
    names = sorted(users)
    if without:
        names = [user for user in names if (tld, sub, user) not in without]
    return names, list(map(_TARGET, map(users.__getitem__, names)))


def sorted_view(tree: Tree, without: frozenset[AddressKey] = frozenset()) -> list[TldView]:
    """Everything in code-point order (Python's sorted), which is what the files use;
    the addresses in `without` are left out (their domains stay)."""
    return [
        TldView(
            tld, *_columns(tld, "", node.addresses, without),
            [SubdomainView(f"{sub}.{tld}", *_columns(tld, sub, users, without))
             for sub, users in sorted(node.subdomains.items())],
        )
        for tld, node in sorted(tree.items())
    ]


def shared_aliases(tree: Tree) -> list[tuple[str, tuple[str, ...]]]:
    """One (alias, accounts) per distinct multi-account target, sorted by alias."""
    shared: set[tuple[str, ...]] = set()
    for node in tree.values():
        for users in node.subdomains.values():
            for _, accounts, _ in users.values():
                if len(accounts) > 1:
                    shared.add(accounts)
    aliases = sorted((target(accounts), accounts) for accounts in shared)
    # Two lists can join to one alias (a_b + c, a + b_c): one line, the first list's.
    return [alias for index, alias in enumerate(aliases)
            if index == 0 or alias[0] != aliases[index - 1][0]]
