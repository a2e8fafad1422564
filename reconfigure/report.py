"""What one cycle did: the summary log line, the heartbeat body and the status file."""

from __future__ import annotations

from dataclasses import dataclass, field


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

    @property
    def ok(self) -> bool:
        return self.error is None
