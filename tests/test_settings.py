"""Settings from the environment: every variable's default, range and fallback, and one
line naming the variable for every bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconfigure.settings import Settings, SettingsError, from_env

BASE = {"TIER": "imap", "CERT_DOMAIN": "cabal.example", "AWS_REGION": "us-east-1"}


def settings(**extra: str) -> Settings:
    return from_env({**BASE, **extra})


def refused(**extra: str) -> SettingsError:
    with pytest.raises(SettingsError) as caught:
        from_env({**BASE, **extra})
    assert "\n" not in str(caught.value)
    return caught.value


def test_defaults() -> None:
    s = settings()
    assert (s.tier, s.cert_domain, s.aws_region) == ("imap", "cabal.example", "us-east-1")
    assert s.relay_host == "imap.cabal.example"
    assert (s.sinkhole_enabled, s.sqs_queue_url, s.ping_url, s.cognito_pool_id) == (
        False, None, None, None)
    assert (s.interval, s.scan_segments, s.max_shrink_percent) == (900, 1, 50)
    assert (s.heartbeat_min_interval, s.heartbeat_start) == (60, False)
    assert s.root == Path("/") and s.ready_file == "/run/sendmail-ready"
    assert s.address_table == "cabal-addresses" and s.sendmail_signal == "TERM"
    assert s.makemap == ("/usr/sbin/makemap", "-c", "67108864")
    assert s.newaliases == ("/usr/sbin/sendmail", "-bi")
    assert (s.useradd, s.groupadd) == (("/usr/sbin/useradd",), ("/usr/sbin/groupadd",))
    assert s.command_timeout == 300
    assert s.sendmail_pid_file == "/var/run/sendmail.pid"
    assert s.opendkim_pid_file == "/var/run/opendkim/opendkim.pid"
    assert s.status_file == "/var/lib/reconfigure/status.json"
    assert (s.sns_topic_arn, s.metrics_port, s.metrics_address) == (None, None, "0.0.0.0")
    assert (s.orphan_queue_age, s.read_deadline, s.log_level) == (3600, 180, "info")
    assert (s.ping_ssm_parameter, s.ssm_refresh) == (None, 300)


@pytest.mark.parametrize("missing", ["TIER", "CERT_DOMAIN", "AWS_REGION"])
def test_required(missing: str) -> None:
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(SettingsError, match=f"^{missing}: required but not set$"):
        from_env(env)


def test_region_falls_back_to_the_boto3_variable_and_dry_runs_need_none() -> None:
    env = {k: v for k, v in BASE.items() if k != "AWS_REGION"}
    assert from_env({**env, "AWS_DEFAULT_REGION": "eu-west-1"}).aws_region == "eu-west-1"
    assert from_env(env, need_aws=False).aws_region is None


@pytest.mark.parametrize(("variable", "value"), [
    ("TIER", "mx"), ("CERT_DOMAIN", "-bad.example"), ("CERT_DOMAIN", "a..b"),
    ("IMAP_INTERNAL_HOST", "host name"), ("IMAP_INTERNAL_HOST", "x" * 254),
    ("RECONFIGURE_SENDMAIL_SIGNAL", "KILL"), ("RECONFIGURE_ADDRESS_TABLE", "a b"),
    ("RECONFIGURE_ADDRESS_TABLE", "ab"), ("RECONFIGURE_HEARTBEAT_START", "yes"),
    ("RECONFIGURE_MAKEMAP", "'unclosed"), ("RECONFIGURE_SNS_TOPIC_ARN", "not-an-arn"),
    ("RECONFIGURE_LOG_LEVEL", "loud"), ("HEALTHCHECK_PING_SSM_PARAMETER", "no spaces"),
])
def test_bad_values_name_their_variable(variable: str, value: str) -> None:
    assert refused(**{variable: value}).variable == variable


@pytest.mark.parametrize(("variable", "low", "high", "attribute"), [
    ("RECONFIGURE_INTERVAL", 1, 86400, "interval"),
    ("RECONFIGURE_SCAN_SEGMENTS", 1, 64, "scan_segments"),
    ("RECONFIGURE_MAX_SHRINK_PERCENT", 0, 100, "max_shrink_percent"),
    ("RECONFIGURE_HEARTBEAT_MIN_INTERVAL", 0, 86400, "heartbeat_min_interval"),
    ("RECONFIGURE_COMMAND_TIMEOUT", 1, 3600, "command_timeout"),
    ("RECONFIGURE_ORPHAN_QUEUE_AGE", 1, 30 * 86400, "orphan_queue_age"),
    ("RECONFIGURE_METRICS_PORT", 1, 65535, "metrics_port"),
    ("RECONFIGURE_READ_DEADLINE", 5, 3600, "read_deadline"),
    ("RECONFIGURE_SSM_REFRESH", 1, 86400, "ssm_refresh"),
    ("RECONFIGURE_SENDMAIL_BACK_TIMEOUT", 1, 600, "sendmail_back_timeout"),
    ("RECONFIGURE_VISIBILITY_TIMEOUT", 2, 43200, "visibility_timeout"),
])
def test_numbers_within_their_range(variable: str, low: int, high: int,
                                    attribute: str) -> None:
    assert getattr(settings(**{variable: str(low)}), attribute) == low
    assert getattr(settings(**{variable: f" {high} "}), attribute) == high
    for bad in (str(low - 1), str(high + 1), "ten", "1e999999"):
        assert refused(**{variable: bad}).variable == variable


def test_fallbacks_and_spellings() -> None:
    assert settings(IMAP_INTERNAL_HOST="imap.internal").relay_host == "imap.internal"
    assert settings(SINKHOLE_ENABLED="true").sinkhole_enabled
    assert not settings(SINKHOLE_ENABLED="True").sinkhole_enabled  # exactly `true`
    assert settings(RECONFIGURE_SENDMAIL_SIGNAL="hup").sendmail_signal == "HUP"
    assert settings(RECONFIGURE_HEARTBEAT_START="TRUE").heartbeat_start
    assert settings(RECONFIGURE_LOG_LEVEL="DEBUG").log_level == "debug"
    assert settings(RECONFIGURE_MAKEMAP="/bin/mm -c '1 2'").makemap == ("/bin/mm", "-c", "1 2")
    assert settings(SQS_QUEUE_URL="  ").sqs_queue_url is None
    assert settings(RECONFIGURE_ROOT="/tmp/r").path("/etc/mail/access") == Path(
        "/tmp/r/etc/mail/access")


def test_a_ping_url_that_is_not_http_means_no_pings() -> None:
    assert settings(HEALTHCHECK_PING_URL="https://hc.example/ping/x").ping_url == (
        "https://hc.example/ping/x")
    assert settings(HEALTHCHECK_PING_URL="ftp://hc.example/x").ping_url is None
    assert settings(HEALTHCHECK_PING_URL="").ping_url is None


def test_a_secret_url_never_appears_in_an_error() -> None:
    error = refused(HEALTHCHECK_PING_URL="https://hc.example/ping/secret-key",
                    RECONFIGURE_INTERVAL="0")
    assert "secret-key" not in str(error)
