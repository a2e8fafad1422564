"""One cycle: read → (users) → render → guard → apply → reload → report (SPEC §6)."""

from __future__ import annotations

import resource
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconfigure import apply, commands, log, status
from reconfigure.aws import Aws, Cancelled, describe
from reconfigure.heartbeat import Cycle as HeartbeatCycle
from reconfigure.heartbeat import Heartbeat
from reconfigure.metrics import Metrics
from reconfigure.reload import signal_daemon
from reconfigure.render import render_tier
from reconfigure.report import CycleReport
from reconfigure.settings import Settings
from reconfigure.tiers import TIERS, Reload
from reconfigure.tree import Tree, TreeBuilder, count_addresses
from reconfigure.users import list_confirmed_users, sync_users

GUARD_MINIMUM = 20  # below this many rendered addresses the guard stays out of the way


def _cpu_seconds() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


class GuardTripped(RuntimeError):
    """The table read would drop too many addresses: probably a mis-pointed table or IAM."""


@dataclass
class Cycler:
    settings: Settings
    aws: Aws
    heartbeat: Heartbeat | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    host: str = field(default_factory=socket.gethostname)
    # Reloads owed from an earlier cycle whose signal failed after its files were swapped in:
    # the files now match the render, so no later plan would ask for them again.
    pending: set[Reload] = field(default_factory=set)
    metrics: Metrics | None = None
    _status: dict[str, Any] | None = None  # the status file, read once, then kept here

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
        settings, tier = self.settings, TIERS[self.settings.tier]
        logger = log.get()
        builder = TreeBuilder()
        self.aws.scan_addresses(builder, settings.scan_segments)
        report.rows = builder.rows
        report.skipped = len(builder.skipped)
        report.skipped_by_rule = dict(Counter(s.rule for s in builder.skipped))
        for row in builder.skipped:
            logger.warning("row skipped", address=row.address, rule=row.rule)
        if tier.sync_users and settings.cognito_pool_id:
            self._sync_users(report, settings.cognito_pool_id)
        rendered = render_tier(tier, builder.tree, settings.render_options())
        report.dropped_lines = len(rendered.dropped)
        for line in rendered.dropped:
            logger.warning("duplicate map key dropped", path=line.path, line=line.line,
                           kept=line.kept)
        addresses = self._guard(builder.tree, force=force)
        changes = apply.plan(tier, rendered, settings.root)
        aliases = apply.aliases_change(tier, rendered, settings.root)
        if aliases is not None:
            changes.append(aliases)
        staged = apply.stage(changes, makemap=settings.makemap,
                             timeout=settings.command_timeout, stop=self.stop)
        applied = apply.swap(staged)  # from here on the cycle finishes: no half-applied state
        report.changed = applied.changed
        report.reloads.extend(self._reload(applied.reloads))
        return addresses

    def _sync_users(self, report: CycleReport, pool_id: str) -> None:
        settings = self.settings
        users = list_confirmed_users(self.aws.cognito, pool_id, self.aws.call)
        result = sync_users(
            users, root=settings.root, useradd=settings.useradd, groupadd=settings.groupadd,
            timeout=settings.command_timeout, procmailrc=settings.path("/etc/procmailrc"),
            run=self._run_unless_stopping)
        report.users_created = list(result.created)
        report.users_refused = [*result.refused, *result.errors]

    def _run_unless_stopping(self, argv: list[str],
                             **options: Any) -> subprocess.CompletedProcess[str]:
        """Creating many users takes a while: on shutdown, stop between two commands
        (each leaves the account files whole; the next cycle adds what is missing)."""
        if self.stop.is_set():
            raise commands.Stopped(argv[0])
        done: subprocess.CompletedProcess[str] = subprocess.run(argv, **options)  # noqa: PLW1510
        return done

    def _guard(self, tree: Tree, *, force: bool) -> int:
        addresses = count_addresses(tree)
        previous = self.status.get("addresses")
        limit = self.settings.max_shrink_percent
        if (not force and isinstance(previous, int) and previous >= GUARD_MINIMUM
                and addresses < previous * (1 - limit / 100)):
            raise GuardTripped(
                f"table read has {addresses} addresses, {previous} are rendered: more than "
                f"{limit:g}% would go, nothing applied. If this is intended, run "
                f"`reconfigure once --force` or raise RECONFIGURE_MAX_SHRINK_PERCENT")
        return addresses

    def _reload(self, reloads: set[Reload]) -> list[str]:
        """newaliases, and one signal per daemon however many of its files changed (never
        HUP to opendkim, for which HUP means stop). What fails stays owed to the next cycle."""
        settings = self.settings
        self.pending |= reloads
        done, errors = [], []
        if Reload.NEWALIASES in self.pending:
            try:
                commands.run(apply.newaliases_argv(settings.newaliases, settings.root),
                             timeout=settings.command_timeout)
                self.pending.discard(Reload.NEWALIASES)
                done.append("newaliases")
            except commands.CommandFailed as error:
                errors.append(str(error))
        targets = {
            Reload.SENDMAIL_RESTART: (settings.sendmail_pid_file, "sendmail",
                                      settings.sendmail_signal),
            Reload.OPENDKIM_RELOAD: (settings.opendkim_pid_file, "opendkim", "USR1"),
        }
        for reload in sorted(self.pending & targets.keys(), key=lambda r: r.value):
            pid_file, name, signame = targets[reload]
            try:
                pid = signal_daemon(settings.path(pid_file), signal.Signals[f"SIG{signame}"],
                                    name)
            except (OSError, ValueError) as error:
                errors.append(f"{name}: {error}")
                continue
            self.pending.discard(reload)
            done.append(f"{name}:{signame}" if pid else f"{name}:not-running")
        if errors:
            raise RuntimeError("reload failed: " + "; ".join(errors))
        return done

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
        logger = log.get()
        fields = {
            "trigger": report.trigger, "rows": report.rows, "skipped": report.skipped,
            "changed": report.changed, "reloads": report.reloads,
            "duration_ms": report.duration_ms, "aws_ms": report.aws_ms, "cpu_ms": report.cpu_ms,
        }
        if report.users_created or report.users_refused:
            fields.update(users_created=len(report.users_created),
                          users_refused=len(report.users_refused))
        if self.metrics is not None:
            self.metrics.observe(report)
        if report.abandoned:
            logger.info("cycle abandoned", **fields)
            return
        try:
            self._status = status.record(self.status_path, report, addresses=addresses,
                                         current=self.status)
        except OSError as error:
            logger.error("status file not written", error=f"{type(error).__name__}: {error}")
        if report.ok:
            logger.info("cycle done", **fields)
        else:
            logger.error("cycle failed", error=report.error, **fields)
        if self.heartbeat:
            self.heartbeat.finish(handle, report)
