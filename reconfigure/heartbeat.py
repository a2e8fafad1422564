"""The Healthchecks pinger: one ping per cycle, rate-limited, sent off the cycle's thread.

The cycle must never wait on, or fail because of, the monitoring service, so pings are
queued to one background worker (which keeps them in order: /start before its outcome).
What a ping says is `report.format_body`'s business.

Only a 2xx answer is a delivered ping. Redirects are never followed: the Healthchecks host
may sit behind an authenticating load balancer whose login page answers 200, which would
otherwise pass for a delivered ping.

The ping URL is a secret: it is never logged (nor is a redirect's Location, which may embed
it), and failures are described by exception type and HTTP status only, because requests'
messages embed the URL. The URL may come from a `UrlSource` (`ssm.Parameter`) that changes
while the daemon runs: it is resolved by the worker for each ping, never by the cycle.
"""

from __future__ import annotations

import dataclasses
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import requests
import tenacity

from reconfigure import __version__, log
from reconfigure.report import CycleReport, format_body, stopped_body

MAX_PENDING = 64  # pings queued while the server is slow; beyond this, new ones are dropped


class UrlSource(Protocol):
    """A ping URL that may change while the daemon runs (`ssm.Parameter`)."""

    @property
    def value(self) -> str | None:
        """The last value read; None until a read has succeeded."""
        ...

    def wait_read(self, timeout: float) -> bool:
        """Wait until a first read has finished."""
        ...

    def reread(self, timeout: float) -> str | None:
        """Read again now, wait at most `timeout`, return the value."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Cycle:
    """What `begin` decided for one cycle: the run id its /start carried, if one was sent."""

    rid: str | None = None


@dataclass(frozen=True, slots=True)
class PingOutcome:
    """How the last ping ended, for the status file."""

    at: float  # wall-clock seconds when it was accepted or given up on
    kind: str  # "start", "success" or "fail"
    ok: bool
    status: int | None  # the last HTTP status answered; None when nothing answered
    error: str | None  # e.g. "HTTP 302", "ConnectionError (NewConnectionError)"; None when ok


@dataclass(frozen=True, slots=True)
class HeartbeatStats:
    """Counters for tests, metrics and the status file."""

    enabled: bool
    sent: int  # requests the server accepted (2xx), /start included
    failed: int  # pings given up on (non-2xx, no answer, no URL), /start included
    suppressed: int  # cycles not pinged because of the rate rule
    dropped: int  # pings thrown away because too many were waiting
    paused: int  # pings not sent because the URL source holds a non-http(s) value
    pending: int  # queued, not yet finished
    last_sent_ok: bool | None  # outcome of the last outcome ping queued; None before any
    last_ping: PingOutcome | None  # how the last ping that went out (or failed to) ended


@dataclass(frozen=True, slots=True)
class _Ping:
    kind: str  # "start", "success" or "fail"
    suffix: str  # path suffix: "", "start" or "fail"
    rid: str | None
    body: str


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


def _scrub(body: str, *secrets: str | None) -> str:
    """The body without any form of the ping URL (an error message may quote it)."""
    for secret in sorted({s.strip() for s in secrets if s and s.strip()}, key=len,
                         reverse=True):
        body = body.replace(secret, "<ping url>")
    return body


class Heartbeat:
    """Pings one tier's Healthchecks check after each cycle, rate-limited (docs/design.md).

    Call `begin()` when a cycle starts and `finish(cycle, report)` when it ends; both return
    at once. Every /start is followed by an outcome: a stopped cycle's is a /fail, sent by
    `finish` or, if the cycle never reached it, by `close`. With no URL (unset or not
    http(s)) and no `source`, every method is a silent no-op. With a `source`, its value
    wins over `url`, which serves only until the source has been read once.
    """

    def __init__(self, url: str | None, tier: str, *, min_interval: float = 60.0,
                 send_start: bool = False, clock: Callable[[], float] = time.monotonic,
                 timeout: float = 5.0, retries: int = 3, backoff: float = 0.5,
                 session: requests.Session | None = None, source: UrlSource | None = None,
                 host: str | None = None) -> None:
        self._url = ping_url(url, tier)
        self._raw_url = url
        self._source = source
        self.tier = tier
        self.host = host or socket.gethostname()
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
        self._open_rid: str | None = None  # a /start sent whose outcome is not queued yet
        self._lock = threading.Lock()
        self._queue: queue.Queue[_Ping | None] = queue.Queue()
        self._stop = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._sent = self._failed = self._suppressed = self._dropped = self._paused = 0
        self._last_ping: PingOutcome | None = None
        self._paused_logged = False  # worker only

    @property
    def enabled(self) -> bool:
        return self._url is not None or self._source is not None

    def stats(self) -> HeartbeatStats:
        with self._lock:
            return HeartbeatStats(
                enabled=self.enabled, sent=self._sent, failed=self._failed,
                suppressed=self._suppressed, dropped=self._dropped, paused=self._paused,
                pending=self._queue.unfinished_tasks,
                last_sent_ok=self._last_ok, last_ping=self._last_ping,
            )

    def last_ping(self) -> dict[str, Any] | None:
        """The last ping's outcome as the status file's `last_ping`; None before any.

        Pings are sent after the status is written, so a cycle's status carries the
        outcome of the pings before its own."""
        with self._lock:
            last = self._last_ping
        return None if last is None else dataclasses.asdict(last)

    def _would_send(self, ok: bool, now: float) -> bool:
        """A success waits out `min_interval` after a sent success; nothing else waits."""
        if not ok or self._last_ok is not True:
            return True
        return now - self._last_at >= self.min_interval

    def begin(self) -> Cycle:
        """Send /start when a success at this moment would be pinged (and starts are on)."""
        if not self.enabled or not self.send_start or self._closed:
            return Cycle()
        if not self._would_send(True, self._clock()):
            return Cycle()
        rid = str(uuid.uuid4())
        if not self._enqueue(_Ping("start", "start", rid, "")):
            return Cycle()
        with self._lock:
            self._open_rid = rid
        return Cycle(rid)

    def finish(self, cycle: Cycle | None, report: CycleReport) -> bool:
        """Queue the outcome ping unless the rate rule suppresses it; True when queued.

        A cycle whose /start went out always gets its outcome, or Healthchecks would see
        a run that never ended: a stopped (abandoned) one is a /fail saying `stopped`.
        A stopped cycle without a /start says nothing: shutting down is not a failure."""
        if not self.enabled or self._closed:
            return False
        rid = cycle.rid if cycle is not None else None
        with self._lock:
            if rid is not None and rid == self._open_rid:
                self._open_rid = None
        if report.abandoned:
            if rid is None:
                return False
            report = dataclasses.replace(report, error="stopped")
        now = self._clock()
        if rid is None and not self._would_send(report.ok, now):
            with self._lock:
                self._suppressed += 1
            return False
        with self._lock:
            self._last_ok = report.ok
            self._last_at = now
        return self._enqueue(_Ping("success" if report.ok else "fail",
                                   "" if report.ok else "fail", rid, format_body(report)))

    def flush(self, timeout: float) -> bool:
        """Wait until every queued ping is done (sent or given up); False on timeout."""
        done = self._queue.all_tasks_done
        with done:
            return done.wait_for(lambda: self._queue.unfinished_tasks == 0, timeout)

    def close(self, timeout: float = 1.0) -> bool:
        """Send a /fail for a cycle whose /start went out but whose outcome never came (it
        was cut short by the shutdown), then let pending pings go out (retries included)
        for at most `timeout` seconds, then stop retrying: the daemon must exit promptly
        even if the server hangs. A request still in flight is left to the daemon thread.
        True when the worker has stopped."""
        with self._lock:
            already, self._closed = self._closed, True
            rid, self._open_rid = self._open_rid, None
        if rid is not None and not already:
            self._enqueue(_Ping("fail", "fail", rid, stopped_body(self.tier, self.host)))
        with self._lock:
            thread = self._thread
        if thread is not None:
            self._queue.put(None)  # the worker ends when it reaches this
            thread.join(timeout)
        self._stop.set()
        if self._source is not None:
            self._source.close()
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
                except Exception as error:  # never let the worker die
                    log.get().error("heartbeat worker error", error=type(error).__name__)
                finally:
                    self._queue.task_done()
        finally:
            if self._owns_session:
                session.close()

    def _pause(self, seconds: float) -> None:
        """Backoff that ends early on close (the stop condition then ends the retries)."""
        self._stop.wait(seconds)

    def _target(self, ping: _Ping) -> str | None:
        """The URL to ping now, or None when this ping is not to be sent (already
        accounted for: paused, or failed for want of a URL)."""
        source = self._source
        if source is None:
            return self._url
        if source.value is None and not self._stop.is_set():
            source.wait_read(self._timeout)  # start-up: the first read is under way
        value = source.value
        if value is None:  # never read: the environment's URL, if any, stands in
            if self._url is None:
                self._record(ping, None, "no ping URL (parameter not read yet)", 0)
            return self._url
        url = ping_url(value, self.tier)
        if url is None:  # an operator's way to silence the check: not a failure
            with self._lock:
                self._paused += 1
            if not self._paused_logged:
                log.get().info("heartbeat paused: the ping URL parameter is not an http(s) URL",
                               tier=self.tier)
                self._paused_logged = True
            return None
        self._paused_logged = False
        return url

    def _deliver(self, session: requests.Session, ping: _Ping) -> None:
        url = self._target(ping)
        if url is None:
            return
        status, error, attempts = self._post(session, ping, url)
        if status == 404 and self._source is not None and not self._closed:
            # The check was deleted or its URL rotated: read the parameter now, and if it
            # names another URL, this ping goes there.
            fresh = ping_url(self._source.reread(self._timeout), self.tier)
            if fresh is not None and fresh != url:
                status, error, more = self._post(session, ping, fresh)
                attempts += more
        self._record(ping, status, None if error is None else _describe(error), attempts)

    def _post(self, session: requests.Session, ping: _Ping,
              url: str) -> tuple[int | None, BaseException | None, int]:
        """POST with retries of transient failures: (last status, error or None, attempts)."""
        headers = {"Content-Type": "text/plain; charset=utf-8",
                   "User-Agent": f"reconfigure/{__version__}"}
        body = _scrub(ping.body, url, self._raw_url, self._url,
                      self._source.value if self._source is not None else None).encode("utf-8")
        target = join_url(url, ping.suffix, ping.rid)
        status: int | None = None

        def attempt() -> None:
            nonlocal status
            status = None
            response = session.post(target, data=body, headers=headers,
                                    timeout=self._timeout, allow_redirects=False)
            response.close()
            status = response.status_code
            if not 200 <= status < 300:  # 2xx only: a 302 may lead to a login page
                raise _HttpStatus(status)

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
        except Exception as error:  # the URL stays out of the log: only type and status
            return status, error, retrying.statistics.get("attempt_number", 1)
        return status, None, retrying.statistics.get("attempt_number", 1)

    def _record(self, ping: _Ping, status: int | None, error: str | None,
                attempts: int) -> None:
        outcome = PingOutcome(at=time.time(), kind=ping.kind, ok=error is None,
                              status=status, error=error)
        with self._lock:
            self._last_ping = outcome
            if outcome.ok:
                self._sent += 1
            else:
                self._failed += 1
        if not outcome.ok:
            log.get().warning("heartbeat ping failed", tier=self.tier, kind=ping.kind,
                              status=status, error=error, attempts=attempts)
