"""The daemon's schedule: wait for the ready file, then one cycle per trigger until stopped.

Triggers are SQS message batches (long poll) and a fallback timer on the monotonic clock.
The long poll runs in a worker thread so that SIGTERM is honoured at once: the main
thread only ever waits on an event that either the poll or the signal handler sets.
What the queue is, and its upkeep, is `queues`' business; a cycle is `cycle`'s.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import FrameType

from reconfigure import log, queues
from reconfigure.aws import describe
from reconfigure.cycle import Cycler
from reconfigure.queues import Message, TriggerQueue
from reconfigure.report import CycleReport

LONG_POLL_SECONDS = 20
DRAIN_ROUNDS = 20  # up to 200 more messages folded into one cycle
MIN_RECEIVE_BACKOFF = 5.0
MAX_RECEIVE_BACKOFF = 300.0
TEARDOWN_SECONDS = 1.0  # inside the 2 s the daemon has to stop


@dataclass
class Daemon:
    cycler: Cycler
    triggers: TriggerQueue
    interval: float
    ready_file: str  # a path under the root
    clock: Callable[[], float] = time.monotonic
    wake: threading.Event = field(default_factory=threading.Event)
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
            # Only set events: logging here could wait forever on the lock of a log write
            # the signal interrupted. The loop logs "stopping" when it notices.
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
        if not self.wait_ready():
            return
        try:
            self._upkeep()  # subscribe before the first full read
            self._cycle("startup")
            next_timer = self.clock() + self.interval
            while not self.stop.is_set():
                messages = self._next_messages(min(next_timer, self.triggers.next_upkeep()))
                if self.stop.is_set():
                    break
                if messages:
                    self._handle(messages)
                    next_timer = self.clock() + self.interval
                elif self.clock() >= next_timer:
                    self._cycle("timer")
                    next_timer = self.clock() + self.interval
                self._upkeep()
        finally:
            if self.stop.is_set():
                log.get().info("stopping")
            self.triggers.close(TEARDOWN_SECONDS)
        log.get().info("stopped")

    def _upkeep(self) -> None:
        if not self.stop.is_set():
            self.triggers.upkeep()

    def _cycle(self, trigger: str, messages: int = 0) -> CycleReport:
        report = self.cycler.run(trigger, messages=messages)
        if not report.abandoned:
            self.triggers.cycle_ended()
        return report

    def _next_messages(self, next_timer: float) -> list[Message]:
        """Messages from one long poll (plus any already waiting), or [] when the timer is
        due first. A poll still running when the timer fires is picked up afterwards."""
        remaining = max(0.0, next_timer - self.clock())
        url = self.triggers.url
        if not url:
            self.stop.wait(remaining)
            return []
        if self._poll is not None and self._poll_url != url:
            self._poll = None  # a poll of a queue we no longer use
        if self._poll is None:
            self.wake.clear()
            if self.stop.is_set():
                return []
            self._poll = self._start_poll(url, int(min(LONG_POLL_SECONDS, remaining)))
            self._poll_url = url
        self.wake.wait(remaining)
        if self.stop.is_set() or not self._poll.done():
            return []
        poll, self._poll = self._poll, None
        try:
            messages = poll.result()
        except Exception as error:
            log.get().error("queue receive failed", error=describe(error),
                            retry_in_s=self._backoff)
            self.triggers.receive_failed(error)
            self.stop.wait(min(self._backoff, remaining))
            self._backoff = min(self._backoff * 2, MAX_RECEIVE_BACKOFF)
            return []
        self._backoff = MIN_RECEIVE_BACKOFF
        return messages

    def _start_poll(self, url: str, wait: int) -> Future[list[Message]]:
        """A daemon thread, not an executor: at exit nothing waits for a poll in flight."""
        future: Future[list[Message]] = Future()

        def poll() -> None:
            try:
                future.set_result(self._receive(url, wait))
            except BaseException as error:
                future.set_exception(error)
            self.wake.set()

        threading.Thread(target=poll, name="poll", daemon=True).start()
        return future

    def _receive(self, url: str, wait: int) -> list[Message]:
        aws = self.cycler.aws
        messages = queues.receive(aws, url, wait)
        # Fold a burst into one cycle: whatever is already queued comes along.
        for _ in range(DRAIN_ROUNDS):
            if not messages or self.stop.is_set():
                break
            more = queues.receive(aws, url, 0)
            if not more:
                break
            messages.extend(more)
        return messages

    def _handle(self, messages: list[Message]) -> None:
        url = self._poll_url
        report = self._cycle("message", len(messages))
        if not report.ok or self.stop.is_set() or url is None:
            return  # the messages come back after their visibility timeout
        unique = list({m.message_id: m for m in messages}.values())
        try:
            failed = queues.delete(self.cycler.aws, url, unique)
        except Exception as error:
            log.get().error("queue delete failed", error=describe(error))
            return
        if failed:
            log.get().warning("some messages not deleted", failed=failed)
