"""Wiring: settings → AWS clients, heartbeat, cycler, trigger queue, loop, metrics.

Imported only by the commands that talk to AWS (`run`, `once`), so `render` and
`health` never load boto3 or requests.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Mapping

from reconfigure import commands, log, metrics, queues, ssm
from reconfigure.aws import Aws, BoundedCall, Cancelled, DeadlineExceeded, bounded, describe
from reconfigure.cycle import Cycler
from reconfigure.heartbeat import Heartbeat
from reconfigure.loop import Daemon
from reconfigure.report import CycleReport
from reconfigure.settings import Settings, SettingsError
from reconfigure.tiers import TIERS
from reconfigure.users.sync import list_confirmed_users, sync_users

# The daemon has 2 s to exit; the private queue's teardown may take 1 s of them, and
# the last /fail (a cycle cut short after its /start) gets most of the rest.
HEARTBEAT_STOP_SECONDS = 0.7


def _heartbeat(settings: Settings) -> Heartbeat:
    """The pinger; with HEALTHCHECK_PING_SSM_PARAMETER its URL is read (and re-read) from
    SSM, and HEALTHCHECK_PING_URL only stands in until the first read succeeds."""
    source = None
    if settings.ping_ssm_parameter is not None:
        if settings.ping_url is not None:
            log.get().warning("HEALTHCHECK_PING_URL and HEALTHCHECK_PING_SSM_PARAMETER both "
                              "set: the parameter wins once read")
        source = ssm.Parameter(ssm.client(settings.aws_region), settings.ping_ssm_parameter,
                               refresh=settings.ssm_refresh).start()
    return Heartbeat(settings.ping_url, settings.tier,
                     min_interval=settings.heartbeat_min_interval,
                     send_start=settings.heartbeat_start, source=source)


def _parts(settings: Settings) -> tuple[Cycler, Heartbeat]:
    stop = threading.Event()
    heartbeat = _heartbeat(settings)
    cycler = Cycler(settings, Aws.from_settings(settings, stop), heartbeat, stop)
    return cycler, heartbeat


def _stop_after(stop: threading.Event, timeout: float | None) -> threading.Timer | None:
    """Sets `stop` when a bounded command runs out of time: every AWS wait, retry and
    child process then ends at once, as on SIGTERM."""
    if timeout is None:
        return None
    timer = threading.Timer(timeout, stop.set)
    timer.daemon = True
    timer.start()
    return timer


def _stop_on_signals(stop: threading.Event) -> None:
    """For the one-shot commands: TERM/INT abandon the step in flight cleanly (temp files
    removed, children killed) instead of killing the process mid-write."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())


def once(settings: Settings, *, force: bool, timeout: float | None = None) -> int:
    """One cycle; the exit status of `reconfigure once` (bounded by `timeout`)."""
    cycler, heartbeat = _parts(settings)
    cycler.queue = "once"
    _stop_on_signals(cycler.stop)
    timer = _stop_after(cycler.stop, timeout)
    try:
        report = cycler.run("once", force=force)
    finally:
        if timer is not None:
            timer.cancel()
        heartbeat.close(timeout=2.0 if timeout is not None else 10.0)
    if report.abandoned:
        why = f"timed out after {timeout:g} s" if timer is not None and not timer.is_alive() \
            and cycler.stop.is_set() else "stopped"
        print(f"reconfigure once: {why}; nothing half-applied", file=sys.stderr)
    return 0 if report.ok else 1


def users(settings: Settings, *, timeout: float) -> int:
    """`reconfigure users`: the OS-user pass alone, for the entrypoint before Dovecot
    starts. 0 when every user was reconciled (refusals are decisions, logged); 1 with one
    line when Cognito did not answer in time, the read failed or a user could not be made."""
    if not TIERS[settings.tier].sync_users:
        raise SettingsError("TIER", f"{settings.tier} has no OS users")
    if settings.cognito_pool_id is None:
        raise SettingsError("COGNITO_POOL_ID", "required for reconfigure users")
    stop = threading.Event()
    _stop_on_signals(stop)
    timer = _stop_after(stop, timeout)
    aws = Aws.from_settings(settings, stop)
    pool = settings.cognito_pool_id
    try:
        listed = bounded(lambda: list_confirmed_users(aws.cognito, pool, aws.call),
                         stop=stop, deadline=timeout, what="cognito-idp.list_users")
        result = sync_users(listed, root=settings.root, useradd=settings.useradd,
                            groupadd=settings.groupadd, timeout=settings.command_timeout,
                            procmailrc=settings.path("/etc/procmailrc"), stop=stop)
    except (Cancelled, DeadlineExceeded, commands.Stopped):
        print(f"reconfigure users: not finished within {timeout:g} s "
              "(Cognito unreachable or slow)", file=sys.stderr)
        return 1
    except Exception as error:
        print(f"reconfigure users: {describe(error)}", file=sys.stderr)
        return 1
    finally:
        if timer is not None:
            timer.cancel()
    if result.errors:
        print(f"reconfigure users: {len(result.errors)} user(s) not set up: "
              f"{result.errors[0]}", file=sys.stderr)
        return 1
    log.get().info("users done", users=len(listed), created=len(result.created),
                   refused=len(result.refused))
    return 0


def run(settings: Settings, env: Mapping[str, str]) -> int:
    """The daemon, until SIGTERM/SIGINT; the exit status of `reconfigure run`."""
    cycler, heartbeat = _parts(settings)
    triggers = _triggers(settings, cycler, env)
    cycler.queue = ("private" if isinstance(triggers, queues.PrivateTriggers)
                    else "shared" if triggers.url else "periodic")
    daemon = Daemon(cycler, triggers, settings.interval, settings.path(settings.ready_file),
                    queue_fault_bound=settings.read_deadline)
    daemon.install_signal_handlers()
    if settings.metrics_port is not None:
        cycler.metrics = metrics.Metrics(settings.tier,
                                         heartbeat_failures=lambda: heartbeat.stats().failed)
        try:
            metrics.serve(cycler.metrics, settings.metrics_address, settings.metrics_port)
        except OSError as error:
            raise SettingsError("RECONFIGURE_METRICS_PORT",
                                f"cannot listen on {settings.metrics_port}: {error.strerror}"
                                ) from None
    log.get().info("starting", tier=settings.tier, periodic_s=settings.interval,
                   queue=bool(settings.sqs_queue_url), users=bool(settings.cognito_pool_id))
    try:
        daemon.run()
    finally:
        heartbeat.close(timeout=HEARTBEAT_STOP_SECONDS)
    return 0


def _triggers(settings: Settings, cycler: Cycler,
              env: Mapping[str, str]) -> queues.TriggerQueue:
    """The shared queue (or none: periodic mode), or a private queue per daemon."""
    logger = log.get()
    if settings.sns_topic_arn is None:
        if not settings.sqs_queue_url:
            logger.warning("SQS_QUEUE_URL not set: periodic-only mode",
                           interval_s=settings.interval)
        return queues.SharedQueue(settings.sqs_queue_url, cycler.aws.sqs,
                                  BoundedCall(cycler.aws, queues.UPKEEP_DEADLINE),
                                  BoundedCall(cycler.aws, queues.RECEIVE_DEADLINE),
                                  visibility=settings.visibility_timeout,
                                  receiver=cycler.aws.sqs_receiver)
    if settings.sqs_queue_url:
        logger.warning("SQS_QUEUE_URL and RECONFIGURE_SNS_TOPIC_ARN both set: "
                       "using a private queue")
    aws = cycler.aws
    private = queues.PrivateQueue(
        sqs=aws.sqs, sns=aws.sns, call=BoundedCall(aws, queues.UPKEEP_DEADLINE),
        tier=settings.tier,
        owner=queues.identity(env), topic_arn=settings.sns_topic_arn,
        region=settings.aws_region or "", orphan_age=settings.orphan_queue_age)

    def setup_failed(error: str) -> None:
        if cycler.heartbeat is not None:
            cycler.heartbeat.finish(None, CycleReport(settings.tier, cycler.host, "setup",
                                                      error=error))

    return queues.PrivateTriggers(private, on_setup_failed=setup_failed,
                                  receive_call=BoundedCall(aws, queues.RECEIVE_DEADLINE),
                                  visibility=settings.visibility_timeout,
                                  receiver=aws.sqs_receiver)
