"""Cognito users → OS accounts, Maildirs and `.procmailrc` (SPEC §8).

Three steps, so that the rules can be tested without a machine to spoil:
read (Cognito pages; `/etc/passwd` and `/etc/group` once per cycle), plan (pure: which
accounts to add, which users to refuse and why), apply (real `groupadd`/`useradd` for what
is missing, then the per-home directories). The apply step runs as root over homes that
users control, on a network file system with large Maildirs, so it never follows a
symlink under a home, never chowns recursively, never deletes, and never touches an id
below 1000.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import secrets
import stat
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol, TypeVar

from reconfigure import log
from reconfigure.rows import is_account_name

if TYPE_CHECKING:  # boto3-stubs are a test dependency only
    from mypy_boto3_cognito_idp import CognitoIdentityProviderClient
    from mypy_boto3_cognito_idp.type_defs import ListUsersResponseTypeDef

T = TypeVar("T")

OSID_ATTRIBUTE = "custom:osid"
OSID_MIN = 1000  # below: system accounts, which this daemon must never touch
OSID_MAX = 2147483646
NOBODY_ID = 65534  # nobody/nogroup (the kernel's overflow id): a system id despite its value
PAGE_SIZE = 60  # the largest Limit ListUsers accepts
HOME_MODE = 0o755  # for a home created here (useradd makes the others)
MAILDIR_MODE = 0o700
PROCMAIL_DIR_MODE = 0o755
PROCMAILRC_MODE = 0o644
# fullmatch against ASCII digits only: int() alone would accept " 70001", "+70001",
# "70001\n", "7_0001" and Arabic-Indic digits.
_DIGITS = re.compile(r"[0-9]+")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Call(Protocol):
    """The retry wrapper AWS calls go through (`Aws.call`)."""

    def __call__(self, what: str, function: Callable[[], T], /) -> T: ...


# ----- read: Cognito


@dataclass(frozen=True, slots=True)
class CognitoUser:
    """A confirmed user; `osid` is kept raw so that a bad one is refused and reported."""

    username: str
    osid: str


def list_confirmed_users(cognito: CognitoIdentityProviderClient, pool_id: str,
                         call: Call) -> list[CognitoUser]:
    """Every CONFIRMED user of the pool that carries `custom:osid`, across all pages."""

    def page(token: str | None) -> ListUsersResponseTypeDef:
        if token is None:
            return cognito.list_users(UserPoolId=pool_id, Limit=PAGE_SIZE,
                                      AttributesToGet=[OSID_ATTRIBUTE])
        return cognito.list_users(UserPoolId=pool_id, Limit=PAGE_SIZE,
                                  AttributesToGet=[OSID_ATTRIBUTE], PaginationToken=token)

    users: list[CognitoUser] = []
    token: str | None = None
    while True:
        response = call("cognito-idp.list_users", functools.partial(page, token))
        for user in response.get("Users", []):
            username = user.get("Username")
            if user.get("UserStatus") != "CONFIRMED" or not isinstance(username, str):
                continue
            osid = next((a.get("Value") for a in user.get("Attributes", [])
                         if a.get("Name") == OSID_ATTRIBUTE), None)
            if isinstance(osid, str):
                users.append(CognitoUser(username, osid))
        token = response.get("PaginationToken") or None
        if token is None:
            return users


# ----- read: the account database


class PasswdEntry(NamedTuple):
    """One /etc/passwd line; an id that does not parse is None (and blocks the name)."""

    name: str
    uid: int | None
    gid: int | None


class GroupEntry(NamedTuple):
    name: str
    gid: int | None


def _id(text: str) -> int | None:
    return int(text) if _DIGITS.fullmatch(text) else None


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


# ----- plan (pure)


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
    if not _DIGITS.fullmatch(osid) or len(osid) > 10:
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


# ----- apply


@dataclass(slots=True)
class UserSyncResult:
    """What the cycle reports: names created, and one line per refused or failed user."""

    created: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # "name: rule"
    errors: list[str] = field(default_factory=list)  # "name: what failed" (retried next cycle)


class _Refused(Exception):
    """A home that breaks a safety rule: this user is skipped and nothing is changed."""


Runner = Callable[..., subprocess.CompletedProcess[str]]


def account_commands(planned: Planned, *, root: Path, useradd: Sequence[str],
                     groupadd: Sequence[str]) -> list[list[str]]:
    """The argv lists that add what `planned` lacks.

    Under a root other than `/`: `--prefix` makes both tools edit `<root>/etc/*` and
    useradd create `<root>/home/<name>` while writing `/home/<name>` into passwd; `-k`
    because shadow 4.13 still reads the skeleton from the host's `/etc/skel` under
    `--prefix`. Always `-l`: no lastlog/faillog records (under `--prefix` those would
    be the host's, and for ids near 2^31 they are huge sparse files).
    """
    prefix = [] if root.resolve() == Path("/") else ["--prefix", str(root)]
    skel = ["-k", str(root / "etc/skel")] if prefix else []
    name, number = planned.username, str(planned.id)
    commands = []
    if planned.add_group:
        commands.append([*groupadd, *prefix, "-g", number, "--", name])
    if planned.add_user:
        commands.append([*useradd, *prefix, *skel, "-l", "-u", number, "-g", number,
                         "-d", f"/home/{name}", "-m", "--", name])
    return commands


def _run(run: Runner, argv: list[str], timeout: float) -> str | None:
    """None on success, else one line saying what went wrong."""
    program = Path(argv[0]).name
    try:
        done = run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                   timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"{program} timed out after {timeout:g} s"
    except OSError as error:
        return f"{program}: cannot run: {error.strerror or error}"
    if done.returncode != 0:
        detail = " ".join(str(done.stderr or done.stdout or "no output").split())
        return f"{program} exited {done.returncode}: {detail[:200]}"
    return None


def _check_new_home(home: Path, uid: int) -> None:
    """Before useradd -m: it would follow a symlink here, so refuse one up front."""
    try:
        st = os.lstat(home)
    except FileNotFoundError:
        return
    _check_owner_and_type(st, "home", uid)


def _check_owner_and_type(st: os.stat_result, what: str, uid: int) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise _Refused(f"{what} is a symlink")
    if not stat.S_ISDIR(st.st_mode):
        raise _Refused(f"{what} is not a directory")
    if st.st_uid not in (0, uid):
        raise _Refused(f"{what} owned by uid {st.st_uid}")


def _open_dir(parent_fd: int, name: str, what: str, uid: int) -> int:
    """Open `name` below `parent_fd` without following a symlink; refuse a wrong kind."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as error:
        if error.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
    _check_owner_and_type(os.stat(name, dir_fd=parent_fd, follow_symlinks=False), what, uid)
    raise _Refused(f"{what} changed while being opened")  # pragma: no cover - a race


def _ensure_dir(home_fd: int, name: str, uid: int, mode: int) -> None:
    """`name` in the home: a directory owned by uid:uid with `mode`; only that one inode
    is created or changed (never recursive)."""
    try:
        st = os.stat(name, dir_fd=home_fd, follow_symlinks=False)
    except FileNotFoundError:
        with contextlib.suppress(FileExistsError):  # made meanwhile: checked below
            os.mkdir(name, mode, dir_fd=home_fd)
    else:
        _check_owner_and_type(st, name, uid)
        if (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, uid, mode):
            return
    fd = _open_dir(home_fd, name, name, uid)
    try:
        st = os.fstat(fd)  # what we actually hold; the lstat above may be stale
        if st.st_uid not in (0, uid):
            raise _Refused(f"{name} owned by uid {st.st_uid}")
        if (st.st_uid, st.st_gid) != (uid, uid):
            os.fchown(fd, uid, uid)
        if stat.S_IMODE(st.st_mode) != mode:
            os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _ensure_procmailrc(home_fd: int, uid: int, source: Callable[[], bytes]) -> None:
    """Copy the image's procmailrc in when the user has none; an existing one is the
    user's and is never replaced. Written to a temp file, then hard-linked into place:
    no reader sees a partial file, and a file that appeared meanwhile is not replaced."""
    try:
        st = os.stat(".procmailrc", dir_fd=home_fd, follow_symlinks=False)
    except FileNotFoundError:
        pass
    else:
        if stat.S_ISLNK(st.st_mode):
            raise _Refused(".procmailrc is a symlink")
        return
    data = source()
    temp = f".procmailrc.{secrets.token_hex(6)}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 PROCMAILRC_MODE, dir_fd=home_fd)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchown(fd, uid, uid)
            os.fchmod(fd, PROCMAILRC_MODE)
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):  # the user made one meanwhile: theirs
            os.link(temp, ".procmailrc", src_dir_fd=home_fd, dst_dir_fd=home_fd,
                    follow_symlinks=False)
    finally:
        os.unlink(temp, dir_fd=home_fd)  # only ever our own temp file


def _ensure_home(parent_fd: int, planned: Planned, source: Callable[[], bytes]) -> None:
    """Home, Maildir, .procmail and .procmailrc of one user, all relative to an fd of the
    home opened with O_NOFOLLOW, so that no symlink a user planted is ever followed."""
    name, uid = planned.username, planned.id
    made = False
    try:
        home_fd = _open_dir(parent_fd, name, "home", uid)
    except FileNotFoundError:
        # An existing account whose home is gone (useradd -m makes the new ones).
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, HOME_MODE, dir_fd=parent_fd)
        home_fd, made = _open_dir(parent_fd, name, "home", uid), True
    try:
        st = os.fstat(home_fd)
        if made and st.st_uid == 0:
            os.fchown(home_fd, uid, uid)
            os.fchmod(home_fd, HOME_MODE)
        elif st.st_uid not in (0, uid):
            raise _Refused(f"home owned by uid {st.st_uid}")
        _ensure_dir(home_fd, "Maildir", uid, MAILDIR_MODE)
        _ensure_dir(home_fd, ".procmail", uid, PROCMAIL_DIR_MODE)
        _ensure_procmailrc(home_fd, uid, source)
    finally:
        os.close(home_fd)


def _reader(path: Path) -> Callable[[], bytes]:
    """Reads `path` at most once, and only if some user needs it."""
    cache: list[bytes] = []

    def read() -> bytes:
        if not cache:
            cache.append(path.read_bytes())
        return cache[0]

    return read


class _Outcome:
    """Collects the result and logs each refusal, failure and creation as one line."""

    def __init__(self) -> None:
        self.result = UserSyncResult()
        self.logger = log.get()

    def refuse(self, name: str, rule: str) -> None:
        self.logger.error("user refused", user=show(name), rule=rule)
        self.result.refused.append(f"{show(name)}: {rule}")

    def fail(self, name: str, error: str) -> None:
        self.logger.error("user sync failed", user=name, error=error)
        self.result.errors.append(f"{name}: {error}")

    def created(self, planned: Planned) -> None:
        self.logger.info("user created", user=planned.username, uid=planned.id,
                         group=planned.add_group, account=planned.add_user)
        self.result.created.append(planned.username)


def _create(planned: Planned, outcome: _Outcome, *, root: Path, useradd: Sequence[str],
            groupadd: Sequence[str], timeout: float, run: Runner) -> bool:
    """Run groupadd/useradd for what `planned` lacks; True when the account is complete."""
    if planned.id < OSID_MIN:  # pragma: no cover - plan_users never lets one through
        outcome.refuse(planned.username, "id below 1000")
        return False
    try:
        _check_new_home(root / "home" / planned.username, planned.id)
    except _Refused as refusal:
        outcome.refuse(planned.username, str(refusal))
        return False
    except OSError as error:
        outcome.fail(planned.username, f"home: {error.strerror or error}")
        return False
    for argv in account_commands(planned, root=root, useradd=useradd, groupadd=groupadd):
        if (error_text := _run(run, argv, timeout)) is not None:
            outcome.fail(planned.username, error_text)
            return False
    outcome.created(planned)
    return True


def _ensure_homes(ready: Sequence[Planned], outcome: _Outcome, *, root: Path,
                  procmailrc: Path) -> None:
    source = _reader(procmailrc)
    try:
        # /home itself may be a symlink or a mount point; only what lies below it is
        # user-controlled.
        parent_fd = os.open(root / "home", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        for planned in ready:
            outcome.fail(planned.username, f"/home: {error.strerror or error}")
        return
    try:
        for planned in ready:
            try:
                _ensure_home(parent_fd, planned, source)
            except _Refused as refusal:
                outcome.refuse(planned.username, str(refusal))
            except OSError as error:
                where = f" ({error.filename})" if error.filename else ""
                outcome.fail(planned.username, f"{error.strerror or error}{where}")
    finally:
        os.close(parent_fd)


def sync_users(users: Iterable[CognitoUser], *, root: Path, useradd: Sequence[str],
               groupadd: Sequence[str], timeout: float, procmailrc: Path,
               run: Runner = subprocess.run) -> UserSyncResult:
    """Add the missing accounts and per-home directories; refuse what breaks a rule.

    Idempotent and cheap when nothing is missing: one read of passwd and group, a few
    stat calls per home, no process. One user's failure never stops the others. Raises
    OSError only when the account database itself cannot be read.
    """
    outcome = _Outcome()
    plan = plan_users(users, read_account_db(root))
    for name, rule in plan.refused:
        outcome.refuse(name, rule)
    ready = list(plan.already_ok)
    ready.extend(planned for planned in plan.to_create
                 if _create(planned, outcome, root=root, useradd=useradd, groupadd=groupadd,
                            timeout=timeout, run=run))
    if ready:
        _ensure_homes(ready, outcome, root=root, procmailrc=procmailrc)
    return outcome.result
