"""What one cycle did, and its three renderings: the summary log line's fields, the
heartbeat body, and (as a dict) the status file's last cycle."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class CycleReport:
    tier: str
    host: str
    trigger: str  # "startup", "message", "timer", "once"
    rows: int = 0
    skipped: int = 0
    skipped_by_rule: dict[str, int] = field(default_factory=dict)
    dropped_lines: int = 0
    changed: list[str] = field(default_factory=list)  # container paths of files replaced
    reloads: list[str] = field(default_factory=list)  # e.g. "sendmail:TERM", "newaliases"
    users_created: list[str] = field(default_factory=list)
    users_refused: list[str] = field(default_factory=list)  # "name: rule"
    messages: int = 0
    duration_ms: int = 0
    aws_ms: int = 0  # time spent in AWS calls (waiting, and botocore parsing), inside duration_ms
    cpu_ms: int = 0  # CPU of the daemon and its children (makemap, newaliases) in the cycle
    error: str | None = None
    abandoned: bool = False  # ended early by shutdown: neither success nor failure
    # The render is live (swapped in, or nothing to change): the triggering messages have
    # done their job even if a reload then failed (it stays owed and is reported).
    applied: bool = False
    queue: str = ""  # where triggers come from: "shared", "private", "periodic" (or "once")
    owed: list[str] = field(default_factory=list)  # reloads still owed after this cycle

    @property
    def ok(self) -> bool:
        return self.error is None


def log_fields(report: CycleReport) -> dict[str, Any]:
    """The fields of the one summary line a cycle logs ("cycle done" / "cycle failed")."""
    fields: dict[str, Any] = {
        "trigger": report.trigger, "messages": report.messages,
        "rows": report.rows, "skipped": report.skipped,
        "skipped_by_rule": report.skipped_by_rule,
        "changed": report.changed, "reloads": report.reloads,
        "duration_ms": report.duration_ms, "aws_ms": report.aws_ms, "cpu_ms": report.cpu_ms,
    }
    if report.owed:
        fields["owed_reloads"] = report.owed
    if report.users_created or report.users_refused:
        fields.update(users_created=len(report.users_created),
                      users_refused=len(report.users_refused))
    return fields


BODY_LIMIT = 8000  # bytes; a self-hosted Healthchecks keeps 10 kB of a ping body
_VALUE_LIMIT = 500  # bytes for one listed value (a path, a refusal)
_ERROR_LIMIT = 2000  # bytes for the error line
_MAX_RULES = 20  # per-rule skip lines
_MORE_RESERVE = 200  # room kept for the "… and N more" lines


def _one_line(text: str) -> str:
    """A value on one line, so the body stays `key: value` per line."""
    return " ".join(text.split())


def _clip(text: str, limit: int) -> str:
    """At most `limit` UTF-8 bytes, never cutting inside a character."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: max(limit - 3, 0)].decode("utf-8", "ignore") + "…"


def _size(lines: Iterable[str]) -> int:
    return sum(len(line.encode("utf-8")) + 1 for line in lines)


def _rule_lines(by_rule: dict[str, int]) -> list[str]:
    """Per-rule skip counts, most frequent first (rules are a small fixed set)."""
    ranked = sorted(by_rule.items(), key=lambda pair: (-pair[1], pair[0]))
    lines = [f"skipped [{_clip(_one_line(rule), 200)}]: {count}"
             for rule, count in ranked[:_MAX_RULES]]
    if len(ranked) > _MAX_RULES:
        lines.append(f"skipped [… and {len(ranked) - _MAX_RULES} more rules]: "
                     f"{sum(count for _, count in ranked[_MAX_RULES:])}")
    return lines


def stopped_body(tier: str, host: str) -> str:
    """The /fail body for a cycle cut short by shutdown before its report was made."""
    return (f"tier: {_clip(_one_line(tier), _VALUE_LIMIT)}\n"
            f"host: {_clip(_one_line(host), _VALUE_LIMIT)}\n"
            "status: stopped\nerror: stopped\n")


def format_body(report: CycleReport, *, limit: int = BODY_LIMIT) -> str:
    """Plain text, one `key: value` a line, at most `limit` bytes of UTF-8.

    The fixed facts (and the error) come first so truncation only ever shortens the
    lists, each of which then ends with "… and N more".
    """
    head = [
        f"tier: {_one_line(report.tier)}",
        f"host: {_one_line(report.host)}",
        f"trigger: {_one_line(report.trigger)}",
        f"status: {'stopped' if report.abandoned else 'ok' if report.ok else 'failed'}",
    ]
    if report.error is not None:
        head.append(f"error: {_clip(_one_line(report.error), _ERROR_LIMIT)}")
    head += [
        f"duration_ms: {report.duration_ms}",
        f"aws_ms: {report.aws_ms}",
        f"rows: {report.rows}",
        f"skipped: {report.skipped}",
        *_rule_lines(report.skipped_by_rule),
        f"dropped duplicate lines: {report.dropped_lines}",
        f"messages: {report.messages}",
        f"changed files: {len(report.changed)}",
        f"reloads: {_clip(_one_line(', '.join(report.reloads)), _VALUE_LIMIT) or 'none'}",
        f"owed reloads: {_clip(_one_line(', '.join(report.owed)), _VALUE_LIMIT) or 'none'}",
    ]
    if report.users_created or report.users_refused:
        head.append(f"users created: {len(report.users_created)}")
        head.append(f"users refused: {len(report.users_refused)}")

    lists: list[tuple[str, list[str]]] = [
        ("refused", list(report.users_refused)),
        ("created", list(report.users_created)),
        ("changed", list(report.changed)),
    ]
    lines = list(head)
    budget = limit - _MORE_RESERVE
    for key, values in lists:
        for index, value in enumerate(values):
            line = f"{key}: {_clip(_one_line(value), _VALUE_LIMIT)}"
            if _size(lines) + _size([line]) > budget:
                lines.append(f"{key}: … and {len(values) - index} more")
                break
            lines.append(line)
    return _clip("\n".join(lines) + "\n", limit)
