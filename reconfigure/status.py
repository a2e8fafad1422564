"""The status file: the last cycles' outcome, for `reconfigure health` and `status`,
operators and the mass-deletion guard (the address count of the last applied render).
Reading it and the health verdict live in `health.py`, which must stay tiny."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from reconfigure.files import atomic_write
from reconfigure.health import load, verdict
from reconfigure.report import CycleReport

OWED = "owed_reloads"  # reloads whose files are live but which are not done yet


def read_owed(path: Path) -> list[str]:
    """The reloads a process owed when it last wrote the status file (docs/design.md §5):
    a new process does them in its first cycle."""
    owed = load(path).get(OWED)
    return [str(name) for name in owed] if isinstance(owed, list) else []


def write_owed(path: Path, owed: list[str]) -> None:
    """Record the owed reloads at once (not at the cycle's end): a process killed between
    a swap and its signals must leave them for the next one."""
    status = load(path)
    if (status.get(OWED) or []) == sorted(owed):
        return  # nothing new to record (an empty list need not be written at all)
    status[OWED] = sorted(owed)
    atomic_write(path, json.dumps(status, indent=1, sort_keys=True).encode() + b"\n")


def record(path: Path, report: CycleReport, *, addresses: int | None,
           now: float | None = None, current: dict[str, Any] | None = None,
           last_ping: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Merge one cycle into the status (`current`, else the file's) and write it back;
    `addresses` is the count of a render that went live (even if a reload then failed);
    `last_ping` is the heartbeat's latest known ping outcome (pings go after this write,
    so it is the previous cycles').
    Returns the new status."""
    status = dict(load(path) if current is None else current)
    stamp = time.time() if now is None else now
    status["tier"] = report.tier
    if last_ping is not None:
        status["last_ping"] = dict(last_ping)
    status["last_cycle"] = {**asdict(report), "at": stamp, "ok": report.ok}
    status[OWED] = sorted(report.owed)
    status["cycles"] = int(status.get("cycles", 0)) + 1
    if addresses is not None:
        status["addresses"] = addresses
    if report.ok:
        status["last_success_at"] = stamp
    else:
        status["last_failure_at"] = stamp
        status["last_error"] = report.error
        status["failures"] = int(status.get("failures", 0)) + 1
    atomic_write(path, json.dumps(status, indent=1, sort_keys=True).encode() + b"\n")
    return status


def _when(stamp: object, now: float) -> str:
    if not isinstance(stamp, int | float):
        return "never"
    at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp))
    return f"{at} ({now - stamp:.0f} s ago)"


def _listed(values: object) -> str:
    return ", ".join(str(v) for v in values) if isinstance(values, list) and values else "none"


def describe(status: dict[str, Any], *, now: float, interval: float, path: Path) -> str:
    """`reconfigure status` for a person: what the last cycle did and what is pending."""
    if not status:
        return f"no status yet ({path} missing or unreadable): no cycle has finished"
    last = status.get("last_cycle") if isinstance(status.get("last_cycle"), dict) else {}
    assert isinstance(last, dict)
    healthy, why = verdict(status, now=now, interval=interval)
    rules = last.get("skipped_by_rule") or {}
    lines = [
        f"tier:           {status.get('tier', '?')} on {last.get('host', '?')}",
        f"health:         {'healthy' if healthy else 'UNHEALTHY'} ({why})",
        f"last cycle:     {_when(last.get('at'), now)}, trigger {last.get('trigger', '?')}, "
        f"{'ok' if last.get('ok') else 'FAILED'} in {last.get('duration_ms', '?')} ms",
    ]
    if last.get("error"):
        lines.append(f"error:          {last['error']}")
    lines += [
        f"rows:           {last.get('rows', 0)} read, {last.get('skipped', 0)} skipped",
        *(f"  skipped:      {count}: {rule}" for rule, count in sorted(
            rules.items(), key=lambda pair: (-pair[1], pair[0])) if isinstance(count, int)),
        f"changed files:  {_listed(last.get('changed'))}",
        f"reloads:        {_listed(last.get('reloads'))}",
        f"owed reloads:   {_listed(status.get('owed_reloads'))}",
        f"last success:   {_when(status.get('last_success_at'), now)}",
        f"last failure:   {_when(status.get('last_failure_at'), now)}",
        f"addresses:      {status.get('addresses', 'unknown')} applied (the guard's reference)",
        f"queue:          {last.get('queue') or 'unknown'}",
    ]
    ping = status.get("last_ping")
    if isinstance(ping, dict):
        lines.append(f"last ping:      {ping.get('kind', '?')} "
                     f"{'ok' if ping.get('ok') else 'FAILED'} {_when(ping.get('at'), now)}"
                     + (f" ({ping['error']})" if ping.get("error") else ""))
    else:
        lines.append("last ping:      none recorded")
    return "\n".join(lines)
