"""What must hold after every fault (issue 10, "The test suite itself"; docs/design.md §5-§7):

- the old config still serving: the live files and maps byte for byte as before the fault;
- nothing missing or half-written: every generated file there, every `.db` readable by
  makemap and holding exactly its text file's lines (imap's /etc/aliases whole);
- no temp file left;
- the fault reported: status file, `/fail` ping, a `cycle failed` log line;
- no message lost: a message is deleted only after a successful cycle;
- recovery without a restart once the fault ends: the change live, status ok, a success ping.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reconfigure.apply import ALIASES_HEADER
from reconfigure.tiers import ALIASES, ALIASES_STATIC, TIERS
from tests.faults.rig import Rig
from tests.support.world import dump_map, temp_files, wait_for

RECOVERY = 60.0  # seconds: a retry with backoff, a message's redelivery, the next timer cycle


def _under(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def _db(path: Path) -> Path:
    return path.with_name(path.name + ".db")


def dump(db: Path, cf: Path) -> dict[str, str]:
    """A map as makemap reads it back (a swap under way is read past: see dump_map)."""
    return dump_map(db, cf)


@dataclass(frozen=True)
class Live:
    """The config a tier serves: each generated file's bytes (text, `.db`, /etc/aliases),
    and each map as makemap reads it back."""

    files: dict[str, bytes | None]
    maps: dict[str, dict[str, str]]


def live(root: Path, tier: str) -> Live:
    files: dict[str, bytes | None] = {}
    maps: dict[str, dict[str, str]] = {}
    paths = [a.path for a in TIERS[tier].artifacts] + ([ALIASES] if tier == "imap" else [])
    for artifact in TIERS[tier].artifacts:
        if artifact.hash_map:
            paths.append(artifact.path + ".db")
            db = _db(_under(root, artifact.path))
            if db.exists():
                maps[artifact.path] = dump(db, root / "sendmail.cf")
    for path in paths:
        target = _under(root, path)
        files[path] = target.read_bytes() if target.exists() else None
    return Live(files, maps)


def virtusertable(root: Path) -> dict[str, str]:
    return dump(root / "etc/mail/virtusertable.db", root / "sendmail.cf")


def assert_whole(root: Path, tier: str) -> None:
    """No file or `.db` missing or half-written: each map's `.db` is readable and holds
    exactly its text file's lines (makemap lower-cases keys)."""
    for artifact in TIERS[tier].artifacts:
        text = _under(root, artifact.path)
        assert text.exists(), f"{artifact.path} missing"
        if not artifact.hash_map:
            continue
        db = _db(text)
        assert db.exists(), f"{artifact.path}.db missing"
        lines = [line.split("\t", 1) for line in text.read_text().splitlines() if line]
        assert dump(db, root / "sendmail.cf") == {k.lower(): v for k, v in lines}, \
            f"{artifact.path}.db does not hold its text file"
    if tier == "imap":
        aliases = _under(root, ALIASES).read_bytes()
        expected = (_under(root, ALIASES_STATIC).read_bytes() + ALIASES_HEADER
                    + _under(root, "/etc/aliases.dynamic").read_bytes())
        assert aliases == expected, "/etc/aliases is not static + dynamic"


def assert_serving(root: Path, tier: str, before: Live) -> None:
    """The old config still serving, whole."""
    now = live(root, tier)
    changed = sorted(p for p in before.files if now.files.get(p) != before.files[p])
    assert not changed, f"live files changed by a failed cycle: {changed}"
    assert now.maps == before.maps
    assert_whole(root, tier)


def assert_no_temps(root: Path) -> None:
    left = sorted(str(p.relative_to(root)) for p in temp_files(root))
    assert not left, f"temp files left: {left}"


def assert_reported(rig: Rig, cause: str, *, status: bool = True, ping: bool = True,
                    log: bool = True, timeout: float = 15.0) -> None:
    """The fault reported where an operator looks: the status file's last cycle, a /fail
    ping naming the cause, a `cycle failed` log line naming it."""
    if log:
        rig.wait_event("cycle failed", timeout=timeout,
                       where=lambda e: cause in str(e.get("error")))
        assert_log_lines_only(rig)
    if status:
        wait_for(lambda: rig.last_cycle().get("ok") is False
                 and cause in str(rig.last_cycle().get("error")),
                 timeout=timeout, what=f"status file: last cycle failed with {cause!r}")
    if ping:
        wait_for(lambda: [e for e in rig.fail_errors() if cause in e],
                 timeout=timeout, what=f"a /fail ping whose error names {cause!r}")


def assert_log_lines_only(rig: Rig) -> None:
    """Every line the daemon wrote is one JSON log event: a fault is a line, never a
    traceback."""
    stray = [line for line in rig.log.read_text().splitlines()
             if not line.startswith("{") or not line.endswith("}")]
    assert not stray, f"the daemon wrote lines that are not log events: {stray[:5]}"


def assert_message_kept(rig: Rig) -> None:
    """Not deleted by a cycle that failed: in flight (invisible) or back in the queue."""
    assert rig.world.queue_depth() >= 1, "a message was deleted although its cycle failed"


def assert_recovered(rig: Rig, key: str, *, timeout: float = RECOVERY) -> None:
    """Once the fault ends: the change live, the last cycle ok, a success ping after the
    last /fail, the message deleted, nothing left behind."""
    wait_for(lambda: key in virtusertable(rig.root), timeout=timeout,
             what=f"{key} live after the fault")
    wait_for(lambda: rig.last_cycle().get("ok") is True, timeout=timeout,
             what="status file: a successful cycle")

    def success_after_fail() -> bool:
        paths = [r.path for r in rig.ping_log()]
        fails = [i for i, p in enumerate(paths) if p.endswith("/fail")]
        return any(p == "/hc" for p in paths[(fails[-1] + 1 if fails else 0):])

    wait_for(success_after_fail, timeout=timeout, what="a success ping after the /fail")
    wait_for(lambda: rig.world.queue_depth() == 0, timeout=timeout,
             what="the message deleted after a successful cycle")
    assert_no_temps(rig.root)
    assert_whole(rig.root, rig.tier)


def assert_starts_answered(rig: Rig) -> None:
    """Every /start ping got its outcome (success or /fail) with the same rid."""
    starts = {r.args.get("rid") for r in rig.pings_to("/start")}
    outcomes = {r.args.get("rid") for r in rig.pings_to("") + rig.pings_to("/fail")}
    assert starts <= outcomes, f"/start pings without an outcome: {starts - outcomes}"
