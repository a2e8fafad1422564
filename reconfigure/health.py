"""`reconfigure health`: the container HEALTHCHECK's verdict from the status file.

It runs every minute in every task, so it imports nothing beyond `json`, `os` and `time`
(no argparse, no settings module, no third-party code) and reads just the three settings
it needs. Exit 0 (healthy) or 1 (not), never 2: Docker reserves that code.
"""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

DEFAULT_STATUS_FILE = "/var/lib/reconfigure/status.json"
DEFAULT_INTERVAL = 900.0
INTERVAL_RANGE = (1.0, 86400.0)


def _decode(text: str) -> object:
    """JSON through the C scanner that `json` itself uses: importing `json` pulls in `re`
    (and with it enum and functools), which alone costs more CPU than the whole check."""
    try:
        from _json import make_scanner  # noqa: PLC0415
    except ImportError:  # pragma: no cover - an interpreter without the C accelerator
        import json  # noqa: PLC0415

        return json.loads(text)
    context = SimpleNamespace(strict=True, object_hook=None, object_pairs_hook=None,
                              parse_float=float, parse_int=int, parse_constant=float,
                              memo={})
    stripped = text.strip()
    value, end = make_scanner(context)(stripped, 0)  # type: ignore[arg-type]
    if end != len(stripped):
        raise ValueError("extra data after the JSON document")
    return value


def load(path: str | os.PathLike[str]) -> dict[str, object]:
    """The last status, or {} when there is none or it is unreadable (never fatal)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = _decode(handle.read())
    except (OSError, ValueError, StopIteration):
        return {}
    return data if isinstance(data, dict) else {}


def verdict(status: dict[str, object], *, now: float, interval: float) -> tuple[bool, str]:
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


def _interval(raw: str) -> float:
    try:
        value = float(raw) if raw.strip() else DEFAULT_INTERVAL
    except ValueError:
        raise ValueError(f"RECONFIGURE_INTERVAL: not a number: {raw!r}") from None
    low, high = INTERVAL_RANGE
    if not low <= value <= high:
        raise ValueError(f"RECONFIGURE_INTERVAL: must be between {low:g} and {high:g}, got {raw}")
    return value


def main(env: dict[str, str] | None = None) -> int:
    env = dict(os.environ) if env is None else env
    try:
        interval = _interval(env.get("RECONFIGURE_INTERVAL", ""))
    except ValueError as error:
        print(f"reconfigure: {error}")
        return 1
    root = env.get("RECONFIGURE_ROOT", "").strip() or "/"
    status_file = env.get("RECONFIGURE_STATUS_FILE", "").strip() or DEFAULT_STATUS_FILE
    path = os.path.join(root, status_file.lstrip("/"))
    healthy, message = verdict(load(path), now=time.time(), interval=interval)
    print(message)
    return 0 if healthy else 1
