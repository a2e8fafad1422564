"""The AWS edge: boto3 clients and the retry policy every call goes through.

Transient failures (throttling, 5xx, connection trouble) are retried with capped,
jittered exponential backoff for as long as it takes; the waits end at once when the
daemon is asked to stop. Permanent failures (access denied, no such table) raise.
What is called (scans, queues, Cognito) lives in `table` and `queues`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

import boto3
import botocore.config
import botocore.exceptions
import botocore.parsers
import botocore.session
import tenacity

from reconfigure import log
from reconfigure.longpoll import LongPoll
from reconfigure.settings import Settings

T = TypeVar("T")
_THROTTLING = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "ProvisionedThroughputExceededException", "RequestLimitExceeded", "TooManyRequestsException",
    "RequestThrottledException", "SlowDown", "InternalError", "InternalFailure",
    "InternalServerError", "ServiceUnavailable", "TransactionInProgressException",
    "LimitExceededException",
})
_NETWORK_ERRORS = (botocore.exceptions.HTTPClientError, botocore.exceptions.ConnectionError)


class Call(Protocol):
    """The retry wrapper AWS calls go through (`Aws.call`, or a test's recorder)."""

    def __call__(self, what: str, function: Callable[[], T], /) -> T: ...


class BoundedCall:
    """`Aws.call` with a deadline, as a `Call`: queue upkeep and receives give up after
    it and retry on their own schedule, so they never hold anything up for long."""

    def __init__(self, aws: Aws, deadline: float) -> None:
        self.aws, self.deadline = aws, deadline

    def __call__(self, what: str, function: Callable[[], T], /) -> T:
        return self.aws.call(what, function, deadline=self.deadline)


class Cancelled(Exception):
    """The daemon is stopping: abandon the AWS call in progress."""


class DeadlineExceeded(RuntimeError):
    """AWS did not answer (or kept failing) until a caller's deadline; str() is one line."""


_WAIT_STEP = 0.05  # how quickly an abandoned call notices the stop event


def bounded(function: Callable[[], T], *, stop: threading.Event, deadline: float,
            what: str) -> T:
    """`function()` run by a worker thread that the caller stops waiting for on `stop`
    (Cancelled) or after `deadline` seconds (DeadlineExceeded): a blocked socket read or a
    retry loop never holds up shutdown or a bounded command. The abandoned worker ends on
    its own (its next retry sees `stop`, or its request times out) and its result is lost."""
    done = threading.Event()
    outcome: list[tuple[bool, Any]] = []

    def work() -> None:
        try:
            outcome.append((True, function()))
        except BaseException as error:  # handed to the caller
            outcome.append((False, error))
        done.set()

    threading.Thread(target=work, name=what, daemon=True).start()
    until = time.monotonic() + deadline
    while not done.wait(_WAIT_STEP):
        if stop.is_set():
            raise Cancelled(what)
        if time.monotonic() >= until:
            raise DeadlineExceeded(f"{what}: no answer within {deadline:g} s")
    ok, value = outcome[0]
    if not ok:
        raise value
    result: T = value
    return result


def error_code(error: BaseException) -> str:
    """The AWS error code of a ClientError ("" for anything else)."""
    if isinstance(error, botocore.exceptions.ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""


def is_transient(error: BaseException) -> bool:
    if isinstance(error, botocore.exceptions.ClientError):
        response: Mapping[str, Any] = error.response
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return error_code(error) in _THROTTLING or status >= 500
    return isinstance(error, _NETWORK_ERRORS)


def describe(error: BaseException) -> str:
    """One line for logs and the /fail ping; never a URL with credentials in it."""
    if isinstance(error, botocore.exceptions.ClientError):
        details = error.response.get("Error", {})
        return f"{details.get('Code', 'Error')}: {details.get('Message', '')}".strip()
    return f"{type(error).__name__}: {error}"


_TAGS = frozenset({"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"})
_SCALARS: dict[str, type] = {"S": str, "N": str, "BOOL": bool, "NULL": bool}


class _Unusual(Exception):
    """An attribute value the short path does not handle: botocore's own parse does."""


def _check(value: object) -> None:
    """Raises unless `value` is one DynamoDB AttributeValue that botocore would parse into
    an equal dict (the common tags: {"S": "x"} stays {"S": "x"}); binary, nulls and odd
    shapes raise, and botocore's own parse handles them."""
    if type(value) is not dict or len(value) != 1:
        raise _Unusual
    for tag, raw in value.items():
        kind = _SCALARS.get(tag)
        if kind is not None and type(raw) is kind:
            return
        if tag == "M" and type(raw) is dict:
            for item in raw.values():
                _check(item)
        elif tag == "L" and type(raw) is list:
            for item in raw:
                _check(item)
        elif not (tag in ("SS", "NS") and type(raw) is list
                  and all(type(i) is str for i in raw)):
            raise _Unusual


class _JSONParser(botocore.parsers.JSONParser):
    """botocore's JSON parser walks all ten members of AttributeValue for each attribute
    of each item: ~24 ms of CPU for a 1k-item scan page, half of a no-change timer cycle
    (the idle cost of docs/design.md §6). Maps of attribute values (Items, keys) take a
    short path with an equal result (~3 ms); anything unusual goes the stock way."""

    def _handle_map(self, shape: Any, value: Any) -> Any:
        if type(value) is dict and shape.value.name == "AttributeValue" \
                and shape.value.members.keys() >= _TAGS:
            try:
                for item in value.values():
                    if type(item) is not dict or len(item) != 1 or type(item.get("S")) is not str:
                        _check(item)  # the common {"S": "…"} needs no call
            except _Unusual:
                pass
            else:
                return value  # freshly decoded from this response: nothing else holds it
        return super()._handle_map(shape, value)  # type: ignore[misc]  # not in the stubs


class _ParserFactory(botocore.parsers.ResponseParserFactory):
    def create_parser(self, protocol_name: str) -> Any:
        if protocol_name == "json":
            return _JSONParser(**self._defaults)  # type: ignore[attr-defined]
        return super().create_parser(protocol_name)


def session(region: str | None,
            core: botocore.session.Session | None = None) -> boto3.session.Session:
    """A boto3 session whose clients parse DynamoDB items on the short path."""
    core = core or botocore.session.get_session()
    core.register_component("response_parser_factory", _ParserFactory())
    return boto3.session.Session(region_name=region, botocore_session=core)


class Aws:
    """Thin wrappers over the low-level clients; each call retried when transient."""

    def __init__(self, *, dynamodb: Any, sqs: Any = None, cognito: Any = None,
                 sns: Any = None, table: str, stop: threading.Event | None = None,
                 max_backoff: float = 60.0, sqs_receiver: Any = None) -> None:
        self.dynamodb = dynamodb
        self.sqs = sqs
        # What receives: the long poll's short path where it stands in for the client.
        self.sqs_receiver = sqs_receiver or sqs
        self.cognito = cognito
        self.sns = sns
        self.table = table
        self.stop = stop or threading.Event()
        self.max_backoff = max_backoff
        self.waited = 0.0  # seconds spent in AWS calls (and their backoff), all threads
        self.retries = 0  # transient failures retried so far
        self._lock = threading.Lock()  # calls come from the cycle, scan and poll threads

    @classmethod
    def from_settings(cls, settings: Settings, stop: threading.Event | None = None) -> Aws:
        # botocore's own retries stay short; our retry loop handles long outages.
        # One pooled connection per scan segment (plus the poll and upkeep threads), or
        # urllib3 discards and reopens connections under a parallel scan.
        config = botocore.config.Config(
            region_name=settings.aws_region, connect_timeout=5, read_timeout=30,
            retries={"mode": "standard", "max_attempts": 2},
            max_pool_connections=max(10, settings.scan_segments + 2),
        )
        # A stuck request holds a scan page or a user page: give up on the socket well before
        # the read deadline. SQS keeps 30 s, above its 20 s long poll.
        short = config.merge(botocore.config.Config(read_timeout=10))
        core = botocore.session.get_session()
        clients = session(settings.aws_region, core)
        sqs = clients.client("sqs", config=config)
        return cls(
            dynamodb=clients.client("dynamodb", config=short),
            sqs=sqs, sqs_receiver=LongPoll.for_client(sqs, core),
            cognito=clients.client("cognito-idp", config=short),
            sns=clients.client("sns", config=short),
            table=settings.address_table, stop=stop,
        )

    def call(self, what: str, function: Callable[[], T], *,
             deadline: float | None = None) -> T:
        """Run one AWS call, retrying transient errors until it succeeds or we stop, or
        (with `deadline`) until that many seconds have passed: then the last error raises."""
        logger = log.get()

        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            with self._lock:
                self.retries += 1
            logger.warning("aws call failed, retrying", call=what, attempt=state.attempt_number,
                           error=describe(error) if error else "",
                           retry_in_s=round(state.upcoming_sleep, 1))

        def sleep(seconds: float) -> None:
            if self.stop.wait(seconds):
                raise Cancelled(what)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_transient),
            wait=tenacity.wait_random_exponential(
                multiplier=0.5, max=self.max_backoff if deadline is None
                else min(self.max_backoff, max(deadline / 4, 1.0))),
            stop=tenacity.stop_never if deadline is None
            else tenacity.stop_after_delay(deadline),
            sleep=sleep, before_sleep=before_sleep, reraise=True,
        )
        if self.stop.is_set():
            raise Cancelled(what)
        started = time.monotonic()
        try:
            return retrying(function)
        finally:
            with self._lock:
                self.waited += time.monotonic() - started
