"""Where triggers come from: the tier's shared SQS queue, or a private queue per daemon.

All tasks of a tier share one SQS queue in the drop-in mode, and SQS hands each message to
ONE consumer: the other tasks keep stale maps until their fallback timer. In the private
mode each daemon owns a queue named from its tier and identity, subscribed to the
address-change topic; it tags the queue with the time of its last cycle, deletes it on
shutdown, and reaps queues of its own naming pattern whose owner stopped refreshing that
tag (a SIGKILL). Both modes offer the loop the same small interface (`TriggerQueue`), so
the loop only schedules and the queue's life cycle stays here.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urlparse

import requests

from reconfigure import log
from reconfigure.aws import Aws, Call, Cancelled, describe, error_code

TAG_TIER = "reconfigure:tier"
TAG_OWNER = "reconfigure:owner"
TAG_LAST_CYCLE = "reconfigure:last-cycle"  # unix seconds of the owner's last cycle
_SAFE = re.compile(r"[^A-Za-z0-9_-]+")
MAX_QUEUE_NAME = 80
MIN_SETUP_BACKOFF = 5.0
MAX_SETUP_BACKOFF = 300.0
REAP_EVERY = 3600.0
_QUEUE_GONE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})


@dataclass(frozen=True, slots=True)
class Message:
    message_id: str
    receipt_handle: str


def receive(aws: Aws, queue_url: str, wait_seconds: int = 20) -> list[Message]:
    response = aws.call("sqs.receive_message", lambda: aws.sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds))
    messages = []
    for raw in response.get("Messages", []):
        message_id, handle = raw.get("MessageId"), raw.get("ReceiptHandle")
        if isinstance(message_id, str) and isinstance(handle, str) and handle:
            messages.append(Message(message_id, handle))
    return messages


def delete(aws: Aws, queue_url: str, messages: list[Message]) -> int:
    """Batch-delete; returns how many SQS refused (they come back, harmlessly)."""
    failed = 0
    for start in range(0, len(messages), 10):
        batch = messages[start:start + 10]
        entries = [{"Id": str(i), "ReceiptHandle": m.receipt_handle}
                   for i, m in enumerate(batch)]
        response = aws.call("sqs.delete_message_batch", partial(
            aws.sqs.delete_message_batch, QueueUrl=queue_url, Entries=entries))
        failed += len(response.get("Failed", []))
    return failed


def prefix_for(tier: str) -> str:
    return f"cabal-reconfig-{tier}-task-"


def identity(env: Mapping[str, str], fetch: Callable[[str], str] | None = None) -> str:
    """The ECS task id when the container metadata endpoint says it, else host + pid."""
    uri = env.get("ECS_CONTAINER_METADATA_URI_V4", "").strip()
    if uri:
        try:
            body = (fetch or _fetch)(uri.rstrip("/") + "/task")
            task_arn = json.loads(body).get("TaskARN", "")
            if isinstance(task_arn, str) and "/" in task_arn:
                return _SAFE.sub("-", task_arn.rsplit("/", 1)[1])
        except (OSError, ValueError, requests.RequestException) as error:
            log.get().warning("task metadata unavailable, using host and pid",
                              error=type(error).__name__)
    return _SAFE.sub("-", f"{socket.gethostname().split('.')[0]}-{os.getpid()}")


def _fetch(url: str) -> str:
    response = requests.get(url, timeout=2)
    response.raise_for_status()
    return response.text


def queue_name(tier: str, owner: str) -> str:
    return (prefix_for(tier) + owner)[:MAX_QUEUE_NAME]


def queue_arn(queue_url: str, topic_arn: str, region: str) -> str:
    """Built from the URL (…/<account>/<name>), so no sqs:GetQueueAttributes is needed."""
    account, name = urlparse(queue_url).path.strip("/").split("/")[-2:]
    partition = topic_arn.split(":")[1] if topic_arn.startswith("arn:") else "aws"
    return f"arn:{partition}:sqs:{region}:{account}:{name}"


def access_policy(arn: str, topic_arn: str) -> str:
    """Only the address-change topic may send to the queue."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "address-change-topic-only",
            "Effect": "Allow",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
        }],
    })


@dataclass
class PrivateQueue:
    sqs: Any
    sns: Any
    call: Call
    tier: str
    owner: str
    topic_arn: str
    region: str
    orphan_age: float = 3600.0
    clock: Callable[[], float] = time.time
    url: str | None = None
    subscription_arn: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return queue_name(self.tier, self.owner)

    def setup(self) -> str:
        """Create (or adopt) the queue, subscribe it; its URL. Raises on any failure."""
        now = str(int(self.clock()))
        url: str = self.call("sqs.create_queue", lambda: self.sqs.create_queue(
            QueueName=self.name,
            Attributes={"SqsManagedSseEnabled": "true", "MessageRetentionPeriod": "3600",
                        "VisibilityTimeout": "60"},
            tags={TAG_TIER: self.tier, TAG_OWNER: self.owner, TAG_LAST_CYCLE: now},
        ))["QueueUrl"]
        arn = queue_arn(url, self.topic_arn, self.region)
        self.call("sqs.set_queue_attributes", lambda: self.sqs.set_queue_attributes(
            QueueUrl=url, Attributes={"Policy": access_policy(arn, self.topic_arn)}))
        subscription = self.call("sns.subscribe", lambda: self.sns.subscribe(
            TopicArn=self.topic_arn, Protocol="sqs", Endpoint=arn,
            Attributes={"RawMessageDelivery": "false"}, ReturnSubscriptionArn=True))
        with self._lock:
            self.url, self.subscription_arn = url, subscription["SubscriptionArn"]
        log.get().info("private queue ready", queue=self.name)
        return url

    def touch(self) -> None:
        """Refresh the last-cycle tag: what tells other daemons this queue has an owner."""
        if self.url is None:
            return
        url = self.url
        self.call("sqs.tag_queue", lambda: self.sqs.tag_queue(
            QueueUrl=url, Tags={TAG_LAST_CYCLE: str(int(self.clock()))}))

    def reap(self) -> list[str]:
        """Delete queues of this tier's pattern (and their subscriptions) whose owner has
        not run a cycle for `orphan_age` seconds. Never touches a name outside the pattern."""
        prefix = prefix_for(self.tier)
        pattern = re.compile(re.escape(prefix) + r"[A-Za-z0-9_-]+")
        listed = self.call("sqs.list_queues", lambda: self.sqs.list_queues(
            QueueNamePrefix=prefix, MaxResults=1000)).get("QueueUrls", [])
        reaped = []
        for url in listed:
            name = urlparse(url).path.rsplit("/", 1)[-1]
            if not pattern.fullmatch(name) or url == self.url:
                continue
            tags = self.call("sqs.list_queue_tags",
                             partial(self.sqs.list_queue_tags, QueueUrl=url)).get("Tags", {})
            if tags.get(TAG_TIER) != self.tier or not self._stale(tags.get(TAG_LAST_CYCLE)):
                continue
            self._unsubscribe_all(queue_arn(url, self.topic_arn, self.region))
            self.call("sqs.delete_queue", partial(self.sqs.delete_queue, QueueUrl=url))
            reaped.append(name)
            log.get().info("orphan queue deleted", queue=name,
                           last_cycle=tags.get(TAG_LAST_CYCLE))
        return reaped

    def _stale(self, stamp: str | None) -> bool:
        try:
            return self.clock() - int(stamp or "") > self.orphan_age
        except ValueError:
            return False  # no readable tag: not provably ours to delete

    def _unsubscribe_all(self, arn: str) -> None:
        token: str | None = None
        while True:
            page = self.call("sns.list_subscriptions_by_topic", partial(
                self.sns.list_subscriptions_by_topic, TopicArn=self.topic_arn,
                **({"NextToken": token} if token else {})))
            for subscription in page.get("Subscriptions", []):
                if subscription.get("Endpoint") == arn:
                    self.call("sns.unsubscribe", partial(
                        self.sns.unsubscribe, SubscriptionArn=subscription["SubscriptionArn"]))
            token = page.get("NextToken")
            if not token:
                return

    def teardown(self, timeout: float) -> bool:
        """Unsubscribe and delete our queue, giving up after `timeout` seconds (a killed
        cleanup is what the reaper is for). True when it finished."""
        with self._lock:
            url, subscription = self.url, self.subscription_arn
            self.url = self.subscription_arn = None
        if url is None:
            return True

        def cleanup() -> None:
            try:
                if subscription:
                    self.sns.unsubscribe(SubscriptionArn=subscription)
                self.sqs.delete_queue(QueueUrl=url)
                log.get().info("private queue deleted", queue=self.name)
            except Exception as error:
                log.get().warning("private queue not deleted", queue=self.name,
                                  error=describe(error))

        worker = threading.Thread(target=cleanup, name="teardown", daemon=True)
        worker.start()
        worker.join(timeout)
        return not worker.is_alive()


class SharedQueue:
    """The tier's queue from SQS_QUEUE_URL (or none: periodic-only mode). No upkeep."""

    def __init__(self, url: str | None) -> None:
        self.url = url

    def next_upkeep(self) -> float:
        return float("inf")

    def upkeep(self) -> None:
        return

    def cycle_ended(self) -> None:
        return

    def receive_failed(self, error: BaseException) -> None:
        return

    def close(self, timeout: float) -> None:
        return


@dataclass
class PrivateTriggers:
    """A private queue's life cycle: set up (with backoff; periodic mode meanwhile),
    orphans reaped at start and hourly, its tag refreshed after each cycle, set up again
    when it is deleted under us, torn down on stop."""

    queue: PrivateQueue
    clock: Callable[[], float] = time.monotonic
    on_setup_failed: Callable[[str], None] = lambda error: None
    _next_setup: float = 0.0
    _setup_backoff: float = MIN_SETUP_BACKOFF
    _next_reap: float = 0.0

    @property
    def url(self) -> str | None:
        return self.queue.url

    def next_upkeep(self) -> float:
        return self._next_reap if self.url else min(self._next_setup, self._next_reap)

    def upkeep(self) -> None:
        now = self.clock()
        try:
            if not self.url and now >= self._next_setup:
                try:
                    self.queue.setup()
                    self._setup_backoff = MIN_SETUP_BACKOFF
                except Cancelled:
                    raise
                except Exception as error:
                    self._setup_failed(describe(error))
            if now >= self._next_reap:
                self._next_reap = now + REAP_EVERY
                try:
                    self.queue.reap()
                except Cancelled:
                    raise
                except Exception as error:
                    log.get().warning("orphan queue reaping failed", error=describe(error))
        except Cancelled:
            return  # stopping

    def _setup_failed(self, error: str) -> None:
        self._next_setup = self.clock() + self._setup_backoff
        log.get().error("private queue setup failed: periodic mode until it works",
                        error=error, retry_in_s=self._setup_backoff)
        self._setup_backoff = min(self._setup_backoff * 2, MAX_SETUP_BACKOFF)
        self.on_setup_failed(f"private queue setup failed: {error}")

    def cycle_ended(self) -> None:
        """The tag says "this queue's owner is alive", failed cycles included: a daemon
        whose cycles fail for an hour must not have its queue reaped under it."""
        if self.url is None:
            return
        try:
            self.queue.touch()
        except Exception as error:
            log.get().warning("queue tag not refreshed", error=describe(error))

    def receive_failed(self, error: BaseException) -> None:
        if error_code(error) in _QUEUE_GONE:
            self.queue.url = None  # reaped or deleted under us: set it up again
            self._next_setup = self.clock()

    def close(self, timeout: float) -> None:
        self.queue.teardown(timeout)


TriggerQueue = SharedQueue | PrivateTriggers
