"""The Healthchecks ping URL from SSM Parameter Store, re-read in the background.

The check's URL may be rotated (by an operator, or by the IaC that owns the checks); read
only at start, it would leave every running task pinging a dead check until a redeploy.
So a small daemon thread reads the parameter at start, every `refresh` seconds, and at
once when asked (the pinger asks after a 404: the check was rotated or deleted). A failed
read keeps the last value and never reaches a cycle. The value is a secret: it is never
logged; a failed read is named by its AWS error code or exception type only.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import boto3
import botocore.config

from reconfigure import log
from reconfigure.aws import error_code

# Each read is bounded: connect and read timeouts, one botocore retry (about 12 s at worst).
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 3.0


def client(region: str | None) -> Any:
    """An SSM client like `Aws.from_settings` builds (AWS_ENDPOINT_URL is honoured by
    boto3), with short timeouts: a read must never hang the thread that waits on it."""
    config = botocore.config.Config(
        region_name=region, connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
        retries={"mode": "standard", "max_attempts": 2},
    )
    return boto3.session.Session(region_name=region).client("ssm", config=config)


def _describe(error: BaseException) -> str:
    """The AWS error code, else the exception type; never the message (it may quote
    request details)."""
    return error_code(error) or type(error).__name__


class Parameter:
    """One SecureString parameter's latest value, kept fresh by a daemon thread.

    `value` is None until a read has succeeded; after that it is always the last value
    read, whatever later reads do.
    """

    def __init__(self, ssm: Any, name: str, *, refresh: float) -> None:
        self.name = name  # a path, not a secret
        self._ssm = ssm
        self._refresh = refresh
        self._cond = threading.Condition()
        self._value: str | None = None
        self._version: int | None = None
        self._asked = 0  # reread() requests so far
        self._answered = 0  # requests a finished read has served
        self._attempts = 0  # reads finished, successful or not
        self._failures = 0
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def value(self) -> str | None:
        with self._cond:
            return self._value

    @property
    def attempts(self) -> int:
        with self._cond:
            return self._attempts

    @property
    def failures(self) -> int:
        with self._cond:
            return self._failures

    def start(self) -> Parameter:
        """Start the reader: a first read at once, then one every `refresh` seconds."""
        with self._cond:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="ssm-parameter",
                                                daemon=True)
                self._thread.start()
        return self

    def wait_read(self, timeout: float) -> bool:
        """Wait until at least one read has finished (successful or not)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._closed or self._attempts > 0, timeout)

    def reread(self, timeout: float) -> str | None:
        """Read again now (not a read already under way) and wait at most `timeout` for
        it; the value afterwards (the last known one if the read failed or is slow)."""
        with self._cond:
            self._asked += 1
            wanted = self._asked
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._closed or self._answered >= wanted, timeout)
            return self._value

    def close(self) -> None:
        """Stop reading; a read in flight is left to the daemon thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _run(self) -> None:
        due = time.monotonic()
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or self._asked > self._answered,
                                    max(0.0, due - time.monotonic()))
                if self._closed:
                    return
                serving = self._asked  # requests made before this read started
            self._read()
            due = time.monotonic() + self._refresh
            with self._cond:
                self._answered = serving
                self._cond.notify_all()

    def _read(self) -> None:
        try:
            found = self._ssm.get_parameter(Name=self.name, WithDecryption=True)["Parameter"]
            value, version = str(found["Value"]), found.get("Version")
        except Exception as error:  # keep the last value; never let the thread die
            with self._cond:
                self._attempts += 1
                self._failures += 1
            log.get().warning("ssm parameter read failed", parameter=self.name,
                              error=_describe(error),
                              keeping="last value" if self.value is not None else "none yet")
            return
        with self._cond:
            changed = value != self._value
            first = self._value is None
            self._value, self._version = value, version
            self._attempts += 1
        if changed:
            log.get().info("ssm parameter loaded" if first else "ssm parameter changed",
                           parameter=self.name, version=version)
