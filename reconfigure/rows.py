"""DynamoDB scan items → validated addresses (docs/design.md §3). Pure: no I/O, no logging.

Every rule here exists because the value ends up verbatim in a sendmail map or an
alias file, where a stray tab, newline or leading `#` changes what the map means or
makes makemap reject the whole build.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from typing import NamedTuple

from reconfigure.tiers import TIERS

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# fullmatch (never `$`, which accepts a trailing newline); no IGNORECASE, under which
# `[a-z]` would also match U+017F (long s) and U+212A (Kelvin).
_TLD_RE = re.compile(rf"(?:{_LABEL}\.)+{_LABEL}")
_SUBDOMAIN_RE = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")
_ACCOUNT = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}"
_ACCOUNT_RE = re.compile(_ACCOUNT)
_ACCOUNTS_RE = re.compile(rf"{_ACCOUNT}(?:/{_ACCOUNT})*")
MAX_DOMAIN_LENGTH = 253  # DNS's limit, for a tld and for a whole sub.tld
MAX_TLD_LENGTH = MAX_DOMAIN_LENGTH
MAX_RELAY_HOST_LENGTH = 253  # the mailertable's <H>; the settings refuse a longer one
MAX_USERNAME_LENGTH = 64
# makemap reads each line into a 1024-byte buffer with its NUL: a line and its newline must
# fit in 1023 bytes, else makemap exits 65 ("line too long") and the whole build fails.
MAX_MAP_LINE_BYTES = 1023


def _access_verbs(name: str) -> int:
    """The longest `known`/`unknown` verb any tier's access map writes."""
    return max(len(str(artifact.params[name]).encode()) for tier in TIERS.values()
               for artifact in tier.artifacts if artifact.template == "access.j2")


# What the hash-map lines of one row hold besides its names (the templates' shapes), in
# bytes without the newline. Every name but the username is ASCII.
#   virtusertable  `username@domain<TAB>target`         target: the accounts joined by `_`
#   access         `To:username@domain<TAB>known`, `To:domain<TAB>unknown`, `To:tld<TAB>unknown`
#   mailertable    `.tld<TAB>smtp:[<H>]`, `tld<TAB>smtp:[<H>]`
_VIRTUSERTABLE_EXTRA = len("@\t")
_ACCESS_ADDRESS_EXTRA = len("To:@\t") + _access_verbs("known")
_ACCESS_DOMAIN_EXTRA = len("To:\t") + _access_verbs("unknown")
_MAILERTABLE_EXTRA = len(".\tsmtp:[]") + MAX_RELAY_HOST_LENGTH
_LINE_BUDGET = MAX_MAP_LINE_BYTES - 1  # the newline counts too
_LINE_RULE = f"a map line over makemap's limit of {MAX_MAP_LINE_BYTES} bytes with its newline"

# Every whitespace (str.isspace) and control (category Cc) code point: one character
# class is much faster than a per-character Python loop. Written out, as computing it
# at import (a pass over unicodedata) costs every `reconfigure render` 5 ms;
# tests/test_rows.py checks it against that definition for every code point.
_FORBIDDEN_IN_USERNAME = re.compile(
    "[\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")


class ScanFormatError(ValueError):
    """The scan document as a whole is unusable (not a single bad row)."""


class StringRows:
    """Scan items whose every attribute is a DynamoDB string, as tuples of their values
    in the order of `names` (one item: {names[i]: {"S": row[i]}}): what the scan-file
    reader gives for items laid out alike, so that neither it nor the tree builder
    makes and reads eight dicts a row. Iterating gives the items as dicts."""

    __slots__ = ("names", "rows")

    def __init__(self, names: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
        self.names = names
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, dict[str, str]]]:
        return map(self.item, self.rows)

    def item(self, row: tuple[str, ...]) -> dict[str, dict[str, str]]:
        """One row as the scan item it was read from."""
        return {name: {"S": value} for name, value in zip(self.names, row, strict=True)}


# What the validator reads from a scan item: the DynamoDB scan projects only these.
ATTRIBUTES = ("address", "tld", "subdomain", "username", "user", "RequestTime")


class Address(NamedTuple):
    """One valid row. `subdomain` is "" for a tld-level (legacy) address; `created` is its
    `RequestTime` ("" without one: such a row counts as the oldest)."""

    tld: str
    subdomain: str
    username: str
    accounts: tuple[str, ...]
    created: str = ""


class Skipped(NamedTuple):
    """A row left out of the configuration, and the rule it broke."""

    address: str
    rule: str


def _string(item: Mapping[str, object], name: str) -> str | None:
    """The value of a DynamoDB `S` attribute; None when absent. Raises on another type."""
    value = item.get(name)
    if type(value) is dict and len(value) == 1:
        text = value.get("S")
        if type(text) is str:
            return text
    elif value is None and name not in item:
        return None
    raise _Invalid(f"{name}: not a DynamoDB string (S) attribute")


class _Invalid(Exception):
    pass


def _row_key(item: Mapping[str, object]) -> str:
    value = item.get("address")
    if isinstance(value, dict) and isinstance(value.get("S"), str):
        key: str = value["S"]
        return key
    return "<no address>"


# Tlds, subdomains and `user` values repeat across many rows: their checks are memoised
# (which also lets rows share one accounts tuple).
@functools.lru_cache(maxsize=1 << 16)
def _tld_rule(tld: str) -> str | None:
    if len(tld) > MAX_TLD_LENGTH or not _TLD_RE.fullmatch(tld):
        return "tld: not a domain name of two or more DNS labels"
    if len(tld) + max(_MAILERTABLE_EXTRA, _ACCESS_DOMAIN_EXTRA) > _LINE_BUDGET:
        return f"tld: {_LINE_RULE}"  # not with today's verbs and a 253-character tld
    return None


@functools.lru_cache(maxsize=1 << 16)
def _subdomain_rule(subdomain: str, tld: str) -> str | None:
    """The rule `subdomain` breaks (for a tld that is valid itself)."""
    if subdomain:
        if not _SUBDOMAIN_RE.fullmatch(subdomain):
            return "subdomain: not one or more DNS labels"
        if len(subdomain) + 1 + len(tld) > MAX_DOMAIN_LENGTH:
            return f"subdomain: sub.tld longer than {MAX_DOMAIN_LENGTH} characters"
        if len(subdomain) + 1 + len(tld) + _ACCESS_DOMAIN_EXTRA > _LINE_BUDGET:
            return f"subdomain: {_LINE_RULE}"  # not with today's verbs
    return None


def _username_rule(username: str) -> str | None:
    if not 1 <= len(username) <= MAX_USERNAME_LENGTH:
        return "username: not 1 to 64 characters"
    if _FORBIDDEN_IN_USERNAME.search(username):
        return "username: contains whitespace or a control character"
    if username.startswith("#"):
        return "username: starts with #"
    return None


def is_account_name(name: str) -> bool:
    """The OS account grammar shared by `user` values and Cognito usernames."""
    return name not in (".", "..") and _ACCOUNT_RE.fullmatch(name) is not None


@functools.lru_cache(maxsize=1 << 16)
def _accounts(user: str, shared: bool) -> tuple[str, ...] | str:
    """The sorted accounts of a `user` value, or the rule it breaks."""
    if shared:
        # An account cannot start with "." so "." and ".." never match either pattern.
        if not _ACCOUNTS_RE.fullmatch(user):
            return "user: not a list of valid account names"
        return tuple(sorted(user.split("/")))
    if not _ACCOUNT_RE.fullmatch(user):
        return "user: not a valid account name"
    return (user,)


def longest_address_line(username: str, domain_length: int, target_length: int) -> int:
    """Bytes (newline excluded) of the longest line an address adds to any tier's hash
    maps: its virtusertable line or its access line. (Its domain lines are checked with
    the domain: they are the same for every address under it.)"""
    return (len(username.encode()) + domain_length
            + max(_VIRTUSERTABLE_EXTRA + target_length, _ACCESS_ADDRESS_EXTRA))


def _address_line_rule(username: str, domain_length: int, target_length: int) -> str | None:
    # Each character is at most 4 bytes in UTF-8: most rows need no encoding at all.
    chars = len(username) * 4 + domain_length + max(
        _VIRTUSERTABLE_EXTRA + target_length, _ACCESS_ADDRESS_EXTRA)
    if chars <= _LINE_BUDGET:
        return None
    if longest_address_line(username, domain_length, target_length) <= _LINE_BUDGET:
        return None
    if _VIRTUSERTABLE_EXTRA + target_length > _ACCESS_ADDRESS_EXTRA:
        return f"user: too many accounts ({_LINE_RULE})"
    return f"username: {_LINE_RULE}"  # not with today's verbs and limits


def _created(item: Mapping[str, object]) -> str:
    """`RequestTime` only orders case variants of one address, so a row whose value is
    not a string is kept (as the oldest, like a row without one) rather than skipped."""
    value = item.get("RequestTime")
    if type(value) is dict and len(value) == 1:
        text = value.get("S")
        if type(text) is str:
            return text
    return ""


def _required(value: str | None, name: str) -> str:
    if value is None:
        raise _Invalid(f"{name}: missing")
    return value


def validate(item: Mapping[str, object]) -> Address | Skipped:
    """One scan item → an Address, or the reason it is skipped (rules checked in order)."""
    try:
        tld = _required(_string(item, "tld"), "tld")
        subdomain = _string(item, "subdomain") or ""
        username = _required(_string(item, "username"), "username")
        user = _required(_string(item, "user"), "user")
        rule = (_tld_rule(tld) or _subdomain_rule(subdomain, tld)
                or _username_rule(username))
        if rule is not None:
            raise _Invalid(rule)
        accounts = _accounts(user, bool(subdomain))
        if isinstance(accounts, str):
            raise _Invalid(accounts)
        rule = _address_line_rule(username, len(subdomain) + 1 + len(tld) if subdomain
                                  else len(tld), len(user))
        if rule is not None:
            raise _Invalid(rule)
    except _Invalid as invalid:
        return Skipped(_row_key(item), str(invalid))
    return Address(tld, subdomain, username, accounts, _created(item))
