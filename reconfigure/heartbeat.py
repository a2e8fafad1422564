"""Healthchecks pings (SPEC §7): one per cycle, rate-limited, sent off the cycle's thread.

The cycle must never wait on, or fail because of, the monitoring service, so pings are
queued to one background worker (which keeps them in order: /start before its outcome).
The ping URL is a secret: it is never logged, and failures are described by exception
type and HTTP status only, because requests' messages embed the URL.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import requests
import tenacity

from reconfigure import __version__, log
from reconfigure.report import CycleReport

BODY_LIMIT = 8000  # bytes; a self-hosted Healthchecks keeps 10 kB of a ping body
MAX_PENDING = 64  # pings queued while the server is slow; beyond this, new ones are dropped
_VALUE_LIMIT = 500  # bytes for one listed value (a path, a refusal)
_ERROR_LIMIT = 2000  # bytes for the error line
_MAX_RULES = 20  # per-rule skip lines
_MORE_RESERVE = 200  # room kept for the "… and N more" lines


# ----- the body


def _one_line(text: str) -> str:
    """A value on one line, so the body stays `key: value` per line."""
    return " ".join(text.split())


def _clip(text: str, limit: int) -> str:
    """At most `limit` UTF-8 bytes, never cutting inside a character."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: max(limit - 3, 0)].decode("utf-8", "ignore") + "…"


def _size(lines: Iterable[str]) -> int:
    return sum(len(line.encode("utf-8")) + 1 for line in lines)


def _rule_lines(by_rule: dict[str, int]) -> list[str]:
    """Per-rule skip counts, most frequent first (rules are a small fixed set)."""
    ranked = sorted(by_rule.items(), key=lambda pair: (-pair[1], pair[0]))
    lines = [f"skipped [{_clip(_one_line(rule), 200)}]: {count}"
             for rule, count in ranked[:_MAX_RULES]]
    if len(ranked) > _MAX_RULES:
        lines.append(f"skipped [… and {len(ranked) - _MAX_RULES} more rules]: "
                     f"{sum(count for _, count in ranked[_MAX_RULES:])}")
    return lines


def format_body(report: CycleReport, *, limit: int = BODY_LIMIT) -> str:
    """Plain text, one `key: value` a line, at most `limit` bytes of UTF-8.

    The fixed facts (and the error) come first so truncation only ever shortens the
    lists, each of which then ends with "… and N more".
    """
    head = [
        f"tier: {_one_line(report.tier)}",
        f"host: {_one_line(report.host)}",
        f"trigger: {_one_line(report.trigger)}",
        f"status: {'abandoned' if report.abandoned else 'ok' if report.ok else 'failed'}",
    ]
    if report.error is not None:
        head.append(f"error: {_clip(_one_line(report.error), _ERROR_LIMIT)}")
    head += [
        f"duration_ms: {report.duration_ms}",
        f"aws_ms: {report.aws_ms}",
        f"rows: {report.rows}",
        f"skipped: {report.skipped}",
        *_rule_lines(report.skipped_by_rule),
        f"dropped duplicate lines: {report.dropped_lines}",
        f"messages: {report.messages}",
        f"changed files: {len(report.changed)}",
        f"reloads: {_clip(_one_line(', '.join(report.reloads)), _VALUE_LIMIT) or 'none'}",
    ]
    if report.users_created or report.users_refused:
        head.append(f"users created: {len(report.users_created)}")
        head.append(f"users refused: {len(report.users_refused)}")

    lists: list[tuple[str, list[str]]] = [
        ("refused", list(report.users_refused)),
        ("created", list(report.users_created)),
        ("changed", list(report.changed)),
    ]
    lines = list(head)
    budget = limit - _MORE_RESERVE
    for key, values in lists:
        for index, value in enumerate(values):
            line = f"{key}: {_clip(_one_line(value), _VALUE_LIMIT)}"
            if _size(lines) + _size([line]) > budget:
                lines.append(f"{key}: … and {len(values) - index} more")
                break
            lines.append(line)
    return _clip("\n".join(lines) + "\n", limit)


# ----- the pinger


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
    """Pings one tier's Healthchecks check after each cycle, rate-limited as SPEC §7 says.

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
        self._idle = threading.Condition(self._lock)
        self._queue: deque[_Ping | None] = deque()
        self._wakeup = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pending = 0
        self._sent = self._failed = self._suppressed = self._dropped = 0

    @property
    def enabled(self) -> bool:
        return self._url is not None

    def stats(self) -> HeartbeatStats:
        with self._lock:
            return HeartbeatStats(
                enabled=self.enabled, sent=self._sent, failed=self._failed,
                suppressed=self._suppressed, dropped=self._dropped, pending=self._pending,
                last_sent_ok=self._last_ok,
            )

    def _would_send(self, ok: bool, now: float) -> bool:
        """SPEC §7: a success waits out `min_interval` after a sent success; nothing else waits."""
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
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 1.0) -> bool:
        """Let pending pings go out (retries included) for at most `timeout` seconds, then
        stop retrying: the daemon must exit promptly even if the server hangs. A request
        still in flight is left to the daemon thread. True when the worker has stopped."""
        with self._lock:
            self._closed = True
            self._queue.append(None)
            self._wakeup.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self._stop.set()
        return thread is None or not thread.is_alive()

    # ----- worker

    def _enqueue(self, ping: _Ping) -> bool:
        with self._lock:
            if self._pending >= MAX_PENDING:
                self._dropped += 1
                dropped = True
            else:
                dropped = False
                self._pending += 1
                self._queue.append(ping)
                self._wakeup.notify()
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="heartbeat",
                                                    daemon=True)
                    self._thread.start()
        if dropped:
            log.get().warning("heartbeat ping dropped", tier=self.tier, kind=ping.kind,
                              reason="too many pings waiting")
        return not dropped

    def _run(self) -> None:
        session = self._session or requests.Session()
        try:
            while True:
                with self._wakeup:
                    self._wakeup.wait_for(lambda: bool(self._queue))
                    ping = self._queue.popleft()
                if ping is None:
                    return
                try:
                    self._deliver(session, ping)
                finally:
                    with self._idle:
                        self._pending -= 1
                        if self._pending == 0:
                            self._idle.notify_all()
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
