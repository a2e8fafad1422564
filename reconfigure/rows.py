"""DynamoDB scan items → validated addresses (SPEC §3). Pure: no I/O, no logging.

Every rule here exists because the value ends up verbatim in a sendmail map or an
alias file, where a stray tab, newline or leading `#` changes what the map means or
makes makemap reject the whole build.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping
from typing import NamedTuple

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# fullmatch (never `$`, which accepts a trailing newline); no IGNORECASE, under which
# `[a-z]` would also match U+017F (long s) and U+212A (Kelvin).
_TLD_RE = re.compile(rf"(?:{_LABEL}\.)+{_LABEL}")
_SUBDOMAIN_RE = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")
_ACCOUNT = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}"
_ACCOUNT_RE = re.compile(_ACCOUNT)
_ACCOUNTS_RE = re.compile(rf"{_ACCOUNT}(?:/{_ACCOUNT})*")
MAX_TLD_LENGTH = 253
MAX_USERNAME_LENGTH = 64
# makemap cuts longer lines into chunks that it parses as separate (broken) lines.
MAX_MAP_LINE_BYTES = 1023
# The attributes `validate` reads: all a table scan needs to fetch.
ATTRIBUTES = ("address", "tld", "subdomain", "username", "user")

# Every whitespace (str.isspace) and control (category Cc) code point lies below U+3001;
# one character class is much faster than a per-character Python loop.
_FORBIDDEN_IN_USERNAME = re.compile(
    "["
    + "".join(
        re.escape(chr(c))
        for c in range(0x3001)
        if chr(c).isspace() or unicodedata.category(chr(c)) == "Cc"
    )
    + "]"
)


class ScanFormatError(ValueError):
    """The scan document as a whole is unusable (not a single bad row)."""


class Address(NamedTuple):
    """One valid row. `subdomain` is "" for a tld-level (legacy) address."""

    tld: str
    subdomain: str
    username: str
    accounts: tuple[str, ...]


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
    return None


@functools.lru_cache(maxsize=1 << 16)
def _subdomain_rule(subdomain: str) -> str | None:
    if subdomain and not _SUBDOMAIN_RE.fullmatch(subdomain):
        return "subdomain: not one or more DNS labels"
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
        rule = _tld_rule(tld) or _subdomain_rule(subdomain) or _username_rule(username)
        if rule is not None:
            raise _Invalid(rule)
        accounts = _accounts(user, bool(subdomain))
        if isinstance(accounts, str):
            raise _Invalid(accounts)
        # The longest line a row makes is its virtusertable line, `user@sub.tld<TAB>a_b`:
        # as many characters as these plus two, each at most 4 bytes in UTF-8.
        chars = len(username) + len(subdomain) + len(tld) + len(user) + 2
        if chars * 4 > MAX_MAP_LINE_BYTES and len(
                f"{username}@{subdomain}.{tld}\t{user}".encode()) > MAX_MAP_LINE_BYTES:
            raise _Invalid("user: too many accounts (map line over 1023 bytes)")
    except _Invalid as invalid:
        return Skipped(_row_key(item), str(invalid))
    return Address(tld, subdomain, username, accounts)
