"""One cycle, the data path of docs/design.md: read → (users) → render → guard → apply →
reload → report. Each step is a call into the module that owns it; nothing else here."""

from __future__ import annotations

import resource
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconfigure import apply, commands, guard, log, status, table
from reconfigure.aws import Aws, Cancelled, describe
from reconfigure.heartbeat import Cycle as HeartbeatCycle
from reconfigure.heartbeat import Heartbeat
from reconfigure.metrics import Metrics
from reconfigure.reload import Reloader, ReloadFailed
from reconfigure.render import RenderOptions, render_tier
from reconfigure.report import CycleReport, log_fields
from reconfigure.rows import ATTRIBUTES
from reconfigure.settings import Settings
from reconfigure.tiers import TIERS
from reconfigure.tree import TreeBuilder, count_addresses
from reconfigure.users.sync import list_confirmed_users, sync_users


def _cpu_seconds() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


@dataclass
class Cycler:
    settings: Settings
    aws: Aws
    heartbeat: Heartbeat | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    host: str = field(default_factory=socket.gethostname)
    reloader: Reloader | None = None
    metrics: Metrics | None = None
    _status: dict[str, Any] | None = None  # the status file, read once, then kept here

    def __post_init__(self) -> None:
        if self.reloader is None:
            self.reloader = Reloader(self.settings)

    def run(self, trigger: str, *, force: bool = False, messages: int = 0) -> CycleReport:
        """Never raises for AWS, file or command trouble: the report carries the error."""
        report = CycleReport(tier=self.settings.tier, host=self.host, trigger=trigger,
                             messages=messages)
        started, waited, cpu = time.monotonic(), self.aws.waited, _cpu_seconds()
        handle = self.heartbeat.begin() if self.heartbeat else None
        addresses: int | None = None
        try:
            addresses = self._cycle(report, force=force)
        except (Cancelled, commands.Stopped):
            report.abandoned = True
            report.error = "abandoned: shutting down"
        except Exception as error:
            report.error = describe(error)
        report.duration_ms = round((time.monotonic() - started) * 1000)
        report.aws_ms = round((self.aws.waited - waited) * 1000)
        report.cpu_ms = round((_cpu_seconds() - cpu) * 1000)
        self._report(report, handle, addresses)
        return report

    def _cycle(self, report: CycleReport, *, force: bool) -> int:
        settings, tier, logger = self.settings, TIERS[self.settings.tier], log.get()
        builder = TreeBuilder()
        for page in table.scan_pages(self.aws, ATTRIBUTES, settings.scan_segments):
            builder.add(page)
        report.rows, report.skipped = builder.rows, len(builder.skipped)
        report.skipped_by_rule = dict(Counter(s.rule for s in builder.skipped))
        for row in builder.skipped:
            logger.warning("row skipped", address=row.address, rule=row.rule)
        if tier.sync_users and settings.cognito_pool_id:
            self._sync_users(report, settings.cognito_pool_id)
        rendered = render_tier(tier, builder.tree,
                               RenderOptions(settings.relay_host, settings.sinkhole_enabled))
        report.dropped_lines = len(rendered.dropped)
        for line in rendered.dropped:
            logger.warning("duplicate map key dropped", path=line.path, line=line.line)
        addresses = count_addresses(builder.tree)
        guard.check(addresses, self.status.get("addresses"), settings.max_shrink_percent,
                    force=force)
        changes = apply.plan(tier, rendered, settings.root)
        aliases = apply.aliases_change(tier, rendered, settings.root)
        if aliases is not None:
            changes.append(aliases)
        staged = apply.stage(changes, makemap=settings.makemap,
                             timeout=settings.command_timeout, stop=self.stop)
        applied = apply.swap(staged)  # from here on the cycle finishes: no half-applied state
        report.changed = applied.changed
        assert self.reloader is not None
        try:
            report.reloads.extend(self.reloader.run(applied.reloads))
        except ReloadFailed as failed:
            report.reloads.extend(failed.done)
            raise
        return addresses

    def _sync_users(self, report: CycleReport, pool_id: str) -> None:
        settings = self.settings
        users = list_confirmed_users(self.aws.cognito, pool_id, self.aws.call)
        result = sync_users(
            users, root=settings.root, useradd=settings.useradd, groupadd=settings.groupadd,
            timeout=settings.command_timeout, procmailrc=settings.path("/etc/procmailrc"),
            stop=self.stop)
        report.users_created = list(result.created)
        report.users_refused = [*result.refused, *result.errors]

    @property
    def status_path(self) -> Path:
        return self.settings.path(self.settings.status_file)

    @property
    def status(self) -> dict[str, Any]:
        if self._status is None:
            self._status = status.load(self.status_path)
        return self._status

    def _report(self, report: CycleReport, handle: HeartbeatCycle | None,
                addresses: int | None) -> None:
        logger, fields = log.get(), log_fields(report)
        if self.metrics is not None:
            self.metrics.observe(report)
        if report.abandoned:
            logger.info("cycle abandoned", **fields)
            return
        try:
            last_ping = self.heartbeat.last_ping() if self.heartbeat else None
            self._status = status.record(self.status_path, report, addresses=addresses,
                                         current=self.status, last_ping=last_ping)
        except OSError as error:
            logger.error("status file not written", error=f"{type(error).__name__}: {error}")
        if report.ok:
            logger.info("cycle done", **fields)
        else:
            logger.error("cycle failed", error=report.error, **fields)
        if self.heartbeat:
            self.heartbeat.finish(handle, report)
