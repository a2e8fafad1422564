"""The AWS edge: DynamoDB scan, SQS receive/delete, Cognito users — with retries.

Transient failures (throttling, 5xx, connection trouble) are retried with capped,
jittered exponential backoff for as long as it takes; the waits end at once when the
daemon is asked to stop. Permanent failures (access denied, no such table) raise.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import boto3
import botocore.config
import botocore.exceptions
import tenacity

from reconfigure import log
from reconfigure.rows import ATTRIBUTES, Address, Skipped, validate
from reconfigure.settings import Settings
from reconfigure.tree import TreeBuilder

T = TypeVar("T")
_THROTTLING = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "ProvisionedThroughputExceededException", "RequestLimitExceeded", "TooManyRequestsException",
    "RequestThrottledException", "SlowDown", "InternalError", "InternalFailure",
    "InternalServerError", "ServiceUnavailable", "TransactionInProgressException",
    "LimitExceededException",
})
_NETWORK_ERRORS = (botocore.exceptions.HTTPClientError, botocore.exceptions.ConnectionError)
_USED_ATTRIBUTES = ATTRIBUTES  # what rows.validate reads, RequestTime included


class Cancelled(Exception):
    """The daemon is stopping: abandon the AWS call in progress."""


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


@dataclass(frozen=True, slots=True)
class Message:
    message_id: str
    receipt_handle: str


class Aws:
    """Thin wrappers over the low-level clients; each call retried when transient."""

    def __init__(self, *, dynamodb: Any, sqs: Any = None, cognito: Any = None,
                 sns: Any = None, table: str, stop: threading.Event | None = None,
                 max_backoff: float = 60.0) -> None:
        self.dynamodb = dynamodb
        self.sqs = sqs
        self.cognito = cognito
        self.sns = sns
        self.table = table
        self.stop = stop or threading.Event()
        self.max_backoff = max_backoff
        self.waited = 0.0  # seconds spent in AWS calls (and their backoff), for reports
        self.retries = 0  # transient failures retried so far

    @classmethod
    def from_settings(cls, settings: Settings, stop: threading.Event | None = None) -> Aws:
        # botocore's own retries stay short; our retry loop handles long outages.
        config = botocore.config.Config(
            region_name=settings.aws_region, connect_timeout=5, read_timeout=30,
            retries={"mode": "standard", "max_attempts": 2},
        )
        session = boto3.session.Session(region_name=settings.aws_region)
        return cls(
            dynamodb=session.client("dynamodb", config=config),
            sqs=session.client("sqs", config=config),
            cognito=session.client("cognito-idp", config=config),
            sns=session.client("sns", config=config),
            table=settings.address_table, stop=stop,
        )

    def call(self, what: str, function: Callable[[], T]) -> T:
        """Run one AWS call, retrying transient errors until it succeeds or we stop."""
        logger = log.get()

        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            self.retries += 1
            logger.warning("aws call failed, retrying", call=what, attempt=state.attempt_number,
                           error=describe(error) if error else "",
                           retry_in_s=round(state.upcoming_sleep, 1))

        def sleep(seconds: float) -> None:
            if self.stop.wait(seconds):
                raise Cancelled(what)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_transient),
            wait=tenacity.wait_random_exponential(multiplier=0.5, max=self.max_backoff),
            sleep=sleep, before_sleep=before_sleep, reraise=True,
        )
        if self.stop.is_set():
            raise Cancelled(what)
        started = time.monotonic()
        try:
            return retrying(function)
        finally:
            self.waited += time.monotonic() - started

    # ----- DynamoDB

    def _scan_pages(self, segment: int, total: int) -> Iterator[list[Mapping[str, object]]]:
        request: dict[str, Any] = {
            "TableName": self.table,
            "ConsistentRead": True,
            "ProjectionExpression": ", ".join(f"#a{i}" for i in range(len(_USED_ATTRIBUTES))),
            "ExpressionAttributeNames": {f"#a{i}": n for i, n in enumerate(_USED_ATTRIBUTES)},
        }
        if total > 1:
            request.update(Segment=segment, TotalSegments=total)
        while True:
            page = self.call("dynamodb.scan", lambda: self.dynamodb.scan(**request))
            yield page.get("Items", [])
            start = page.get("LastEvaluatedKey")
            if not start:
                return
            request["ExclusiveStartKey"] = start

    def scan_addresses(self, builder: TreeBuilder, segments: int = 1) -> list[Skipped]:
        """Every row of the table into `builder`; raises unless the scan is complete."""
        if segments <= 1:
            skipped: list[Skipped] = []
            for page in self._scan_pages(0, 1):
                skipped.extend(builder.add(page))
            return skipped

        def one_segment(segment: int) -> list[Address | Skipped]:
            return [validate(item) for page in self._scan_pages(segment, segments)
                    for item in page]

        with ThreadPoolExecutor(max_workers=segments, thread_name_prefix="scan") as pool:
            results = list(pool.map(one_segment, range(segments)))
        return builder.add_validated(result for segment in results for result in segment)

    # ----- SQS

    def receive(self, queue_url: str, wait_seconds: int = 20) -> list[Message]:
        response = self.call("sqs.receive_message", lambda: self.sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds))
        messages = []
        for raw in response.get("Messages", []):
            message_id, handle = raw.get("MessageId"), raw.get("ReceiptHandle")
            if isinstance(message_id, str) and isinstance(handle, str) and handle:
                messages.append(Message(message_id, handle))
        return messages

    def delete(self, queue_url: str, messages: list[Message]) -> int:
        """Batch-delete; returns how many SQS refused (they come back, harmlessly)."""
        failed = 0
        for start in range(0, len(messages), 10):
            batch = messages[start:start + 10]
            entries = [{"Id": str(i), "ReceiptHandle": m.receipt_handle}
                       for i, m in enumerate(batch)]
            response = self.call("sqs.delete_message_batch", functools.partial(
                self.sqs.delete_message_batch, QueueUrl=queue_url, Entries=entries))
            failed += len(response.get("Failed", []))
        return failed
