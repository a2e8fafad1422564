"""Environment → a frozen Settings. Every problem is one line naming the variable.

Standard library only: `reconfigure health` reads its settings on every container
health check, and must not pay for boto3 or jinja2.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from reconfigure.files import under
from reconfigure.health import DEFAULT_INTERVAL, DEFAULT_STATUS_FILE, INTERVAL_RANGE
from reconfigure.tiers import TIERS

_HOST_RE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                      r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_SIGNALS = ("TERM", "HUP")


class SettingsError(ValueError):
    """A missing or invalid setting; str() is the one line an operator sees."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


@dataclass(frozen=True, slots=True)
class Settings:
    tier: str
    cert_domain: str
    aws_region: str | None
    relay_host: str
    sinkhole_enabled: bool
    sqs_queue_url: str | None
    interval: float
    ping_url: str | None  # secret: never log it
    cognito_pool_id: str | None
    root: Path
    ready_file: str
    address_table: str
    sendmail_signal: str
    scan_segments: int
    max_shrink_percent: float
    heartbeat_min_interval: float
    heartbeat_start: bool
    makemap: tuple[str, ...]
    newaliases: tuple[str, ...]
    useradd: tuple[str, ...]
    groupadd: tuple[str, ...]
    command_timeout: float
    sendmail_pid_file: str
    opendkim_pid_file: str
    status_file: str
    sns_topic_arn: str | None  # set: a private queue per daemon (see fanout.py)
    metrics_port: int | None  # set: Prometheus metrics on this port
    metrics_address: str
    orphan_queue_age: float
    read_deadline: float = 180.0  # a cycle that cannot read its sources by then fails
    log_level: str = "info"
    ping_ssm_parameter: str | None = None  # set: the ping URL is read (and re-read) from SSM
    ssm_refresh: float = 300.0  # seconds between reads of ping_ssm_parameter
    sendmail_back_timeout: float = 30.0  # after its signal, sendmail must be back by then
    visibility_timeout: int = 60  # a received message stays hidden this long (and is kept so)

    def path(self, absolute: str) -> Path:
        """Where a container path lives under RECONFIGURE_ROOT."""
        return under(self.root, absolute)


def _number(env: Mapping[str, str], name: str, default: float, low: float,
            high: float, *, integer: bool = False) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise SettingsError(name, f"not a number: {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(name, f"must be between {low:g} and {high:g}, got {raw}")
    return value


def _command(env: Mapping[str, str], name: str, default: str) -> tuple[str, ...]:
    raw = env.get(name, "").strip() or default
    try:
        argv = tuple(shlex.split(raw))
    except ValueError as error:
        raise SettingsError(name, f"cannot split into arguments: {error}") from None
    if not argv:
        raise SettingsError(name, "empty command")
    return argv


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "false").strip().lower()
    if raw not in ("true", "false", ""):
        raise SettingsError(name, f"must be true or false, got {raw!r}")
    return raw == "true"


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of `choices` (case-insensitive); the first is the default."""
    raw = env.get(name, "").strip().lower() or choices[0]
    if raw not in choices:
        raise SettingsError(name, f"must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise SettingsError(name, "required but not set")
    return value


def from_env(env: Mapping[str, str], *, need_aws: bool = True) -> Settings:
    """Validated settings; `need_aws=False` for dry runs that read a scan file."""
    tier = _required(env, "TIER")
    if tier not in TIERS:
        raise SettingsError("TIER", f"must be one of {', '.join(TIERS)}, got {tier!r}")
    cert_domain = _required(env, "CERT_DOMAIN")
    if not _HOST_RE.fullmatch(cert_domain):
        raise SettingsError("CERT_DOMAIN", f"not a domain name: {cert_domain!r}")
    relay_host = env.get("IMAP_INTERNAL_HOST", "").strip() or f"imap.{cert_domain}"
    if len(relay_host) > 253 or not _HOST_RE.fullmatch(relay_host):
        raise SettingsError("IMAP_INTERNAL_HOST", f"not a host name: {relay_host!r}")
    region = env.get("AWS_REGION", "").strip() or env.get("AWS_DEFAULT_REGION", "").strip()
    if need_aws and not region:
        raise SettingsError("AWS_REGION", "required but not set")
    ping_url = env.get("HEALTHCHECK_PING_URL", "").strip()
    signal_name = env.get("RECONFIGURE_SENDMAIL_SIGNAL", "TERM").strip().upper() or "TERM"
    if signal_name not in _SIGNALS:
        raise SettingsError("RECONFIGURE_SENDMAIL_SIGNAL",
                            f"must be TERM or HUP, got {signal_name!r}")
    table = env.get("RECONFIGURE_ADDRESS_TABLE", "").strip() or "cabal-addresses"
    if not re.fullmatch(r"[A-Za-z0-9_.-]{3,255}", table):
        raise SettingsError("RECONFIGURE_ADDRESS_TABLE", f"not a DynamoDB table name: {table!r}")
    return Settings(
        tier=tier,
        cert_domain=cert_domain,
        aws_region=region or None,
        relay_host=relay_host,
        sinkhole_enabled=env.get("SINKHOLE_ENABLED", "") == "true",
        sqs_queue_url=env.get("SQS_QUEUE_URL", "").strip() or None,
        interval=_number(env, "RECONFIGURE_INTERVAL", DEFAULT_INTERVAL, *INTERVAL_RANGE),
        ping_url=ping_url if ping_url.startswith(("http://", "https://")) else None,
        cognito_pool_id=env.get("COGNITO_POOL_ID", "").strip() or None,
        root=Path(env.get("RECONFIGURE_ROOT", "").strip() or "/"),
        ready_file=env.get("RECONFIGURE_READY_FILE", "").strip() or "/run/sendmail-ready",
        address_table=table,
        sendmail_signal=signal_name,
        scan_segments=int(_number(env, "RECONFIGURE_SCAN_SEGMENTS", 1, 1, 64, integer=True)),
        max_shrink_percent=_number(env, "RECONFIGURE_MAX_SHRINK_PERCENT", 50, 0, 100),
        heartbeat_min_interval=_number(env, "RECONFIGURE_HEARTBEAT_MIN_INTERVAL", 60, 0, 86400),
        heartbeat_start=_flag(env, "RECONFIGURE_HEARTBEAT_START"),
        makemap=_command(env, "RECONFIGURE_MAKEMAP", "/usr/sbin/makemap -c 67108864"),
        newaliases=_command(env, "RECONFIGURE_NEWALIASES", "/usr/sbin/sendmail -bi"),
        useradd=_command(env, "RECONFIGURE_USERADD", "/usr/sbin/useradd"),
        groupadd=_command(env, "RECONFIGURE_GROUPADD", "/usr/sbin/groupadd"),
        command_timeout=_number(env, "RECONFIGURE_COMMAND_TIMEOUT", 300, 1, 3600),
        sendmail_pid_file=env.get("RECONFIGURE_SENDMAIL_PID_FILE", "").strip()
        or "/var/run/sendmail.pid",
        opendkim_pid_file=env.get("RECONFIGURE_OPENDKIM_PID_FILE", "").strip()
        or "/var/run/opendkim/opendkim.pid",
        status_file=env.get("RECONFIGURE_STATUS_FILE", "").strip() or DEFAULT_STATUS_FILE,
        sns_topic_arn=_topic_arn(env),
        orphan_queue_age=_number(env, "RECONFIGURE_ORPHAN_QUEUE_AGE", 3600, 1, 30 * 86400),
        metrics_port=int(_number(env, "RECONFIGURE_METRICS_PORT", 0, 1, 65535, integer=True))
        or None,
        metrics_address=env.get("RECONFIGURE_METRICS_ADDRESS", "").strip() or "0.0.0.0",  # noqa: S104 - scraped from outside the container
        read_deadline=_number(env, "RECONFIGURE_READ_DEADLINE", 180, 5, 3600),
        log_level=_choice(env, "RECONFIGURE_LOG_LEVEL", ("info", "debug", "warning", "error")),
        ping_ssm_parameter=_ssm_parameter(env),
        ssm_refresh=_number(env, "RECONFIGURE_SSM_REFRESH", 300, 1, 86400),
        sendmail_back_timeout=_number(env, "RECONFIGURE_SENDMAIL_BACK_TIMEOUT", 30, 1, 600),
        visibility_timeout=int(_number(env, "RECONFIGURE_VISIBILITY_TIMEOUT", 60, 2, 43200,
                                       integer=True)),
    )


def _topic_arn(env: Mapping[str, str]) -> str | None:
    raw = env.get("RECONFIGURE_SNS_TOPIC_ARN", "").strip()
    if raw and not re.fullmatch(r"arn:[a-z-]+:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}", raw):
        raise SettingsError("RECONFIGURE_SNS_TOPIC_ARN", f"not an SNS topic ARN: {raw!r}")
    return raw or None


def _ssm_parameter(env: Mapping[str, str]) -> str | None:
    """A parameter name (`/cabal/healthcheck_ping_ecs_reconfigure`) or its ARN."""
    raw = env.get("HEALTHCHECK_PING_SSM_PARAMETER", "").strip()
    if raw and not re.fullmatch(r"(arn:[a-z-]+:ssm:[a-z0-9-]+:\d{12}:parameter/)?"
                                r"[A-Za-z0-9_./-]{1,2048}", raw):
        raise SettingsError("HEALTHCHECK_PING_SSM_PARAMETER",
                            f"not an SSM parameter name or ARN: {raw!r}")
    return raw or None
