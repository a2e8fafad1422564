"""The loop's schedule alone (docs/design.md §6): a fake clock that advances when the loop
waits, a fake cycler and a fake trigger queue whose polls run inline. No wall-clock sleeps:
each test runs in milliseconds whatever the intervals."""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import pytest

from reconfigure.loop import LONG_POLL_SECONDS, Daemon, KeptThreads
from reconfigure.queues import Message
from reconfigure.report import CycleReport


@dataclass
class Clock:
    now: float = 0.0
    limit: float = 1000.0  # the test ends here: the loop is asked to stop
    daemon: Daemon | None = None

    def __call__(self) -> float:
        return self.now

    def wait(self, event: threading.Event, timeout: float) -> bool:
        if not event.is_set():
            self.advance(timeout)
        return event.is_set()

    def advance(self, seconds: float) -> None:
        self.now += seconds
        if self.now >= self.limit and self.daemon is not None:
            self.daemon.request_stop()


@dataclass
class Run:
    at: float
    trigger: str
    messages: int
    queue_error: str | None


@dataclass
class FakeCycler:
    clock: Clock
    errors: list[str | None] = field(default_factory=list)  # per run, then success
    applied: bool = False  # what a failed run reports
    stop: threading.Event = field(default_factory=threading.Event)
    runs: list[Run] = field(default_factory=list)
    during: list[object] = field(default_factory=list)  # callables run inside a cycle

    def run(self, trigger: str, *, force: bool = False, messages: int = 0,
            queue_error: str | None = None) -> CycleReport:
        self.runs.append(Run(self.clock.now, trigger, messages, queue_error))
        for action in self.during:
            assert callable(action)
            action()
        error = self.errors.pop(0) if self.errors else None
        return CycleReport("imap", "host", trigger, messages=messages,
                           error=error or queue_error, applied=error is None or self.applied)


@dataclass
class FakeTriggers:
    clock: Clock
    url: str | None = "queue"
    visibility: int = 60
    arrivals: list[tuple[float, Message]] = field(default_factory=list)
    failing_receives: int = 0
    upkeep_fault: tuple[float, str] | None = None
    receives: list[tuple[float, int]] = field(default_factory=list)
    deleted: list[Message] = field(default_factory=list)
    extended: list[list[Message]] = field(default_factory=list)
    extended_event: threading.Event = field(default_factory=threading.Event)
    ended: int = 0
    closed: bool = False

    def ready(self) -> bool:
        return True

    def next_upkeep(self) -> float:
        return float("inf")

    def upkeep(self, wake: threading.Event) -> None:
        return

    def receive(self, url: str, wait: int) -> list[Message]:
        """A long poll: returns when a message arrives, else after `wait` seconds."""
        self.receives.append((self.clock.now, wait))
        if self.failing_receives:
            self.failing_receives -= 1
            raise ConnectionError("SQS unreachable")
        pending = sorted(t for t, _ in self.arrivals)
        if pending and pending[0] <= self.clock.now + wait:
            self.clock.now = max(self.clock.now, pending[0])
        else:
            self.clock.advance(wait)
        due = [m for t, m in self.arrivals if t <= self.clock.now][:10]
        self.arrivals = [(t, m) for t, m in self.arrivals if m not in due]
        return due

    def receive_failed(self, error: BaseException) -> None:
        return

    def delete(self, url: str, messages: list[Message]) -> None:
        self.deleted.extend(messages)

    def extend(self, url: str, messages: list[Message], seconds: int) -> None:
        self.extended.append(messages)
        if len(self.extended) >= 2:
            self.extended_event.set()

    def fault(self) -> tuple[float, str] | None:
        return self.upkeep_fault

    def cycle_ended(self) -> None:
        self.ended += 1

    def close(self, timeout: float) -> None:
        self.closed = True


def _inline(target: object, name: str) -> None:
    assert callable(target)
    target()


def daemon(tmp_path: Path, *, interval: float, limit: float, url: str | None = "queue",
           errors: list[str | None] | None = None, **fields: object
           ) -> tuple[Daemon, Clock, FakeCycler, FakeTriggers]:
    ready = tmp_path / "ready"
    ready.write_text("")
    clock = Clock(limit=limit)
    cycler = FakeCycler(clock, errors=list(errors or []))
    triggers = FakeTriggers(clock, url=url)
    loop = Daemon(cycler, triggers, interval, ready, clock=clock, wait=clock.wait,
                  spawn=_inline, **fields)  # type: ignore[arg-type]
    clock.daemon = loop
    return loop, clock, cycler, triggers


def message(n: int) -> Message:
    return Message(f"m{n}", f"handle{n}")


def test_timer_fires_every_interval_without_a_queue(tmp_path: Path) -> None:
    loop, _, cycler, triggers = daemon(tmp_path, interval=100, limit=350, url=None)
    loop.run()
    assert [(r.trigger, r.at) for r in cycler.runs] == [
        ("startup", 0), ("timer", 100), ("timer", 200), ("timer", 300)]
    assert triggers.receives == [] and triggers.closed


def test_idle_with_a_queue_long_polls_only_and_the_timer_waits_for_the_poll(
        tmp_path: Path) -> None:
    loop, _, cycler, triggers = daemon(tmp_path, interval=30, limit=200)
    loop.run()
    waits = [w for _, w in triggers.receives]
    assert waits and set(waits) == {LONG_POLL_SECONDS}  # never 0, never shortened
    assert len(waits) <= 200 / LONG_POLL_SECONDS + 1
    timers = [r.at for r in cycler.runs if r.trigger == "timer"]
    assert len(timers) >= 4
    for previous, at in zip([0.0, *timers], timers, strict=False):
        assert 30 <= at - previous <= 30 + LONG_POLL_SECONDS  # run when the poll returns


def test_after_a_failed_cycle_the_loop_retries_with_doubling_backoff(tmp_path: Path) -> None:
    loop, _, cycler, _ = daemon(tmp_path, interval=100, limit=300, url=None,
                                errors=["boom", "boom", "boom", "boom"])
    loop.run()
    times = [r.at for r in cycler.runs]
    assert times[:6] == [0, 5, 15, 35, 75, 175]  # 5, 10, 20, 40, then success: the interval


def test_backoff_stops_at_the_interval(tmp_path: Path) -> None:
    loop, _, cycler, _ = daemon(tmp_path, interval=12, limit=60, url=None,
                                errors=["boom"] * 10)
    loop.run()
    times = [r.at for r in cycler.runs]
    assert [b - a for a, b in pairwise(times)][:4] == [5, 10, 12, 12]


def test_a_burst_of_messages_is_one_cycle_and_deleted_after_it(tmp_path: Path) -> None:
    loop, _, cycler, triggers = daemon(tmp_path, interval=900, limit=100)
    triggers.arrivals = [(50.0, message(n)) for n in range(12)]
    loop.run()
    message_runs = [r for r in cycler.runs if r.trigger == "message"]
    assert [(r.at, r.messages) for r in message_runs] == [(50, 12)]
    assert sorted(m.message_id for m in triggers.deleted) == sorted(f"m{n}" for n in range(12))
    # Short receives only right after one that brought messages (the drain).
    for (_, wait), (_, before) in zip(triggers.receives[1:], triggers.receives, strict=False):
        if wait == 0:
            assert before in (0, LONG_POLL_SECONDS)
    assert [w for _, w in triggers.receives].count(0) == 2


@pytest.mark.parametrize(("applied", "deleted"), [(True, 1), (False, 0)])
def test_a_failed_message_cycle_deletes_only_when_its_render_went_live(
        tmp_path: Path, applied: bool, deleted: int) -> None:
    loop, _, cycler, triggers = daemon(tmp_path, interval=900, limit=100,
                                       errors=[None, "reload failed: sendmail"])
    cycler.applied = applied
    triggers.arrivals = [(30.0, message(1))]
    loop.run()
    assert [r.trigger for r in cycler.runs][:2] == ["startup", "message"]
    assert len(triggers.deleted) == deleted


def test_stop_during_a_cycle_ends_the_loop_and_closes_the_queue(tmp_path: Path) -> None:
    loop, _, cycler, triggers = daemon(tmp_path, interval=10, limit=10_000)

    def third_stops() -> None:
        if len(cycler.runs) == 3:
            loop.request_stop()

    cycler.during.append(third_stops)
    loop.run()
    assert len(cycler.runs) == 3 and triggers.closed


def test_failing_receives_back_off_and_are_reported_once_past_the_bound(
        tmp_path: Path) -> None:
    loop, _, cycler, triggers = daemon(tmp_path, interval=60, limit=400,
                                       queue_fault_bound=100)
    triggers.failing_receives = 6
    loop.run()
    failed_at = [t for t, _ in triggers.receives[:7]]
    gaps = [b - a for a, b in pairwise(failed_at)]
    assert gaps[:5] == [5, 10, 20, 40, 80]
    reported = [r for r in cycler.runs if r.queue_error]
    assert reported and all("receive: ConnectionError" in (r.queue_error or "")
                            for r in reported)
    assert all(r.at >= 100 for r in reported)  # not before the bound
    # Timer cycles went on meanwhile, on the interval: a queue error is no cycle failure.
    timers = [r.at for r in cycler.runs if r.trigger == "timer"]
    assert len(timers) >= 5
    assert cycler.runs[-1].queue_error is None  # the queue answers again


def test_upkeep_trouble_past_the_bound_is_carried_by_the_next_cycle(tmp_path: Path) -> None:
    loop, _, cycler, triggers = daemon(tmp_path, interval=60, limit=130, url=None,
                                       queue_fault_bound=100)
    triggers.upkeep_fault = (50.0, "private queue setup failed: 503")
    cycler.during.append(lambda: setattr(triggers, "upkeep_fault", (
        triggers.upkeep_fault[0] + 60, triggers.upkeep_fault[1])
        if triggers.upkeep_fault else None))
    loop.run()
    assert [r.queue_error for r in cycler.runs][:2] == [
        None, "queue failing for 110 s: private queue setup failed: 503"]


def test_messages_in_hand_stay_hidden_while_a_long_cycle_runs(tmp_path: Path) -> None:
    loop, _, cycler, triggers = daemon(tmp_path, interval=900, limit=100,
                                       extend_every=0.01)
    triggers.arrivals = [(30.0, message(1))]

    def long_cycle() -> None:
        if cycler.runs[-1].trigger == "message":
            assert triggers.extended_event.wait(10), "visibility never extended"

    cycler.during.append(long_cycle)
    loop.run()
    assert triggers.extended[0] == [message(1)]
    assert [m.message_id for m in triggers.deleted] == ["m1"]


def test_the_heap_left_by_the_startup_cycle_is_frozen_once(tmp_path: Path) -> None:
    """Full collections set off by later cycles must not walk boto3's models again and
    again (issue 12: an idle daemon's CPU): the loop freezes the heap after startup."""
    loop, _, cycler, _ = daemon(tmp_path, interval=100, limit=150, url=None)
    loop.run()
    assert [r.trigger for r in cycler.runs][:2] == ["startup", "timer"]
    frozen = gc.get_freeze_count()
    assert frozen > 1000
    second = daemon(tmp_path, interval=100, limit=150, url=None)
    second[0].run()
    # Once per process, not once per loop: a second freeze would add every object made
    # since (`second` keeps its own alive here); frozen objects that refcounting frees
    # leave the count, so it may only shrink.
    assert gc.get_freeze_count() <= frozen


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_poll_thread_whose_target_returned_takes_the_next_one() -> None:
    """Polls run on a kept thread, not a new one each: but never on one that is busy,
    nor on one whose target raised (that thread is gone)."""
    threads = KeptThreads()
    seen: list[int] = []
    workers: list[threading.Thread] = []
    done = [threading.Event() for _ in range(4)]
    release = threading.Event()

    def record(index: int, *, block: bool = False, fail: bool = False) -> None:
        seen.append(threading.get_ident())
        workers.append(threading.current_thread())
        done[index].set()
        if block:
            release.wait(10)
        if fail:
            raise RuntimeError("a target that raised")

    def until_idle(count: int) -> None:
        deadline = time.monotonic() + 10
        while len(threads.idle) < count:
            assert time.monotonic() < deadline, "no kept thread came back"
            time.sleep(0.01)

    threads.spawn(lambda: record(0), "poll")
    until_idle(1)
    threads.spawn(lambda: record(1, block=True), "poll")
    assert done[1].wait(10)
    threads.spawn(lambda: record(2, fail=True), "poll")  # the kept one is busy: a new one
    assert done[2].wait(10)
    release.set()
    until_idle(1)
    threads.spawn(lambda: record(3), "poll")
    assert done[3].wait(10)
    assert seen[0] == seen[1] == seen[3] and seen[2] != seen[1]
    assert len(threads.idle) <= 1  # the thread that raised never came back
    # Its exception is reported inside this test (whose mark ignores it), not in a later one.
    workers[2].join(10)
    assert not workers[2].is_alive()
