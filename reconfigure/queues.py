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
from reconfigure.aws import Call, Cancelled, describe, error_code

TAG_TIER = "reconfigure:tier"
TAG_OWNER = "reconfigure:owner"
TAG_LAST_CYCLE = "reconfigure:last-cycle"  # unix seconds of the owner's last cycle
_SAFE = re.compile(r"[^A-Za-z0-9_-]+")
MAX_QUEUE_NAME = 80
MIN_SETUP_BACKOFF = 5.0
MAX_SETUP_BACKOFF = 300.0
REAP_EVERY = 3600.0
VISIBILITY_SECONDS = 60  # the default of RECONFIGURE_VISIBILITY_TIMEOUT: the tier queues' own
RECEIVE_DEADLINE = 10.0  # a receive failing this long (retries included) raises to the loop
UPKEEP_DEADLINE = 30.0  # each upkeep call (setup, tag, reaper) and delete gives up after it
LIST_PAGE_SIZE = 1000  # list_queues' MaxResults: what one page holds
_QUEUE_GONE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})


@dataclass(frozen=True, slots=True)
class Message:
    message_id: str
    receipt_handle: str


def receive(sqs: Any, call: Call, queue_url: str, wait_seconds: int = 20,
            visibility: int = VISIBILITY_SECONDS) -> list[Message]:
    """One receive. The visibility timeout is asked for explicitly, so the loop knows how
    long a message stays hidden and can extend it while a long cycle runs. `sqs`: what
    has `receive_message`, the client or the long poll's short path (`longpoll`)."""
    response = call("sqs.receive_message", lambda: sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds,
        VisibilityTimeout=visibility))
    messages = []
    for raw in response.get("Messages", []):
        message_id, handle = raw.get("MessageId"), raw.get("ReceiptHandle")
        if isinstance(message_id, str) and isinstance(handle, str) and handle:
            messages.append(Message(message_id, handle))
    return messages


def delete(sqs: Any, call: Call, queue_url: str, messages: list[Message]) -> int:
    """Batch-delete; returns how many SQS refused (they come back, harmlessly)."""
    return _batches(sqs.delete_message_batch, "sqs.delete_message_batch", call, queue_url,
                    [{"ReceiptHandle": m.receipt_handle} for m in messages])


def extend(sqs: Any, call: Call, queue_url: str, messages: list[Message],
           seconds: int) -> int:
    """Keep `messages` hidden `seconds` more (from now); how many SQS refused."""
    return _batches(sqs.change_message_visibility_batch, "sqs.change_message_visibility_batch",
                    call, queue_url, [{"ReceiptHandle": m.receipt_handle,
                                       "VisibilityTimeout": seconds} for m in messages])


def _batches(method: Callable[..., Any], what: str, call: Call, queue_url: str,
             entries: list[dict[str, Any]]) -> int:
    failed = 0
    for start in range(0, len(entries), 10):
        batch = [{"Id": str(i), **entry} for i, entry in enumerate(entries[start:start + 10])]
        response = call(what, partial(method, QueueUrl=queue_url, Entries=batch))
        failed += len(response.get("Failed", []))
    return failed


class Worker:
    """One daemon thread doing queued jobs in order, started when there is work and gone
    when there is none: queue upkeep and message deletes wait here, never the loop
    (docs/design.md §6). A job whose key is pending or running is not queued again."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: dict[str, Callable[[], None]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, key: str, job: Callable[[], None]) -> bool:
        with self._lock:
            if key in self._jobs:
                return False
            self._jobs[key] = job
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        return True

    def busy(self, key: str) -> bool:
        with self._lock:
            return key in self._jobs

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._jobs:
                    self._thread = None
                    return
                key, job = next(iter(self._jobs.items()))
            try:
                job()
            except Cancelled:
                pass  # stopping
            except Exception as error:  # a job logs its own trouble; this is a backstop
                log.get().error("queue job failed", job=key, error=describe(error))
            finally:
                with self._lock:
                    self._jobs.pop(key, None)


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
        paginator = self.sqs.get_paginator("list_queues")
        listed: list[str] = self.call("sqs.list_queues", lambda: [
            url for page in paginator.paginate(
                QueueNamePrefix=prefix, PaginationConfig={"PageSize": LIST_PAGE_SIZE})
            for url in page.get("QueueUrls", [])])
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
        paginator = self.sns.get_paginator("list_subscriptions_by_topic")
        subscriptions: list[dict[str, Any]] = self.call(
            "sns.list_subscriptions_by_topic", lambda: [
                subscription for page in paginator.paginate(TopicArn=self.topic_arn)
                for subscription in page.get("Subscriptions", [])])
        for subscription in subscriptions:
            if subscription.get("Endpoint") == arn:
                self.call("sns.unsubscribe", partial(
                    self.sns.unsubscribe, SubscriptionArn=subscription["SubscriptionArn"]))

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


class _Queue:
    """What both modes share: receive on the poll thread, deletes on the worker, extending
    the visibility of messages in hand, and how long the queue has been failing."""

    def __init__(self, sqs: Any, call: Call, clock: Callable[[], float] = time.monotonic,
                 receive_call: Call | None = None,
                 visibility: int = VISIBILITY_SECONDS, *, receiver: Any = None) -> None:
        self.sqs = sqs
        self.receiver = receiver or sqs  # what receives (Aws.sqs_receiver)
        self.visibility = visibility  # asked for on each receive, renewed while in hand
        self.call = call  # bounded per call (BoundedCall): nothing retries for ever here
        # Receives give up sooner: the loop backs off and counts how long they have failed.
        self.receive_call = receive_call or call
        self.clock = clock
        self.worker = Worker("queue-upkeep")
        self._faults: dict[str, tuple[float, str]] = {}  # kind -> (failing since, error)
        self._fault_lock = threading.Lock()
        self._deletes = 0

    def receive(self, url: str, wait: int) -> list[Message]:
        return receive(self.receiver, self.receive_call, url, wait, self.visibility)

    def delete(self, url: str, messages: list[Message]) -> None:
        """Queued on the worker: a delete that retries never holds up the loop."""
        self._deletes += 1

        def job() -> None:
            try:
                failed = delete(self.sqs, self.call, url, messages)
            except Cancelled:
                raise
            except Exception as error:
                log.get().error("queue delete failed", error=describe(error),
                                messages=len(messages))
                return
            if failed:
                log.get().warning("some messages not deleted", failed=failed)

        self.worker.submit(f"delete-{self._deletes}", job)

    def extend(self, url: str, messages: list[Message], seconds: int) -> None:
        """Runs on the caller's thread (the loop's extender); errors are logged."""
        try:
            failed = extend(self.sqs, self.call, url, messages, seconds)
        except Cancelled:
            return
        except Exception as error:
            log.get().warning("message visibility not extended", error=describe(error))
            return
        if failed:
            log.get().warning("message visibility not extended", failed=failed)

    def fault(self) -> tuple[float, str] | None:
        """(seconds failing, error) of the oldest upkeep trouble still unresolved."""
        with self._fault_lock:
            if not self._faults:
                return None
            since, error = min(self._faults.values())
        return self.clock() - since, error

    def _failed(self, kind: str, error: str) -> None:
        with self._fault_lock:
            since = self._faults.get(kind, (self.clock(), ""))[0]
            self._faults[kind] = (since, error)

    def _worked(self, kind: str) -> None:
        with self._fault_lock:
            self._faults.pop(kind, None)


class SharedQueue(_Queue):
    """The tier's queue from SQS_QUEUE_URL (or none: periodic-only mode). No upkeep."""

    def __init__(self, url: str | None, sqs: Any = None, call: Call | None = None,
                 receive_call: Call | None = None,
                 visibility: int = VISIBILITY_SECONDS, *, receiver: Any = None) -> None:
        super().__init__(sqs, call or _no_call, receive_call=receive_call,
                         visibility=visibility, receiver=receiver)
        self.url = url

    def ready(self) -> bool:
        return True

    def next_upkeep(self) -> float:
        return float("inf")

    def upkeep(self, wake: threading.Event) -> None:
        return

    def cycle_ended(self) -> None:
        return

    def receive_failed(self, error: BaseException) -> None:
        return

    def close(self, timeout: float) -> None:
        return


def _no_call(what: str, function: Callable[[], Any], /) -> Any:
    raise RuntimeError(f"{what}: no queue configured")


class PrivateTriggers(_Queue):
    """A private queue's life cycle, all of it on the worker thread: set up (with backoff;
    periodic mode meanwhile), orphans reaped at start and hourly, its tag refreshed after
    each cycle, set up again when it is deleted under us, torn down on stop."""

    def __init__(self, queue: PrivateQueue, *, clock: Callable[[], float] = time.monotonic,
                 on_setup_failed: Callable[[str], None] = lambda error: None,
                 receive_call: Call | None = None,
                 visibility: int = VISIBILITY_SECONDS, receiver: Any = None) -> None:
        super().__init__(queue.sqs, queue.call, clock, receive_call, visibility,
                         receiver=receiver)
        self.queue = queue
        self.on_setup_failed = on_setup_failed
        self._lock = threading.Lock()
        self._next_setup = 0.0
        self._setup_backoff = MIN_SETUP_BACKOFF
        self._setup_tried = False
        self._next_reap = 0.0

    @property
    def url(self) -> str | None:
        return self.queue.url

    def ready(self) -> bool:
        """Set up, or tried once: the startup cycle waits (a little) for this."""
        return self.url is not None or self._setup_tried

    def next_upkeep(self) -> float:
        """When `upkeep` has something to queue; a setup already under way is not due
        (the worker wakes the loop when it ends), so the loop never spins on it."""
        setting_up = self.worker.busy("setup")
        with self._lock:
            if self.url or setting_up:
                return self._next_reap
            return min(self._next_setup, self._next_reap)

    def upkeep(self, wake: threading.Event) -> None:
        """Queue what is due on the worker; returns at once. `wake` is set when a job ends,
        so the loop starts polling as soon as the queue exists."""
        now = self.clock()
        with self._lock:
            setup_due = not self.url and now >= self._next_setup
            reap_due = now >= self._next_reap
        if setup_due and not self.worker.busy("setup"):
            self.worker.submit("setup", lambda: self._setup(wake))
        if reap_due and not self.worker.busy("reap"):
            with self._lock:
                self._next_reap = now + REAP_EVERY
            self.worker.submit("reap", self._reap)

    def _setup(self, wake: threading.Event) -> None:
        try:
            self.queue.setup()
        except Cancelled:
            raise
        except Exception as error:
            self._setup_failed(describe(error))
        else:
            with self._lock:
                self._setup_backoff = MIN_SETUP_BACKOFF
            self._worked("setup")
        finally:
            self._setup_tried = True
            wake.set()

    def _setup_failed(self, error: str) -> None:
        with self._lock:
            backoff = self._setup_backoff
            self._next_setup = self.clock() + backoff
            self._setup_backoff = min(backoff * 2, MAX_SETUP_BACKOFF)
        log.get().error("private queue setup failed: periodic mode until it works",
                        error=error, retry_in_s=backoff)
        self._failed("setup", f"private queue setup failed: {error}")
        self.on_setup_failed(f"private queue setup failed: {error}")

    def _reap(self) -> None:
        try:
            self.queue.reap()
        except Cancelled:
            raise
        except Exception as error:  # others' orphans: logged, not our queue failing
            log.get().warning("orphan queue reaping failed", error=describe(error))

    def cycle_ended(self) -> None:
        """The tag says "this queue's owner is alive", failed cycles included: a daemon
        whose cycles fail for an hour must not have its queue reaped under it."""
        if self.url is not None:
            self.worker.submit("touch", self._touch)

    def _touch(self) -> None:
        try:
            self.queue.touch()
        except Cancelled:
            raise
        except Exception as error:
            log.get().warning("queue tag not refreshed", error=describe(error))
            self._failed("touch", f"queue tag not refreshed: {describe(error)}")
        else:
            self._worked("touch")

    def receive_failed(self, error: BaseException) -> None:
        if error_code(error) in _QUEUE_GONE:
            with self._lock:
                self.queue.url = None  # reaped or deleted under us: set it up again
                self._next_setup = self.clock()

    def close(self, timeout: float) -> None:
        self.queue.teardown(timeout)


TriggerQueue = SharedQueue | PrivateTriggers
