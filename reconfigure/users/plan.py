"""Which Cognito users get an account: every safety rule, as a pure function of values.

A user is refused (and nothing changed for it) when its name breaks the account grammar,
its osid is not a plain id in range, or the name or id is taken by another account.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from reconfigure.rows import is_account_name
from reconfigure.users.accounts import DIGITS, AccountDb

OSID_ATTRIBUTE = "custom:osid"
OSID_MIN = 1000  # below: system accounts, which this daemon must never touch
OSID_MAX = 2147483646
NOBODY_ID = 65534  # nobody/nogroup (the kernel's overflow id): a system id despite its value


@dataclass(frozen=True, slots=True)
class CognitoUser:
    """A confirmed user; `osid` is kept raw so that a bad one is refused and reported."""

    username: str
    osid: str


def confirmed_users(listed: Iterable[Mapping[str, Any]]) -> list[CognitoUser]:
    """The CONFIRMED users of ListUsers records that carry `custom:osid`."""
    users: list[CognitoUser] = []
    for user in listed:
        username = user.get("Username")
        if user.get("UserStatus") != "CONFIRMED" or not isinstance(username, str):
            continue
        osid = next((a.get("Value") for a in user.get("Attributes", [])
                     if a.get("Name") == OSID_ATTRIBUTE), None)
        if isinstance(osid, str):
            users.append(CognitoUser(username, osid))
    return users


class Planned(NamedTuple):
    """A user that may be set up; `add_group`/`add_user` say which command it still needs."""

    username: str
    id: int
    add_group: bool = False
    add_user: bool = False


@dataclass(slots=True)
class UserPlan:
    """What one cycle will do; computed from values only, so every rule is unit-tested."""

    to_create: list[Planned] = field(default_factory=list)
    already_ok: list[Planned] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (username, rule)


def parse_osid(osid: str) -> int | None:
    """The id, or None unless `osid` is plain ASCII digits within 1000..2147483646."""
    if not DIGITS.fullmatch(osid) or len(osid) > 10:
        return None
    value = int(osid)
    return value if OSID_MIN <= value <= OSID_MAX else None


def _is_system(number: int) -> bool:
    return number < OSID_MIN or number == NOBODY_ID


def _others(names: Mapping[int, tuple[str, ...]], key: int, name: str) -> list[str]:
    return [other for other in names.get(key, ()) if other != name]


def _db_conflicts(name: str, uid: int, db: AccountDb) -> Iterator[str]:
    """Why the account database forbids `name` with `uid` (= gid); the first one counts."""
    user, group = db.users.get(name), db.groups.get(name)
    if user is not None:
        if user.uid is None or user.gid is None:
            yield "account exists with an unreadable uid or gid"
        elif _is_system(user.uid) or _is_system(user.gid):
            yield f"system account (uid {user.uid}, gid {user.gid}): never touched"
        elif (user.uid, user.gid) != (uid, uid):
            yield f"account exists with uid {user.uid} gid {user.gid}, not {uid}"
    if group is not None:
        if group.gid is None:
            yield "group exists with an unreadable gid"
        elif _is_system(group.gid):
            yield f"system group (gid {group.gid}): never touched"
        elif group.gid != uid:
            yield f"group exists with gid {group.gid}, not {uid}"
    if held := _others(db.uid_names, uid, name):
        yield f"uid {uid} held by {held[0]}"
    if held := _others(db.gid_names, uid, name):
        yield f"gid {uid} held by group {held[0]}"
    if held := _others(db.primary_gid_users, uid, name):
        yield f"gid {uid} is the primary group of {held[0]}"


def plan_users(users: Iterable[CognitoUser], db: AccountDb) -> UserPlan:
    """Sort the Cognito users into to-create, already-ok and refused.

    A duplicate username or osid refuses the later user. Users whose account already
    matches go first, so an established account keeps its id whichever order Cognito
    lists them in.
    """
    listed = list(users)

    def established(user: CognitoUser) -> bool:
        entry, uid = db.users.get(user.username), parse_osid(user.osid)
        return entry is not None and uid is not None and entry.uid == entry.gid == uid

    plan = UserPlan()
    seen: dict[str, str] = {}  # username → osid
    claimed: dict[int, str] = {}  # osid → username
    for user in sorted(listed, key=lambda u: not established(u)):
        name = user.username
        if not is_account_name(name):
            plan.refused.append((name, "username: not a valid account name"))
            continue
        if name in seen:
            if seen[name] != user.osid:
                plan.refused.append((name, "username listed twice in Cognito, other osid"))
            continue  # the same user twice (e.g. on two pages) is no conflict
        seen[name] = user.osid
        uid = parse_osid(user.osid)
        if uid is None:
            plan.refused.append(
                (name, f"osid {show(user.osid)}: not an integer in {OSID_MIN}..{OSID_MAX}"))
            continue
        if uid in claimed:
            plan.refused.append((name, f"osid {uid} also claimed by {claimed[uid]} in Cognito"))
            continue
        claimed[uid] = name
        if (rule := next(_db_conflicts(name, uid, db), None)) is not None:
            plan.refused.append((name, rule))
            continue
        add_group, add_user = name not in db.groups, name not in db.users
        if add_group or add_user:
            plan.to_create.append(Planned(name, uid, add_group, add_user))
        else:
            plan.already_ok.append(Planned(name, uid))
    return plan


def show(value: str) -> str:
    """A Cognito-supplied string fit for one log line: escaped and cut short."""
    if is_account_name(value):
        return value
    text = ascii(value)
    return text if len(text) <= 48 else text[:45] + "..."
