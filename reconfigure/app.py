"""Wiring: settings → AWS clients, heartbeat, cycler, trigger queue, loop, metrics.

Imported only by the commands that talk to AWS (`run`, `once`), so `render` and
`health` never load boto3 or requests.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from reconfigure import log, metrics, queues, ssm
from reconfigure.aws import Aws
from reconfigure.cycle import Cycler
from reconfigure.heartbeat import Heartbeat
from reconfigure.loop import Daemon
from reconfigure.report import CycleReport
from reconfigure.settings import Settings, SettingsError

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


def once(settings: Settings, *, force: bool) -> int:
    """One cycle; the exit status of `reconfigure once`."""
    cycler, heartbeat = _parts(settings)
    try:
        report = cycler.run("once", force=force)
    finally:
        heartbeat.close(timeout=10.0)
    return 0 if report.ok else 1


def run(settings: Settings, env: Mapping[str, str]) -> int:
    """The daemon, until SIGTERM/SIGINT; the exit status of `reconfigure run`."""
    cycler, heartbeat = _parts(settings)
    daemon = Daemon(cycler, _triggers(settings, cycler, env), settings.interval,
                    settings.ready_file)
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
        return queues.SharedQueue(settings.sqs_queue_url)
    if settings.sqs_queue_url:
        logger.warning("SQS_QUEUE_URL and RECONFIGURE_SNS_TOPIC_ARN both set: "
                       "using a private queue")
    aws = cycler.aws
    private = queues.PrivateQueue(
        sqs=aws.sqs, sns=aws.sns, call=aws.call, tier=settings.tier,
        owner=queues.identity(env), topic_arn=settings.sns_topic_arn,
        region=settings.aws_region or "", orphan_age=settings.orphan_queue_age)

    def setup_failed(error: str) -> None:
        if cycler.heartbeat is not None:
            cycler.heartbeat.finish(None, CycleReport(settings.tier, cycler.host, "setup",
                                                      error=error))

    return queues.PrivateTriggers(private, on_setup_failed=setup_failed)
