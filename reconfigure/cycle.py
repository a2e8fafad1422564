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

from reconfigure import apply, commands, files, guard, health, log, status, table
from reconfigure.aws import Aws, Cancelled, DeadlineExceeded, bounded, describe
from reconfigure.heartbeat import Cycle as HeartbeatCycle
from reconfigure.heartbeat import Heartbeat
from reconfigure.metrics import Metrics
from reconfigure.reload import Reloader, ReloadFailed
from reconfigure.render import RenderOptions, render_tier
from reconfigure.report import CycleReport, log_fields
from reconfigure.rows import ATTRIBUTES, Skipped
from reconfigure.settings import Settings
from reconfigure.tiers import ALIASES, TIERS, Reload
from reconfigure.tree import TreeBuilder, count_addresses
from reconfigure.users.plan import CognitoUser
from reconfigure.users.sync import list_confirmed_users, sync_users


class SourcesTimeout(RuntimeError):
    """The table (or Cognito) did not answer within RECONFIGURE_READ_DEADLINE."""


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
    queue: str = ""  # the trigger source, for the report: "shared", "private", "periodic"
    # What was already logged, so a bad row or a refused user is one warning when it
    # appears, not one every 15 minutes; the cycle's summary line carries the counts.
    _skipped_seen: frozenset[Skipped] = frozenset()
    _refusals_seen: set[str] = field(default_factory=set)
    _swept: bool = False  # a daemon's own temp names are swept before its first cycle
    _reloaded: bool = False  # this cycle attempted its reloads (never twice in a cycle)
    _live_addresses: int | None = None  # the count of a render this cycle made live

    def __post_init__(self) -> None:
        if self.reloader is None:
            self.reloader = Reloader(self.settings)

    def run(self, trigger: str, *, force: bool = False, messages: int = 0,
            queue_error: str | None = None) -> CycleReport:
        """Never raises for AWS, file or command trouble: the report carries the error.
        `queue_error`: the trigger queue has failed too long (docs/design.md §6); a cycle
        that otherwise worked is reported failed with it."""
        report = CycleReport(tier=self.settings.tier, host=self.host, trigger=trigger,
                             messages=messages, queue=self.queue)
        if not self._swept and trigger != "once":
            self._sweep()
        self._reloaded = False
        started, cpu = time.monotonic(), _cpu_seconds()
        handle = self.heartbeat.begin() if self.heartbeat else None
        self._live_addresses = None
        try:
            self._cycle(report, force=force)
        except (Cancelled, commands.Stopped):
            report.abandoned = True
            report.error = "abandoned: shutting down"
        except Exception as error:
            report.error = describe(error)
            if not self._reloaded:
                self._retry_owed(report)
        assert self.reloader is not None
        report.owed = self.reloader.names()
        if report.error is None and queue_error is not None:
            report.error = queue_error
        report.duration_ms = round((time.monotonic() - started) * 1000)
        report.cpu_ms = round((_cpu_seconds() - cpu) * 1000)
        # Once the render is live its count is the guard's reference, even when a reload
        # or the queue then failed the cycle.
        self._report(report, handle, self._live_addresses)
        return report

    def _cycle(self, report: CycleReport, *, force: bool) -> None:
        settings, tier, logger = self.settings, TIERS[self.settings.tier], log.get()
        started = time.monotonic()
        try:
            builder, users = self._read_sources()
        finally:
            report.aws_ms = round((time.monotonic() - started) * 1000)
        report.rows, report.skipped = builder.rows, len(builder.skipped)
        report.skipped_by_rule = dict(Counter(s.rule for s in builder.skipped))
        for row in builder.skipped:
            if row not in self._skipped_seen:
                logger.warning("row skipped", address=row.address, rule=row.rule)
        self._skipped_seen = frozenset(builder.skipped)
        if users is not None:
            self._sync_users(report, users)
        rendered = render_tier(tier, builder.tree,
                               RenderOptions(settings.relay_host, settings.sinkhole_enabled))
        report.dropped_lines = len(rendered.dropped)
        for line in rendered.dropped:
            logger.warning("duplicate map key dropped", path=line.path, line=line.line,
                           kept=line.kept)
        addresses = count_addresses(builder.tree)
        # Read fresh every cycle: `once --force` in another process may have moved it.
        recorded = health.load(self.status_path).get("addresses")
        guard.check(addresses, guard.reference(recorded, tier, settings.root),
                    settings.max_shrink_percent, force=force)
        changes = apply.plan(tier, rendered, settings.root)
        aliases = apply.aliases_change(tier, rendered, settings.root)
        if aliases is not None:
            changes.append(aliases)
        staged = apply.stage(changes, makemap=settings.makemap,
                             timeout=settings.command_timeout, stop=self.stop)
        reloader = self.reloader
        assert reloader is not None
        reloader.expect({item.change.reload for item in staged if item.change.reload})
        try:
            applied = apply.swap(staged)  # from here on: no half-applied state
        except apply.SwapFailed as failed:
            # What went live before the failure owes its reloads: do them now, and keep
            # the swap's error as the cycle's (the rest is redone next cycle).
            report.changed = failed.applied.changed
            reloader.owe(failed.applied.reloads)
            self._reload(report, set(), quiet=True)
            raise
        report.changed = applied.changed
        report.applied = True
        self._live_addresses = addresses
        reloader.owe(applied.reloads)
        self._reload(report, applied.reloads)

    def _reload(self, report: CycleReport, reloads: set[Reload], *,
                quiet: bool = False) -> None:
        """Reloads needed now and those owed (retried every cycle, changed or not): the
        ones done go into the report even when another fails or the daemon stops; a
        failure fails the cycle (unless `quiet`: the cycle already failed) and stays owed
        (docs/design.md §5)."""
        assert self.reloader is not None
        self._reloaded = True
        try:
            self.reloader.run(reloads, self.stop, report.reloads)
        except ReloadFailed as failed:
            if not quiet:
                raise
            log.get().error("owed reload failed", error=str(failed))

    def _retry_owed(self, report: CycleReport) -> None:
        """A cycle that failed before its swap still owes what earlier cycles left: those
        files are live, so their reloads are due whatever this cycle's trouble."""
        assert self.reloader is not None
        if not self.reloader.owed or self.stop.is_set():
            return
        try:
            self._reload(report, set(), quiet=True)
        except commands.Stopped:
            report.abandoned = True

    def _sweep(self) -> None:
        """At a daemon's start: remove the temp files a killed predecessor left (only our
        own names beside the files we write; docs/design.md §5). Not in `once`, which
        may run beside a daemon whose temp files are in use."""
        self._swept = True
        settings = self.settings
        paths = [settings.path(a.path) for tier in TIERS.values() for a in tier.artifacts]
        paths += [settings.path(ALIASES), self.status_path]
        try:
            removed = files.sweep(paths)
        except OSError as error:
            log.get().error("temp files not swept", error=f"{type(error).__name__}: {error}")
            return
        if removed:
            log.get().info("temp files swept", count=len(removed),
                           paths=[str(p) for p in removed[:20]])

    def _read_sources(self) -> tuple[TreeBuilder, list[CognitoUser] | None]:
        """The whole table (and the Cognito users, on tiers that sync them), read by a worker
        thread: on stop the cycle abandons it at once (its request finishes on its own and
        is thrown away), and a read that outlasts the deadline fails the cycle instead of
        retrying silently for as long as an outage lasts."""
        settings, tier = self.settings, TIERS[self.settings.tier]

        def read() -> tuple[TreeBuilder, list[CognitoUser] | None]:
            builder = TreeBuilder()
            for page in table.scan_pages(self.aws, ATTRIBUTES, settings.scan_segments):
                builder.add(page)
            users = None
            if tier.sync_users and settings.cognito_pool_id:
                users = list_confirmed_users(self.aws.cognito, settings.cognito_pool_id,
                                             self.aws.call)
            return builder, users

        try:
            return bounded(read, stop=self.stop, deadline=settings.read_deadline,
                           what="read")
        except DeadlineExceeded:
            raise SourcesTimeout(
                f"sources not read within {settings.read_deadline:g} s "
                f"(RECONFIGURE_READ_DEADLINE): AWS unreachable or slow") from None

    def _sync_users(self, report: CycleReport, users: list[CognitoUser]) -> None:
        settings = self.settings
        result = sync_users(
            users, root=settings.root, useradd=settings.useradd, groupadd=settings.groupadd,
            timeout=settings.command_timeout, procmailrc=settings.path("/etc/procmailrc"),
            stop=self.stop)
        report.users_created = list(result.created)
        report.users_refused = [*result.refused, *result.errors]

    @property
    def status_path(self) -> Path:
        return self.settings.path(self.settings.status_file)

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
            status.record(self.status_path, report, addresses=addresses, last_ping=last_ping)
        except OSError as error:
            logger.error("status file not written", error=f"{type(error).__name__}: {error}")
        if report.ok:
            logger.info("cycle done", **fields)
        else:
            logger.error("cycle failed", error=report.error, **fields)
        if self.heartbeat:
            self.heartbeat.finish(handle, report)
