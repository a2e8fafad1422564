"""The Healthchecks pinger: one ping per cycle, rate-limited, sent off the cycle's thread.

The cycle must never wait on, or fail because of, the monitoring service, so pings are
queued to one background worker (which keeps them in order: /start before its outcome).
What a ping says is `report.format_body`'s business.
The ping URL is a secret: it is never logged, and failures are described by exception
type and HTTP status only, because requests' messages embed the URL.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import requests
import tenacity

from reconfigure import __version__, log
from reconfigure.report import CycleReport, format_body

MAX_PENDING = 64  # pings queued while the server is slow; beyond this, new ones are dropped


@dataclass(frozen=True, slots=True)
class Cycle:
    """What `begin` decided for one cycle: the run id its /start carried, if one was sent."""

    rid: str | None = None


@dataclass(frozen=True, slots=True)
class HeartbeatStats:
    """Counters for tests and the status file."""

    enabled: bool
    sent: int  # requests the server accepted (2xx/3xx), /start included
    failed: int  # requests given up on after retries
    suppressed: int  # cycles not pinged because of the rate rule
    dropped: int  # pings thrown away because too many were waiting
    pending: int  # queued, not yet finished
    last_sent_ok: bool | None  # outcome of the last outcome ping queued; None before any


@dataclass(frozen=True, slots=True)
class _Ping:
    kind: str  # "start", "success" or "fail"
    url: str
    body: bytes


class _HttpStatus(Exception):
    """A response that is not a success; carries only the status, never the URL."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _transient(error: BaseException) -> bool:
    if isinstance(error, _HttpStatus):
        return error.status >= 500
    return isinstance(error, requests.ConnectionError | requests.Timeout)


def _describe(error: BaseException) -> str:
    """Exception type (and HTTP status or underlying cause type); never `str(error)`."""
    if isinstance(error, _HttpStatus):
        return f"HTTP {error.status}"
    name = type(error).__name__
    reason = getattr(error.args[0], "reason", None) if error.args else None
    if isinstance(reason, BaseException):
        return f"{name} ({type(reason).__name__})"
    return name


def ping_url(url: str | None, tier: str) -> str | None:
    """The tier's check URL, or None when pings are off (unset or not http(s))."""
    if not url:
        return None
    resolved = url.strip().replace("{tier}", tier)
    parts = urlsplit(resolved)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return resolved


def join_url(base: str, suffix: str = "", rid: str | None = None) -> str:
    """`base` + "/suffix" in the path (before any query) + `rid` added to the query."""
    parts = urlsplit(base)
    path = parts.path
    if suffix:
        path = f"{path.rstrip('/')}/{suffix}"
    query = parts.query
    if rid is not None:
        query = f"{query}&rid={rid}" if query else f"rid={rid}"
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


class Heartbeat:
    """Pings one tier's Healthchecks check after each cycle, rate-limited (docs/design.md).

    Call `begin()` when a cycle starts and `finish(cycle, report)` when it ends; both return
    at once. With `url` None (or not http(s)) every method is a silent no-op.
    """

    def __init__(self, url: str | None, tier: str, *, min_interval: float = 60.0,
                 send_start: bool = False, clock: Callable[[], float] = time.monotonic,
                 timeout: float = 5.0, retries: int = 3, backoff: float = 0.5,
                 session: requests.Session | None = None) -> None:
        self._url = ping_url(url, tier)
        self.tier = tier
        self.min_interval = min_interval
        self.send_start = send_start
        self._clock = clock
        self._timeout = timeout
        self._retries = max(retries, 0)
        self._backoff = backoff
        self._session = session
        self._owns_session = session is None
        # Rate state: what the last *queued* outcome ping reported, and when.
        self._last_ok: bool | None = None
        self._last_at = 0.0
        self._lock = threading.Lock()
        self._queue: queue.Queue[_Ping | None] = queue.Queue()
        self._stop = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._sent = self._failed = self._suppressed = self._dropped = 0

    @property
    def enabled(self) -> bool:
        return self._url is not None

    def stats(self) -> HeartbeatStats:
        with self._lock:
            return HeartbeatStats(
                enabled=self.enabled, sent=self._sent, failed=self._failed,
                suppressed=self._suppressed, dropped=self._dropped,
                pending=self._queue.unfinished_tasks,
                last_sent_ok=self._last_ok,
            )

    def _would_send(self, ok: bool, now: float) -> bool:
        """A success waits out `min_interval` after a sent success; nothing else waits."""
        if not ok or self._last_ok is not True:
            return True
        return now - self._last_at >= self.min_interval

    def begin(self) -> Cycle:
        """Send /start when a success at this moment would be pinged (and starts are on)."""
        if self._url is None or not self.send_start or self._closed:
            return Cycle()
        if not self._would_send(True, self._clock()):
            return Cycle()
        rid = str(uuid.uuid4())
        if not self._enqueue(_Ping("start", join_url(self._url, "start", rid), b"")):
            return Cycle()
        return Cycle(rid)

    def finish(self, cycle: Cycle | None, report: CycleReport) -> bool:
        """Queue the outcome ping unless the rate rule suppresses it; True when queued."""
        # Abandoned by shutdown is neither success nor failure: say nothing.
        if self._url is None or self._closed or report.abandoned:
            return False
        rid = cycle.rid if cycle is not None else None
        now = self._clock()
        # A cycle whose /start went out always gets its outcome, or Healthchecks sees a hang.
        if rid is None and not self._would_send(report.ok, now):
            with self._lock:
                self._suppressed += 1
            return False
        url = join_url(self._url, "" if report.ok else "fail", rid)
        body = format_body(report).replace(self._url, "<ping url>")
        with self._lock:
            self._last_ok = report.ok
            self._last_at = now
        return self._enqueue(_Ping("success" if report.ok else "fail", url,
                                   body.encode("utf-8")))

    def flush(self, timeout: float) -> bool:
        """Wait until every queued ping is done (sent or given up); False on timeout."""
        done = self._queue.all_tasks_done
        with done:
            return done.wait_for(lambda: self._queue.unfinished_tasks == 0, timeout)

    def close(self, timeout: float = 1.0) -> bool:
        """Let pending pings go out (retries included) for at most `timeout` seconds, then
        stop retrying: the daemon must exit promptly even if the server hangs. A request
        still in flight is left to the daemon thread. True when the worker has stopped."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)  # the worker ends when it reaches this
            thread.join(timeout)
        self._stop.set()
        return thread is None or not thread.is_alive()

    # ----- worker

    def _enqueue(self, ping: _Ping) -> bool:
        with self._lock:
            dropped = self._queue.unfinished_tasks >= MAX_PENDING
            if not dropped:
                self._queue.put(ping)
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="heartbeat",
                                                    daemon=True)
                    self._thread.start()
            else:
                self._dropped += 1
        if dropped:
            log.get().warning("heartbeat ping dropped", tier=self.tier, kind=ping.kind,
                              reason="too many pings waiting")
        return not dropped

    def _run(self) -> None:
        session = self._session or requests.Session()
        try:
            while True:
                ping = self._queue.get()
                try:
                    if ping is None:
                        return
                    self._deliver(session, ping)
                finally:
                    self._queue.task_done()
        finally:
            if self._owns_session:
                session.close()

    def _pause(self, seconds: float) -> None:
        """Backoff that ends early on close (the stop condition then ends the retries)."""
        self._stop.wait(seconds)

    def _deliver(self, session: requests.Session, ping: _Ping) -> None:
        headers = {"Content-Type": "text/plain; charset=utf-8",
                   "User-Agent": f"reconfigure/{__version__}"}

        def attempt() -> None:
            response = session.post(ping.url, data=ping.body, headers=headers,
                                    timeout=self._timeout)
            response.close()
            if response.status_code >= 400:
                raise _HttpStatus(response.status_code)

        retrying = tenacity.Retrying(
            stop=(tenacity.stop_after_attempt(self._retries + 1)
                  | tenacity.stop_when_event_set(self._stop)),
            # Spelled to work on tenacity 8.2 (no `multiplier` for wait_exponential_jitter)
            # and 9.x (which deprecates its `initial`).
            wait=(tenacity.wait_exponential(multiplier=self._backoff, max=4 * self._backoff)
                  + tenacity.wait_random(0, self._backoff)),
            retry=tenacity.retry_if_exception(_transient),
            sleep=self._pause,
            reraise=True,
        )
        try:
            retrying(attempt)
        except Exception as error:  # never let the worker die; the URL stays out of the log
            with self._lock:
                self._failed += 1
            log.get().warning("heartbeat ping failed", tier=self.tier, kind=ping.kind,
                              error=_describe(error),
                              attempts=retrying.statistics.get("attempt_number", 1))
        else:
            with self._lock:
                self._sent += 1
