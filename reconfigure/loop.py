"""The daemon: wait for the ready file, then one cycle per trigger until told to stop.

Triggers are SQS message batches (long poll) and a fallback timer on the monotonic clock.
The long poll runs in a worker thread so that SIGTERM is honoured at once: the main
thread only ever waits on an event that either the poll or the signal handler sets.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import FrameType

from reconfigure import log
from reconfigure.aws import Cancelled, Message, describe, error_code
from reconfigure.cycle import Cycler
from reconfigure.fanout import PrivateQueue
from reconfigure.report import CycleReport

LONG_POLL_SECONDS = 20
DRAIN_ROUNDS = 20  # up to 200 more messages folded into one cycle
MIN_RECEIVE_BACKOFF = 5.0
MAX_RECEIVE_BACKOFF = 300.0
REAP_EVERY = 3600.0
TEARDOWN_SECONDS = 1.0  # inside the 2 s the daemon has to stop


_QUEUE_GONE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})


@dataclass
class Daemon:
    cycler: Cycler
    queue_url: str | None
    interval: float
    ready_file: str  # a path under the root
    clock: Callable[[], float] = time.monotonic
    private: PrivateQueue | None = None
    wake: threading.Event = field(default_factory=threading.Event)
    _next_setup: float = 0.0
    _setup_backoff: float = MIN_RECEIVE_BACKOFF
    _next_reap: float = 0.0
    _poll: Future[list[Message]] | None = None
    _poll_url: str | None = None
    _backoff: float = MIN_RECEIVE_BACKOFF

    @property
    def stop(self) -> threading.Event:
        return self.cycler.stop

    def request_stop(self) -> None:
        self.stop.set()
        self.wake.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            log.get().info("stopping", signal=signal.Signals(signum).name)
            self.request_stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def wait_ready(self) -> bool:
        """Block until the image's startup prep has written the ready file (or we stop)."""
        path = self.cycler.settings.path(self.ready_file)
        logged = False
        while not path.exists():
            if not logged:
                log.get().info("waiting for ready file", path=str(path))
                logged = True
            if self.stop.wait(0.5):
                return False
        return True

    def run(self) -> None:
        logger = log.get()
        if self.private is not None:
            if self.queue_url:
                logger.warning("SQS_QUEUE_URL and RECONFIGURE_SNS_TOPIC_ARN both set: "
                               "using a private queue")
            self.queue_url = None
        elif not self.queue_url:
            logger.warning("SQS_QUEUE_URL not set: periodic-only mode",
                           interval_s=self.interval)
        if not self.wait_ready():
            return
        try:
            self._maintain_private_queue()  # subscribe before the first full read
            self._cycle("startup")
            next_timer = self.clock() + self.interval
            while not self.stop.is_set():
                messages = self._next_messages(min(next_timer, self._next_upkeep()))
                if self.stop.is_set():
                    break
                if messages:
                    self._handle(messages)
                    next_timer = self.clock() + self.interval
                elif self.clock() >= next_timer:
                    self._cycle("timer")
                    next_timer = self.clock() + self.interval
                self._maintain_private_queue()
        finally:
            if self.private is not None:
                self.private.teardown(TEARDOWN_SECONDS)
        logger.info("stopped")

    def _cycle(self, trigger: str, messages: int = 0) -> CycleReport:
        report = self.cycler.run(trigger, messages=messages)
        # The tag says "this queue's owner is alive", failed cycles included: a daemon whose
        # cycles fail for an hour must not have its queue reaped under it.
        if not report.abandoned and self.private is not None and self.queue_url:
            try:
                self.private.touch()
            except Exception as error:
                log.get().warning("queue tag not refreshed", error=describe(error))
        return report

    def _next_upkeep(self) -> float:
        if self.private is None:
            return float("inf")
        return self._next_reap if self.queue_url else min(self._next_setup, self._next_reap)

    def _maintain_private_queue(self) -> None:
        """Set the private queue up (retrying with backoff; periodic mode meanwhile), and
        reap orphans at start and hourly."""
        private, now = self.private, self.clock()
        if private is None or self.stop.is_set():
            return
        try:
            if not self.queue_url and now >= self._next_setup:
                try:
                    self.queue_url = private.setup()
                    self._setup_backoff = MIN_RECEIVE_BACKOFF
                except Cancelled:
                    raise
                except Exception as error:
                    self._setup_failed(describe(error))
            if now >= self._next_reap:
                self._next_reap = now + REAP_EVERY
                try:
                    private.reap()
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
        self._setup_backoff = min(self._setup_backoff * 2, MAX_RECEIVE_BACKOFF)
        if self.cycler.heartbeat is not None:
            report = CycleReport(self.cycler.settings.tier, self.cycler.host, "setup",
                                 error=f"private queue setup failed: {error}")
            self.cycler.heartbeat.finish(None, report)

    def _next_messages(self, next_timer: float) -> list[Message]:
        """Messages from one long poll (plus any already waiting), or [] when the timer is
        due first. A poll still running when the timer fires is picked up afterwards."""
        remaining = max(0.0, next_timer - self.clock())
        if not self.queue_url:
            self.stop.wait(remaining)
            return []
        if self._poll is not None and self._poll_url != self.queue_url:
            self._poll = None  # a poll of a queue we no longer use
        if self._poll is None:
            self.wake.clear()
            if self.stop.is_set():
                return []
            self._poll = self._start_poll(int(min(LONG_POLL_SECONDS, remaining)))
            self._poll_url = self.queue_url
        self.wake.wait(remaining)
        if self.stop.is_set() or not self._poll.done():
            return []
        poll, self._poll = self._poll, None
        try:
            messages = poll.result()
        except Exception as error:
            log.get().error("queue receive failed", error=describe(error),
                            retry_in_s=self._backoff)
            if self.private is not None and error_code(error) in _QUEUE_GONE:
                self.queue_url = None  # reaped or deleted under us: set it up again
                self._next_setup = self.clock()
            self.stop.wait(min(self._backoff, remaining))
            self._backoff = min(self._backoff * 2, MAX_RECEIVE_BACKOFF)
            return []
        self._backoff = MIN_RECEIVE_BACKOFF
        return messages

    def _start_poll(self, wait: int) -> Future[list[Message]]:
        """A daemon thread, not an executor: at exit nothing waits for a poll in flight."""
        future: Future[list[Message]] = Future()

        def poll() -> None:
            try:
                future.set_result(self._receive(wait))
            except BaseException as error:
                future.set_exception(error)
            self.wake.set()

        threading.Thread(target=poll, name="poll", daemon=True).start()
        return future

    def _receive(self, wait: int) -> list[Message]:
        assert self.queue_url is not None
        aws = self.cycler.aws
        messages = aws.receive(self.queue_url, wait)
        # Fold a burst into one cycle: whatever is already queued comes along.
        for _ in range(DRAIN_ROUNDS):
            if not messages or self.stop.is_set():
                break
            more = aws.receive(self.queue_url, 0)
            if not more:
                break
            messages.extend(more)
        return messages

    def _handle(self, messages: list[Message]) -> None:
        report = self._cycle("message", len(messages))
        if not report.ok or self.stop.is_set():
            return  # the messages come back after their visibility timeout
        assert self.queue_url is not None
        unique = list({m.message_id: m for m in messages}.values())
        try:
            failed = self.cycler.aws.delete(self.queue_url, unique)
        except Exception as error:
            log.get().error("queue delete failed", error=describe(error))
            return
        if failed:
            log.get().warning("some messages not deleted", failed=failed)
