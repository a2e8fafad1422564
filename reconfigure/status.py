"""The status file: the last cycles' outcome, for `reconfigure health`, operators and the
mass-deletion guard (which needs the address count of the last applied render)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from reconfigure.files import atomic_write
from reconfigure.report import CycleReport


def load(path: Path) -> dict[str, Any]:
    """The last status, or {} when there is none or it is unreadable (never fatal)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record(path: Path, report: CycleReport, *, addresses: int | None,
           now: float | None = None, current: dict[str, Any] | None = None,
           last_ping: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Merge one cycle into the status (`current`, else the file's) and write it back;
    `addresses` is set after a successful apply; `last_ping` is the heartbeat's latest
    known ping outcome (pings go after this write, so it is the previous cycles').
    Returns the new status."""
    status = dict(load(path) if current is None else current)
    stamp = time.time() if now is None else now
    status["tier"] = report.tier
    if last_ping is not None:
        status["last_ping"] = dict(last_ping)
    status["last_cycle"] = {**asdict(report), "at": stamp, "ok": report.ok}
    status["cycles"] = int(status.get("cycles", 0)) + 1
    if report.ok:
        status["last_success_at"] = stamp
        if addresses is not None:
            status["addresses"] = addresses
    else:
        status["last_failure_at"] = stamp
        status["last_error"] = report.error
        status["failures"] = int(status.get("failures", 0)) + 1
    atomic_write(path, json.dumps(status, indent=1, sort_keys=True).encode() + b"\n")
    return status


def health(status: dict[str, Any], *, now: float, interval: float) -> tuple[bool, str]:
    """Healthy when the last cycle succeeded and it is at most two fallback periods old."""
    last_success = status.get("last_success_at")
    last_cycle = status.get("last_cycle")
    if not isinstance(last_success, int | float) or not isinstance(last_cycle, dict):
        return False, "no successful cycle yet"
    if not last_cycle.get("ok", False):
        return False, f"last cycle failed: {status.get('last_error')}"
    age = now - last_success
    if age > 2 * interval:
        return False, f"last success {age:.0f} s ago (limit {2 * interval:.0f} s)"
    return True, f"ok: last success {age:.0f} s ago"
