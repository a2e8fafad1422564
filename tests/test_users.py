"""Users (docs/design.md §8): parsing and planning as pure functions, then the real groupadd/useradd
with --prefix against a throw-away root — never the machine's own account files."""

from __future__ import annotations

import os
import shutil
import stat
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from reconfigure import commands
from reconfigure.users.accounts import (
    AccountDb,
    GroupEntry,
    PasswdEntry,
    parse_group,
    parse_passwd,
    read_account_db,
)
from reconfigure.users.plan import (
    OSID_MAX,
    OSID_MIN,
    CognitoUser,
    Planned,
    parse_osid,
    plan_users,
    show,
)
from reconfigure.users.sync import account_commands, sync_users
from tests.support.accounts import (
    GROUP,
    GROUPADD,
    HOST_FILES,
    PASSWD,
    PROCMAILRC,
    USERADD,
    make_account_root,
    real_tools_available,
)


def db(passwd: str = PASSWD, group: str = GROUP) -> AccountDb:
    return AccountDb.build(parse_passwd(passwd), parse_group(group))


def with_accounts(*accounts: tuple[str, int, int]) -> AccountDb:
    """The base database plus `name:uid:gid` accounts, each with its own group."""
    passwd = PASSWD + "".join(f"{n}:x:{u}:{g}::/home/{n}:/bin/sh\n" for n, u, g in accounts)
    group = GROUP + "".join(f"{n}:x:{g}:\n" for n, _, g in accounts)
    return db(passwd, group)


def plan(*users: tuple[str, str], accounts: AccountDb | None = None) -> Any:
    return plan_users([CognitoUser(n, o) for n, o in users], accounts or db())


# ----- parsing


def test_parse_passwd_reads_names_and_ids_like_glibc() -> None:
    text = ("root:x:0:0:root:/root:/bin/bash\n"
            "# a comment:x:5:5\n"
            "\n"
            "  indented:x:1001:1002::/home/indented:/bin/sh\n"
            "short:x\n"
            "badid:x:12a:+3::/:/bin/sh\n"
            ":x:7:7::/:/bin/sh\n"
            "last:x:1003:1003::/home/last:/bin/sh")
    assert parse_passwd(text) == [
        PasswdEntry("root", 0, 0),
        PasswdEntry("indented", 1001, 1002),
        PasswdEntry("short", None, None),
        PasswdEntry("badid", None, None),
        PasswdEntry("last", 1003, 1003),
    ]


def test_parse_group() -> None:
    assert parse_group("root:x:0:\nstaff:x:50:alice,bob\n#x:x:9:\nodd:x: 51:\nbare\n") == [
        GroupEntry("root", 0), GroupEntry("staff", 50), GroupEntry("odd", None),
        GroupEntry("bare", None),
    ]


def test_account_db_indexes_both_ways_and_first_name_wins() -> None:
    accounts = db("a:x:1001:1001::/:/\na:x:1009:1009::/:/\ntoor:x:0:0::/:/\nroot:x:0:0::/:/\n",
                  "g:x:1001:\nh:x:1001:\n")
    assert accounts.users["a"] == PasswdEntry("a", 1001, 1001)
    assert accounts.uid_names[0] == ("toor", "root")
    assert accounts.uid_names[1009] == ("a",)
    assert accounts.gid_names[1001] == ("g", "h")
    assert accounts.primary_gid_users[1001] == ("a",)


def test_read_account_db_from_a_root(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_bytes(b"alice:x:70001:70001::/home/alice:/bin/sh\n"
                                          b"caf\xe9:x:70002:70002::/:/\n")
    (tmp_path / "etc/group").write_text("alice:x:70001:\n")
    accounts = read_account_db(tmp_path)
    assert accounts.users["alice"] == PasswdEntry("alice", 70001, 70001)
    assert accounts.uid_names[70002] == ("caf\udce9",)  # undecodable bytes still hold the id
    assert accounts.groups == {"alice": GroupEntry("alice", 70001)}
    (tmp_path / "etc/group").unlink()
    with pytest.raises(FileNotFoundError):
        read_account_db(tmp_path)


# ----- osid and username rules


@pytest.mark.parametrize("osid", [
    "abc", "", "0", "1", "999", "1e5", "-5", "-1000", " 70001", "70001 ", "+70001", "70001\n",
    "\n70001", "70_001", "0x11171", "70001.0", "7.0e4", "\u0667\u0660\u0660\u0660\u0661",
    "\uff17\uff10\uff10\uff10\uff10", "\u06f7\u06f0\u06f0\u06f0\u06f1",
    "2147483647", "4294967296", "99999999999", "9" * 5000, "70001\x00",
])
def test_bad_osids_are_refused(osid: str) -> None:
    assert parse_osid(osid) is None
    result = plan(("alice", osid))
    assert result.to_create == result.already_ok == []
    [(name, rule)] = result.refused
    assert name == "alice"
    assert rule.startswith("osid ") and rule.endswith(f"not an integer in {OSID_MIN}..{OSID_MAX}")
    assert "\n" not in rule and len(rule) < 120


@pytest.mark.parametrize(("osid", "value"), [
    ("1000", 1000), ("2147483646", 2147483646), ("70001", 70001), ("0070001", 70001),
])
def test_good_osids(osid: str, value: int) -> None:
    assert parse_osid(osid) == value
    assert plan(("alice", osid)).to_create == [Planned("alice", value, True, True)]


@given(st.text(max_size=12))
def test_parse_osid_accepts_exactly_ascii_digits_in_range(text: str) -> None:
    expected = (int(text) if text.isascii() and text.isdigit()
                and OSID_MIN <= int(text) <= OSID_MAX else None)
    assert parse_osid(text) == expected


@pytest.mark.parametrize("name", [
    "-rf", "../x", "a b", "a" * 33, ".", "..", "", ".hidden", "a/b", "a:b", "alice\n",
    "\nalice", "al\x00ice", "ålice", "alice\u00a0", "#x", "a,b", "~root", "$(id)", "a;b",
    "alice\u2028",
])
def test_hostile_usernames_are_refused(name: str) -> None:
    result = plan((name, "70001"))
    assert result.to_create == result.already_ok == []
    assert result.refused == [(name, "username: not a valid account name")]
    assert "\n" not in show(name) and "\x00" not in show(name)


@pytest.mark.parametrize("name", ["a", "a" * 32, "Alice_1", "first.last", "x-y", "_svc", "1"])
def test_usernames_of_the_account_grammar_are_planned(name: str) -> None:
    assert plan((name, "70001")).to_create == [Planned(name, 70001, True, True)]


# ----- conflicts with the account database


def test_new_existing_and_half_made_accounts() -> None:
    accounts = db(PASSWD + "alice:x:70001:70001::/home/alice:/bin/sh\n"
                  "carol:x:70003:70003::/home/carol:/bin/sh\n",
                  GROUP + "alice:x:70001:\nbob:x:70002:\n")
    result = plan(("alice", "70001"), ("bob", "70002"), ("carol", "70003"), ("dave", "70004"),
                  accounts=accounts)
    assert result.already_ok == [Planned("alice", 70001)]
    assert sorted(result.to_create) == [
        Planned("bob", 70002, add_group=False, add_user=True),
        Planned("carol", 70003, add_group=True, add_user=False),
        Planned("dave", 70004, add_group=True, add_user=True),
    ]
    assert result.refused == []


@pytest.mark.parametrize(("passwd", "group", "rule"), [
    ("alice:x:70009:70001::/:/\n", "", "account exists with uid 70009 gid 70001, not 70001"),
    ("alice:x:70001:70009::/:/\n", "", "account exists with uid 70001 gid 70009, not 70001"),
    ("alice:x:7x:70001::/:/\n", "", "account exists with an unreadable uid or gid"),
    ("", "alice:x:70009:\n", "group exists with gid 70009, not 70001"),
    ("", "alice:x::\n", "group exists with an unreadable gid"),
    ("bob:x:70001:70002::/:/\n", "", "uid 70001 held by bob"),
    ("", "staff:x:70001:\n", "gid 70001 held by group staff"),
    ("bob:x:70002:70001::/:/\n", "", "gid 70001 is the primary group of bob"),
])
def test_conflicts_change_nothing(passwd: str, group: str, rule: str) -> None:
    result = plan(("alice", "70001"), accounts=db(PASSWD + passwd, GROUP + group))
    assert result.refused == [("alice", rule)]
    assert result.to_create == result.already_ok == []


@pytest.mark.parametrize(("name", "rule"), [
    ("root", "system account (uid 0, gid 0): never touched"),
    ("daemon", "system account (uid 1, gid 1): never touched"),
    ("mail", "system account (uid 8, gid 8): never touched"),
    ("svc", "system account (uid 500, gid 500): never touched"),
    ("nogroup", "system group (gid 65534): never touched"),
    ("nobody", "system account (uid 65534, gid 65534): never touched"),
])
def test_system_accounts_are_never_touched(name: str, rule: str) -> None:
    result = plan((name, "70001"))
    assert result.refused == [(name, rule)]
    assert result.to_create == result.already_ok == []
    # Not even when Cognito's osid matches the system id.
    result = plan((name, "65534"))
    assert result.refused == [(name, rule)]
    assert result.to_create == result.already_ok == []


def test_high_system_ids_count_as_held() -> None:
    assert plan(("alice", "65534")).refused == [("alice", "uid 65534 held by nobody")]


# ----- duplicates within one Cognito listing


def test_duplicate_osid_refuses_the_later_user() -> None:
    result = plan(("alice", "70001"), ("bob", "70001"), ("carol", "70003"))
    assert [p.username for p in result.to_create] == ["alice", "carol"]
    assert result.refused == [("bob", "osid 70001 also claimed by alice in Cognito")]


def test_duplicate_osid_keeps_the_established_account_whatever_the_order() -> None:
    accounts = with_accounts(("bob", 70001, 70001))
    result = plan(("alice", "70001"), ("bob", "70001"), accounts=accounts)
    assert result.already_ok == [Planned("bob", 70001)]
    assert result.refused == [("alice", "osid 70001 also claimed by bob in Cognito")]


def test_duplicate_username_with_another_osid_refuses_the_later() -> None:
    result = plan(("alice", "70001"), ("alice", "70002"))
    assert result.to_create == [Planned("alice", 70001, True, True)]
    assert result.refused == [("alice", "username listed twice in Cognito, other osid")]


def test_the_same_user_listed_twice_is_one_user() -> None:
    result = plan(("alice", "70001"), ("alice", "70001"))
    assert result.to_create == [Planned("alice", 70001, True, True)]
    assert result.refused == []


def test_a_refused_user_still_claims_its_osid() -> None:
    result = plan(("carol", "70001"), ("dave", "70001"),
                  accounts=db(PASSWD + "carol:x:70005:70005::/:/\n"))
    assert result.refused == [("carol", "account exists with uid 70005 gid 70005, not 70001"),
                              ("dave", "osid 70001 also claimed by carol in Cognito")]


def test_account_commands_at_root_and_under_a_prefix(tmp_path: Path) -> None:
    planned = Planned("alice", 70001, True, True)
    assert account_commands(planned, root=Path("/"), useradd=["useradd"],
                            groupadd=["groupadd"]) == [
        ["groupadd", "-g", "70001", "--", "alice"],
        ["useradd", "-l", "-u", "70001", "-g", "70001", "-d", "/home/alice", "-m", "--",
         "alice"],
    ]
    assert account_commands(planned._replace(add_group=False), root=tmp_path,
                            useradd=["/usr/sbin/useradd", "-s", "/bin/false"],
                            groupadd=["groupadd"]) == [
        ["/usr/sbin/useradd", "-s", "/bin/false", "--prefix", str(tmp_path),
         "-k", str(tmp_path / "etc/skel"), "-l", "-u", "70001", "-g", "70001",
         "-d", "/home/alice", "-m", "--", "alice"],
    ]


# ----- the real tools against a throw-away root

@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    """A throw-away root; the machine's own account files must be byte-identical after."""
    if not real_tools_available():
        pytest.skip("needs root and the passwd package (useradd, groupadd)")
    before = {name: Path(name).read_bytes() for name in HOST_FILES}
    yield make_account_root(tmp_path / "root")
    assert {name: Path(name).read_bytes() for name in HOST_FILES} == before


class Recorder:
    """A `run` that records each argv and still runs the real program."""

    def __init__(self) -> None:
        self.argvs: list[list[str]] = []

    def __call__(self, argv: Sequence[str], *, timeout: float, stdin: Path | None = None,
                 stop: threading.Event | None = None) -> str:
        self.argvs.append(list(argv))
        return commands.run(argv, timeout=timeout, stdin=stdin, stop=stop)

    def programs(self) -> list[str]:
        return [Path(argv[0]).name for argv in self.argvs]


def sync(root: Path, *users: tuple[str, str], run: Recorder | None = None,
         useradd: tuple[str, ...] = (USERADD,)) -> Any:
    return sync_users([CognitoUser(n, o) for n, o in users], root=root, useradd=useradd,
                      groupadd=(GROUPADD,), timeout=30, procmailrc=root / "etc/procmailrc",
                      run=run or Recorder())


def owner_and_mode(path: Path) -> tuple[int, int, int, bool]:
    st_ = os.lstat(path)
    return st_.st_uid, st_.st_gid, stat.S_IMODE(st_.st_mode), stat.S_ISDIR(st_.st_mode)


def snapshot(tree: Path) -> dict[str, tuple[int, int, int, bytes | None]]:
    """Owner, group, mode and content of everything under `tree` (and `tree` itself)."""
    entries = {}
    for path in [tree, *sorted(tree.rglob("*"))]:
        st_ = os.lstat(path)
        content = path.read_bytes() if stat.S_ISREG(st_.st_mode) else None
        entries[str(path)] = (st_.st_uid, st_.st_gid, st_.st_mode, content)
    return entries


def test_creates_accounts_homes_and_mail_directories(root: Path) -> None:
    run = Recorder()
    result = sync(root, ("alice", "70001"), ("bob", "2147483646"), run=run)
    assert (result.created, result.refused, result.errors) == (["alice", "bob"], [], [])
    assert run.programs() == ["groupadd", "useradd", "groupadd", "useradd"]

    passwd = (root / "etc/passwd").read_text().splitlines()
    assert "alice:x:70001:70001::/home/alice:/bin/sh" in passwd
    assert "bob:x:2147483646:2147483646::/home/bob:/bin/sh" in passwd
    group = (root / "etc/group").read_text().splitlines()
    assert {"alice:x:70001:", "bob:x:2147483646:"} <= set(group)
    for name, uid in (("alice", 70001), ("bob", 2147483646)):
        home = root / "home" / name
        assert owner_and_mode(home) == (uid, uid, 0o755, True)
        assert owner_and_mode(home / "Maildir") == (uid, uid, 0o700, True)
        assert owner_and_mode(home / ".procmail") == (uid, uid, 0o755, True)
        assert owner_and_mode(home / ".procmailrc") == (uid, uid, 0o644, False)
        assert (home / ".procmailrc").read_bytes() == PROCMAILRC
        # The skeleton is the root's, not the host's; no temp file is left behind.
        assert sorted(os.listdir(home)) == [".procmail", ".procmailrc", ".profile", "Maildir"]
    assert not (root / "var/log").exists()  # -l: no lastlog/faillog records


def test_a_second_cycle_spawns_nothing_and_changes_nothing(root: Path) -> None:
    users = (("alice", "70001"), ("bob", "70002"))
    sync(root, *users)
    before = snapshot(root)
    run = Recorder()
    result = sync(root, *users, run=run)
    assert (result.created, result.refused, result.errors) == ([], [], [])
    assert run.argvs == []
    assert snapshot(root) == before


def test_only_the_missing_half_of_an_account_is_added(root: Path) -> None:
    with (root / "etc/group").open("a") as handle:
        handle.write("alice:x:70001:\n")
    with (root / "etc/gshadow").open("a") as handle:
        handle.write("alice:!::\n")
    run = Recorder()
    result = sync(root, ("alice", "70001"), run=run)
    assert result.created == ["alice"]
    assert run.programs() == ["useradd"]
    assert "alice:x:70001:70001::/home/alice:/bin/sh" in (root / "etc/passwd").read_text()


@pytest.mark.parametrize("entry", ["Maildir", ".procmail"])
def test_a_planted_directory_symlink_is_refused_and_its_target_untouched(
        root: Path, entry: str) -> None:
    sync(root, ("alice", "70001"))
    (root / "home/alice" / entry).rmdir()
    (root / "home/alice" / entry).symlink_to("../../etc")
    etc_before = snapshot(root / "etc")
    run = Recorder()
    result = sync(root, ("alice", "70001"), ("bob", "70002"), run=run)
    assert result.refused == [f"alice: {entry} is a symlink"]
    assert result.created == ["bob"]  # the other user is not held up
    assert run.programs() == ["groupadd", "useradd"]  # bob's
    etc_after = snapshot(root / "etc")
    assert etc_after[str(root / "etc")] == etc_before[str(root / "etc")]
    for name in ("login.defs", "procmailrc", "skel", "default", "skel/.profile"):
        key = str(root / "etc" / name)
        assert etc_after[key] == etc_before[key]
    assert not (root / "etc/.procmail").exists()
    assert not (root / "etc/Maildir").exists()


def test_a_planted_procmailrc_symlink_is_not_written_through(root: Path) -> None:
    sync(root, ("alice", "70001"))
    (root / "home/alice/.procmailrc").unlink()
    (root / "home/alice/.procmailrc").symlink_to("../../etc/login.defs")
    before = snapshot(root / "etc")
    result = sync(root, ("alice", "70001"))
    assert result.refused == ["alice: .procmailrc is a symlink"]
    assert snapshot(root / "etc") == before


def test_a_symlinked_home_is_refused_before_any_account_is_made(root: Path) -> None:
    (root / "home/carol").symlink_to("../etc")
    etc_before = owner_and_mode(root / "etc")
    passwd_before = (root / "etc/passwd").read_bytes()
    run = Recorder()
    result = sync(root, ("carol", "70003"), run=run)
    assert result.refused == ["carol: home is a symlink"]
    assert run.argvs == []
    assert (root / "etc/passwd").read_bytes() == passwd_before
    assert owner_and_mode(root / "etc") == etc_before
    assert not (root / "etc/Maildir").exists()


def test_an_existing_accounts_symlinked_home_is_refused(root: Path) -> None:
    sync(root, ("alice", "70001"))
    os.rename(root / "home/alice", root / "alice-moved")
    (root / "home/alice").symlink_to("../etc")
    before = snapshot(root / "etc")
    result = sync(root, ("alice", "70001"))
    assert result.refused == ["alice: home is a symlink"]
    assert snapshot(root / "etc") == before


def test_an_existing_procmailrc_is_never_replaced(root: Path) -> None:
    sync(root, ("alice", "70001"))
    mine = root / "home/alice/.procmailrc"
    mine.write_bytes(b"# my own rules\n")
    os.chown(mine, 0, 0)
    mine.chmod(0o600)
    assert sync(root, ("alice", "70001")).refused == []
    assert mine.read_bytes() == b"# my own rules\n"
    assert owner_and_mode(mine) == (0, 0, 0o600, False)


def test_name_held_with_another_id_or_id_held_by_another_name(root: Path) -> None:
    sync(root, ("alice", "70001"))
    home_before = snapshot(root / "home")
    passwd_before = (root / "etc/passwd").read_bytes()
    run = Recorder()
    result = sync(root, ("alice", "70009"), ("mallory", "70001"), run=run)
    assert result.refused == [
        "alice: account exists with uid 70001 gid 70001, not 70009",
        "mallory: uid 70001 held by alice",
    ]
    assert run.argvs == []
    assert snapshot(root / "home") == home_before
    assert (root / "etc/passwd").read_bytes() == passwd_before
    assert not (root / "home/mallory").exists()


def test_system_accounts_are_untouched(root: Path) -> None:
    (root / "home/svc").mkdir(mode=0o750)
    os.chown(root / "home/svc", 500, 500)
    before = snapshot(root)
    run = Recorder()
    result = sync(root, ("root", "70010"), ("mail", "70011"), ("daemon", "70012"),
                  ("svc", "70013"), ("nogroup", "70014"), ("alice", "8"), run=run)
    assert len(result.refused) == 6
    assert all("never touched" in r or "not an integer" in r for r in result.refused)
    assert (result.created, result.errors, run.argvs) == ([], [], [])
    assert snapshot(root) == before


def test_a_failing_command_stops_only_that_user(root: Path, tmp_path: Path) -> None:
    # A useradd that fails for bob alone: a real process, configured as the daemon would be.
    useradd = ("/bin/sh", "-c",
               f'for a; do [ "$a" = bob ] && exit 3; done; exec {USERADD} "$@"', "useradd")
    run = Recorder()
    result = sync(root, ("alice", "70001"), ("bob", "70002"), ("carol", "70003"),
                  run=run, useradd=useradd)
    assert result.created == ["alice", "carol"]
    assert result.errors == ["bob: sh exited 3: no output"]
    assert not (root / "home/bob").exists()
    assert (root / "home/carol/Maildir").is_dir()
    # bob's group was made before useradd failed; the next cycle adds only the account.
    run = Recorder()
    result = sync(root, ("alice", "70001"), ("bob", "70002"), ("carol", "70003"), run=run)
    assert (result.created, result.errors) == (["bob"], [])
    assert run.programs() == ["useradd"]
    assert owner_and_mode(root / "home/bob/Maildir") == (70002, 70002, 0o700, True)


def test_a_missing_command_is_an_error_not_a_crash(root: Path) -> None:
    result = sync_users([CognitoUser("alice", "70001")], root=root,
                        useradd=("/nonexistent/useradd",), groupadd=("/nonexistent/groupadd",),
                        timeout=5, procmailrc=root / "etc/procmailrc")
    assert result.errors == ["alice: groupadd: cannot run: No such file or directory"]
    assert result.created == []


def test_a_home_that_is_a_file_refuses_that_user_only(root: Path) -> None:
    sync(root, ("alice", "70001"), ("bob", "70002"))
    shutil.rmtree(root / "home/alice")
    (root / "home/alice").write_text("not a directory")
    result = sync(root, ("alice", "70001"), ("bob", "70002"), ("carol", "70003"))
    assert result.refused == ["alice: home is not a directory"]
    assert result.created == ["carol"]
    assert (root / "home/alice").read_text() == "not a directory"


def test_drift_is_healed_on_the_directories_themselves_only(root: Path) -> None:
    sync(root, ("alice", "70001"))
    home = root / "home/alice"
    maildir = home / "Maildir"
    (maildir / "cur").mkdir()
    (maildir / "cur/1.msg").write_text("mail")
    for path in (maildir, maildir / "cur", maildir / "cur/1.msg"):
        os.chown(path, 0, 0)
    maildir.chmod(0o755)
    result = sync(root, ("alice", "70001"))
    assert (result.refused, result.errors) == ([], [])
    assert owner_and_mode(maildir) == (70001, 70001, 0o700, True)
    # Never recursive: what lies inside keeps its owner.
    assert owner_and_mode(maildir / "cur")[:2] == (0, 0)
    assert owner_and_mode(maildir / "cur/1.msg")[:2] == (0, 0)


def test_directories_owned_by_someone_else_are_refused(root: Path) -> None:
    sync(root, ("alice", "70001"), ("bob", "70002"))
    os.chown(root / "home/alice/.procmail", 70002, 70002)
    os.chown(root / "home/bob", 70001, 70001)
    (root / "home/erin").mkdir()
    os.chown(root / "home/erin", 70001, 70001)
    run = Recorder()
    result = sync(root, ("alice", "70001"), ("bob", "70002"), ("erin", "70005"), run=run)
    assert result.refused == ["erin: home owned by uid 70001",  # before any account is made
                              "alice: .procmail owned by uid 70002",
                              "bob: home owned by uid 70001"]
    assert run.argvs == []
    assert owner_and_mode(root / "home/alice/.procmail")[:2] == (70002, 70002)
    assert not (root / "home/alice/.procmail").is_symlink()


def test_an_existing_account_gets_back_a_lost_home(root: Path) -> None:
    sync(root, ("alice", "70001"))
    shutil.rmtree(root / "home/alice")
    run = Recorder()
    result = sync(root, ("alice", "70001"), run=run)
    assert (result.created, result.refused, result.errors, run.argvs) == ([], [], [], [])
    assert owner_and_mode(root / "home/alice") == (70001, 70001, 0o755, True)
    assert owner_and_mode(root / "home/alice/Maildir") == (70001, 70001, 0o700, True)
    assert (root / "home/alice/.procmailrc").read_bytes() == PROCMAILRC


def test_a_missing_procmailrc_is_an_error_for_those_who_need_it(root: Path) -> None:
    sync(root, ("alice", "70001"))
    (root / "etc/procmailrc").unlink()
    result = sync(root, ("alice", "70001"), ("bob", "70002"))
    assert result.created == ["bob"]
    assert result.errors == [f"bob: No such file or directory ({root / 'etc/procmailrc'})"]
    assert result.refused == []
    assert (root / "home/bob/Maildir").is_dir()
    assert sorted(os.listdir(root / "home/bob")) == [".procmail", ".profile", "Maildir"]


def test_one_log_line_per_refusal_failure_and_creation(root: Path) -> None:
    with capture_logs() as logs:
        result = sync(root, ("alice", "70001"), ("-rf", "70002"), ("bob", "70001"),
                      ("carol", "12"))
    assert result.created == ["alice"]
    events = [(e["event"], e["log_level"], e["user"], e.get("rule")) for e in logs]
    assert events == [
        ("user refused", "error", "'-rf'", "username: not a valid account name"),
        ("user refused", "error", "bob", "osid 70001 also claimed by alice in Cognito"),
        ("user refused", "error", "carol", "osid 12: not an integer in 1000..2147483646"),
        ("user created", "info", "alice", None),
    ]
    assert result.refused == [f"{user}: {rule}" for _, level, user, rule in events
                              if level == "error"]
