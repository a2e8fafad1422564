"""The account database: `/etc/passwd` and `/etc/group` parsed as glibc reads them, so the
planner knows which names and ids are taken."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

# fullmatch against ASCII digits only: int() alone would accept " 70001", "+70001",
# "70001\n", "7_0001" and Arabic-Indic digits.
DIGITS = re.compile(r"[0-9]+")


class PasswdEntry(NamedTuple):
    """One /etc/passwd line; an id that does not parse is None (and blocks the name)."""

    name: str
    uid: int | None
    gid: int | None


class GroupEntry(NamedTuple):
    name: str
    gid: int | None


def _id(text: str) -> int | None:
    return int(text) if DIGITS.fullmatch(text) else None


def _records(text: str) -> Iterable[list[str]]:
    """Colon-separated fields of each line, skipping what glibc's nss_files skips."""
    for line in text.split("\n"):
        line = line.lstrip(" \t")  # noqa: PLW2901 - glibc ignores leading blanks too
        if line and not line.startswith("#"):
            fields = line.split(":")
            if fields[0]:
                yield fields


def parse_passwd(text: str) -> list[PasswdEntry]:
    """Every named line, malformed ones included: a name on a bad line is still taken."""
    return [PasswdEntry(f[0], _id(f[2]) if len(f) > 2 else None,
                        _id(f[3]) if len(f) > 3 else None) for f in _records(text)]


def parse_group(text: str) -> list[GroupEntry]:
    """Every named line of /etc/group, as `parse_passwd` does for /etc/passwd."""
    return [GroupEntry(f[0], _id(f[2]) if len(f) > 2 else None) for f in _records(text)]


@dataclass(frozen=True, slots=True)
class AccountDb:
    """Names and ids already taken, indexed both ways. The first line of a name wins,
    as in getpwnam(3); every line holds its id."""

    users: Mapping[str, PasswdEntry]
    groups: Mapping[str, GroupEntry]
    uid_names: Mapping[int, tuple[str, ...]]
    gid_names: Mapping[int, tuple[str, ...]]  # group names holding the gid
    primary_gid_users: Mapping[int, tuple[str, ...]]  # users whose primary group is the gid

    @classmethod
    def build(cls, passwd: Sequence[PasswdEntry], group: Sequence[GroupEntry]) -> AccountDb:
        users: dict[str, PasswdEntry] = {}
        uid_names: dict[int, tuple[str, ...]] = {}
        primary: dict[int, tuple[str, ...]] = {}
        for entry in passwd:
            users.setdefault(entry.name, entry)
            if entry.uid is not None:
                uid_names[entry.uid] = (*uid_names.get(entry.uid, ()), entry.name)
            if entry.gid is not None:
                primary[entry.gid] = (*primary.get(entry.gid, ()), entry.name)
        groups: dict[str, GroupEntry] = {}
        gid_names: dict[int, tuple[str, ...]] = {}
        for group_entry in group:
            groups.setdefault(group_entry.name, group_entry)
            if group_entry.gid is not None:
                gid_names[group_entry.gid] = (*gid_names.get(group_entry.gid, ()),
                                              group_entry.name)
        return cls(users, groups, uid_names, gid_names, primary)


def read_account_db(root: Path) -> AccountDb:
    """`<root>/etc/passwd` and `<root>/etc/group`; raises OSError if either is unreadable
    (planning against a partial picture could hand out a taken id)."""
    passwd = (root / "etc/passwd").read_bytes().decode(errors="surrogateescape")
    group = (root / "etc/group").read_bytes().decode(errors="surrogateescape")
    return AccountDb.build(parse_passwd(passwd), parse_group(group))
