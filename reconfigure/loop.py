"""The daemon's schedule: wait for the ready file, then one cycle per trigger until stopped
(docs/design.md §6).

Triggers are SQS message batches (one 20 s long poll at a time, in a worker thread) and a
fallback timer on the monotonic clock. The main thread only runs cycles and waits on one
event that the poll, the queue's upkeep worker or the signal handler sets, so SIGTERM is
honoured at once and nothing the queue does (setup, tag, reaper, deletes, all on the
queue's worker) ever holds up the timer. A poll is never shortened to meet the timer: when
the timer is due the cycle runs while the poll goes on, and its messages are handled after.
What the queue is, and its upkeep, is `queues`' business; a cycle is `cycle`'s.
"""

from __future__ import annotations

import gc
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from queue import SimpleQueue
from types import FrameType
from typing import Protocol

from reconfigure import log
from reconfigure.aws import describe
from reconfigure.queues import Message
from reconfigure.report import CycleReport

LONG_POLL_SECONDS = 20
DRAIN_ROUNDS = 20  # up to 200 more messages folded into one cycle
MIN_RECEIVE_BACKOFF = 5.0
MAX_RECEIVE_BACKOFF = 300.0
MIN_RETRY = 5.0  # after a failed cycle, doubling up to the interval
SETUP_GRACE = 5.0  # the startup cycle waits this long for a private queue's subscription
QUEUE_FAULT_BOUND = 180.0  # a queue failing longer than this fails the next cycle's report
TEARDOWN_SECONDS = 1.0  # inside the 2 s the daemon has to stop


class Cycles(Protocol):
    """What the loop needs of `cycle.Cycler` (a test's fake too)."""

    stop: threading.Event

    def run(self, trigger: str, *, force: bool = False, messages: int = 0,
            queue_error: str | None = None) -> CycleReport: ...


class Triggers(Protocol):
    """What the loop needs of a trigger source (`queues.SharedQueue`, `PrivateTriggers`).
    Only `receive` and `extend` block; they run on the poll and extender threads."""

    @property
    def url(self) -> str | None: ...
    visibility: int  # seconds a received message stays hidden
    def ready(self) -> bool: ...
    def next_upkeep(self) -> float: ...
    def upkeep(self, wake: threading.Event) -> None: ...
    def receive(self, url: str, wait: int) -> list[Message]: ...
    def receive_failed(self, error: BaseException) -> None: ...
    def delete(self, url: str, messages: list[Message]) -> None: ...
    def extend(self, url: str, messages: list[Message], seconds: int) -> None: ...
    def fault(self) -> tuple[float, str] | None: ...
    def cycle_ended(self) -> None: ...
    def close(self, timeout: float) -> None: ...


def _wait(event: threading.Event, timeout: float) -> bool:
    return event.wait(timeout)


def freeze_heap() -> None:
    """Once per process, after the startup cycle: what imports and that cycle left alive
    (boto3's models, ~90k objects) moves out of the collector's reach, so the full
    collections that a cycle's garbage sets off walk only what came after (at 1k rows
    one took ~60 ms, more than the cycle itself). Refcounting still frees everything.
    A heap already frozen (an earlier loop in this process) is left as it is."""
    if not gc.get_freeze_count():
        gc.collect()
        gc.freeze()


class KeptThreads:
    """Runs each target on a daemon thread (not an executor: at exit nothing waits for a
    poll in flight). A thread whose last target returned is kept for the next one: a new
    thread per 20 s poll cost the idle daemon more CPU than the poll's own request."""

    def __init__(self) -> None:
        self.idle: list[SimpleQueue[Callable[[], None]]] = []  # inboxes of kept threads
        self._lock = threading.Lock()

    def spawn(self, target: Callable[[], None], name: str) -> None:
        with self._lock:
            inbox = self.idle.pop() if self.idle else None
        if inbox is None:
            inbox = SimpleQueue()
            threading.Thread(target=self._serve, args=(inbox,), name=name, daemon=True).start()
        inbox.put(target)

    def _serve(self, inbox: SimpleQueue[Callable[[], None]]) -> None:
        while True:
            inbox.get()()
            # Only after a target returned: a thread that raised is gone, never handed work.
            with self._lock:
                self.idle.append(inbox)


_spawn = KeptThreads().spawn


@dataclass
class _Poll:
    url: str
    future: Future[list[Message]]


@dataclass
class Daemon:
    cycler: Cycles
    triggers: Triggers
    interval: float
    ready_path: Path
    clock: Callable[[], float] = time.monotonic
    wait: Callable[[threading.Event, float], bool] = _wait  # a test's clock advances here
    spawn: Callable[[Callable[[], None], str], None] = _spawn
    queue_fault_bound: float = QUEUE_FAULT_BOUND
    extend_every: float | None = None  # default: half the queue's visibility timeout
    wake: threading.Event = field(default_factory=threading.Event)
    _poll: _Poll | None = None
    _receive_backoff: float = MIN_RECEIVE_BACKOFF
    _receive_at: float = 0.0  # no receive before this (backoff after a failure)
    _receive_fault: tuple[float, str] | None = None  # (failing since, error)
    _retry: float = MIN_RETRY
    _queue_error_sent: str | None = None  # what the last cycle was told of the queue
    _in_hand: dict[str, tuple[str, Message]] = field(default_factory=dict)
    _hand_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def stop(self) -> threading.Event:
        return self.cycler.stop

    def request_stop(self) -> None:
        self.stop.set()
        self.wake.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            # Only set events: logging here could wait forever on the lock of a log write
            # the signal interrupted. The loop logs "stopping" when it notices.
            self.request_stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def wait_ready(self) -> bool:
        """Block until the image's startup prep has written the ready file (or we stop)."""
        logged = False
        while not self.ready_path.exists():
            if not logged:
                log.get().info("waiting for ready file", path=str(self.ready_path))
                logged = True
            if self.wait(self.stop, 0.5):
                return False
        return True

    def run(self) -> None:
        if not self.wait_ready():
            return
        try:
            self._settle()  # subscribe before the first full read
            next_due = self._after(self._cycle("startup"))
            freeze_heap()
            while not self.stop.is_set():
                self.wake.clear()  # before looking: whatever sets it from now on is seen
                self.triggers.upkeep(self.wake)
                poll, messages = self._collect()
                if self.stop.is_set():
                    break
                if poll is not None and messages:
                    next_due = self._after(self._handle(poll.url, messages))
                    continue
                now = self.clock()
                if now >= next_due:
                    next_due = self._after(self._cycle("timer"))
                    continue
                if self._start_poll(now):
                    continue  # it may have finished already (a test's inline poll)
                until = min(next_due, self.triggers.next_upkeep())
                if self._poll is None and self.triggers.url:
                    until = min(until, self._receive_at)
                self.wait(self.wake, max(0.0, until - now))
        finally:
            if self.stop.is_set():
                log.get().info("stopping")
            self.triggers.close(TEARDOWN_SECONDS)
        log.get().info("stopped")

    def _settle(self) -> None:
        """Give a private queue's setup a moment, so the startup read follows the
        subscription; a setup that takes longer goes on while the cycles run."""
        self.triggers.upkeep(self.wake)
        deadline = self.clock() + SETUP_GRACE
        while not self.stop.is_set():
            self.wake.clear()
            remaining = deadline - self.clock()
            if self.triggers.ready() or remaining <= 0:
                return
            self.wait(self.wake, remaining)

    def _after(self, report: CycleReport) -> float:
        """When the next timer cycle is due: an interval on, or sooner after a failure
        (5 s doubling up to the interval), so a passing fault costs minutes, not one."""
        now = self.clock()
        if report.ok or report.abandoned or report.error == self._queue_error_sent:
            self._retry = MIN_RETRY
            return now + self.interval
        delay = min(self._retry, self.interval)
        self._retry = min(self._retry * 2, self.interval)
        log.get().info("cycle failed: next try sooner", retry_in_s=delay)
        return now + delay

    def _queue_error(self) -> str | None:
        """The queue's trouble once it has lasted `queue_fault_bound` (docs/design.md §6):
        receives or upkeep failing that long are reported like a failed cycle."""
        faults = []
        if self._receive_fault is not None:
            since, error = self._receive_fault
            faults.append((self.clock() - since, f"receive: {error}"))
        upkeep = self.triggers.fault()
        if upkeep is not None:
            faults.append(upkeep)
        if not faults:
            return None
        age, error = max(faults)
        if age < self.queue_fault_bound:
            return None
        return f"queue failing for {age:.0f} s: {error}"

    def _cycle(self, trigger: str, messages: int = 0) -> CycleReport:
        self._queue_error_sent = self._queue_error()
        with self._extending():
            report = self.cycler.run(trigger, messages=messages,
                                     queue_error=self._queue_error_sent)
        if not report.abandoned:
            self.triggers.cycle_ended()
        return report

    def _collect(self) -> tuple[_Poll | None, list[Message]]:
        """A finished poll and its messages, or (None, []) while none has finished."""
        poll = self._poll
        if poll is None or not poll.future.done():
            return None, []
        self._poll = None
        try:
            messages = poll.future.result()
        except Exception as error:
            now = self.clock()
            described = describe(error)
            log.get().error("queue receive failed", error=described,
                            retry_in_s=self._receive_backoff)
            self.triggers.receive_failed(error)
            since = self._receive_fault[0] if self._receive_fault else now
            self._receive_fault = (since, described)
            self._receive_at = now + self._receive_backoff
            self._receive_backoff = min(self._receive_backoff * 2, MAX_RECEIVE_BACKOFF)
            return None, []
        self._receive_backoff = MIN_RECEIVE_BACKOFF
        self._receive_fault = None
        return poll, messages

    def _start_poll(self, now: float) -> bool:
        """Start a long poll unless one is running, there is no queue, or a failed receive
        is backing off. Always the full 20 s: the timer never shortens it."""
        url = self.triggers.url
        if self._poll is not None and self._poll.url != url:
            self._poll = None  # a poll of a queue we no longer use
        if url is None or self._poll is not None or now < self._receive_at:
            return False
        future: Future[list[Message]] = Future()
        self._poll = _Poll(url, future)

        def poll() -> None:
            try:
                future.set_result(self._receive(url))
            except BaseException as error:  # handed to the loop
                future.set_exception(error)
            self.wake.set()

        self.spawn(poll, "poll")
        return True

    def _receive(self, url: str) -> list[Message]:
        """One long poll; only when it brought messages, short receives fold a burst into
        one cycle (the one place a WaitTimeSeconds=0 receive is made)."""
        messages = self.triggers.receive(url, LONG_POLL_SECONDS)
        for _ in range(DRAIN_ROUNDS):
            if not messages or self.stop.is_set():
                break
            more = self.triggers.receive(url, 0)
            if not more:
                break
            messages.extend(more)
        with self._hand_lock:
            self._in_hand.update((m.message_id, (url, m)) for m in messages)
        return messages

    def _handle(self, url: str, messages: list[Message]) -> CycleReport:
        """A message cycle. Once the render is live the messages have done their job, even
        if a reload then failed (it stays owed and is reported): they are deleted. A cycle
        that applied nothing leaves them to come back after their visibility timeout."""
        report = self._cycle("message", len(messages))
        unique = list({m.message_id: m for m in messages}.values())
        with self._hand_lock:
            for message in unique:
                self._in_hand.pop(message.message_id, None)
        if not report.abandoned and (report.ok or report.applied):
            self.triggers.delete(url, unique)
        return report

    @contextmanager
    def _extending(self) -> Iterator[None]:
        """While a cycle runs, keep the messages in hand hidden: every half visibility
        timeout, another full one, so a long cycle does not get them redelivered."""
        if self.triggers.url is None:
            yield
            return
        done = threading.Event()
        seconds = self.triggers.visibility
        every = self.extend_every or seconds / 2

        def extend() -> None:
            while not done.wait(every):
                with self._hand_lock:
                    held = list(self._in_hand.values())
                by_url: dict[str, list[Message]] = {}
                for url, message in held:
                    by_url.setdefault(url, []).append(message)
                for url, batch in by_url.items():
                    if not done.is_set():
                        self.triggers.extend(url, batch, seconds)

        threading.Thread(target=extend, name="extend", daemon=True).start()
        try:
            yield
        finally:
            done.set()
