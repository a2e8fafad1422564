"""The OS-user pass: plan against the account files, run groupadd/useradd for what is
missing, then make each home's directories; one user's failure never stops the others."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconfigure import commands, log
from reconfigure.aws import Call
from reconfigure.table import user_pages
from reconfigure.users.accounts import read_account_db
from reconfigure.users.homes import Refused, check_new_home, ensure_home, reader
from reconfigure.users.plan import (
    OSID_MIN,
    CognitoUser,
    Planned,
    confirmed_users,
    plan_users,
    show,
)


@dataclass(slots=True)
class UserSyncResult:
    """What the cycle reports: names created, and one line per refused or failed user."""

    created: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # "name: rule"
    errors: list[str] = field(default_factory=list)  # "name: what failed" (retried next cycle)


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
    argvs = []
    if planned.add_group:
        argvs.append([*groupadd, *prefix, "-g", number, "--", name])
    if planned.add_user:
        argvs.append([*useradd, *prefix, *skel, "-l", "-u", number, "-g", number,
                      "-d", f"/home/{name}", "-m", "--", name])
    return argvs


class _Outcome:
    """Collects the result and logs each refusal, failure and creation as one line; a
    refusal already in `reported` (logged by an earlier pass) is counted, not logged."""

    def __init__(self, reported: set[str] | None = None) -> None:
        self.result = UserSyncResult()
        self.logger = log.get()
        self.reported = reported

    def refuse(self, name: str, rule: str) -> None:
        line = f"{show(name)}: {rule}"
        if self.reported is None or line not in self.reported:
            self.logger.error("user refused", user=show(name), rule=rule)
        self.result.refused.append(line)

    def fail(self, name: str, error: str) -> None:
        self.logger.error("user sync failed", user=name, error=error)
        self.result.errors.append(f"{name}: {error}")

    def created(self, planned: Planned) -> None:
        self.logger.info("user created", user=planned.username, uid=planned.id,
                         group=planned.add_group, account=planned.add_user)
        self.result.created.append(planned.username)


@dataclass(frozen=True, slots=True)
class _Tools:
    root: Path
    useradd: Sequence[str]
    groupadd: Sequence[str]
    timeout: float
    run: commands.Runner
    stop: threading.Event | None


def _create(planned: Planned, outcome: _Outcome, tools: _Tools) -> bool:
    """Run groupadd/useradd for what `planned` lacks; True when the account is complete.
    Raises commands.Stopped on shutdown, between two commands (each leaves the account
    files whole; the next cycle adds what is missing)."""
    if planned.id < OSID_MIN:  # pragma: no cover - plan_users never lets one through
        outcome.refuse(planned.username, "id below 1000")
        return False
    try:
        check_new_home(tools.root / "home" / planned.username, planned.id)
    except Refused as refusal:
        outcome.refuse(planned.username, str(refusal))
        return False
    except OSError as error:
        outcome.fail(planned.username, f"home: {error.strerror or error}")
        return False
    for argv in account_commands(planned, root=tools.root, useradd=tools.useradd,
                                 groupadd=tools.groupadd):
        try:
            tools.run(argv, timeout=tools.timeout, stop=tools.stop)
        except commands.CommandFailed as error:
            outcome.fail(planned.username, str(error))
            return False
    outcome.created(planned)
    return True


def _ensure_homes(ready: Sequence[Planned], outcome: _Outcome, *, root: Path,
                  procmailrc: Path) -> None:
    source = reader(procmailrc)
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
                ensure_home(parent_fd, planned.username, planned.id, source)
            except Refused as refusal:
                outcome.refuse(planned.username, str(refusal))
            except OSError as error:
                where = f" ({error.filename})" if error.filename else ""
                outcome.fail(planned.username, f"{error.strerror or error}{where}")
    finally:
        os.close(parent_fd)


def sync_users(users: Iterable[CognitoUser], *, root: Path, useradd: Sequence[str],
               groupadd: Sequence[str], timeout: float, procmailrc: Path,
               run: commands.Runner = commands.run,
               stop: threading.Event | None = None,
               reported: set[str] | None = None) -> UserSyncResult:
    """Add the missing accounts and per-home directories; refuse what breaks a rule.

    Idempotent and cheap when nothing is missing: one read of passwd and group, a few
    stat calls per home, no process. One user's failure never stops the others. Raises
    OSError only when the account database itself cannot be read, commands.Stopped when
    `stop` is set. `reported`, if given, is the set of refusals already logged; it is
    updated to this pass's refusals.
    """
    outcome = _Outcome(reported)
    plan = plan_users(users, read_account_db(root))
    for name, rule in plan.refused:
        outcome.refuse(name, rule)
    tools = _Tools(root, useradd, groupadd, timeout, run, stop)
    ready = list(plan.already_ok)
    ready.extend(planned for planned in plan.to_create if _create(planned, outcome, tools))
    if ready:
        _ensure_homes(ready, outcome, root=root, procmailrc=procmailrc)
    if reported is not None:
        reported.clear()
        reported.update(outcome.result.refused)
    return outcome.result


def list_confirmed_users(cognito: Any, pool_id: str, call: Call) -> list[CognitoUser]:
    """Every CONFIRMED user of the pool that carries `custom:osid`, across all pages."""
    return [user for page in user_pages(cognito, pool_id, call) for user in confirmed_users(page)]
