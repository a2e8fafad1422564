"""Prometheus metrics in the text exposition format, from the standard library alone.

Off unless RECONFIGURE_METRICS_PORT is set; a handful of counters and gauges do not
justify a dependency.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from reconfigure.report import CycleReport

# serve_forever wakes every poll interval only to see whether shutdown() was called: at
# its default 0.5 s that alone cost ~0.9 CPU-s/h, more than the idle daemon (issue 12).
# Nothing shuts the daemon's server down (it ends with the process); shutdown() from a
# caller returns within this many seconds.
SHUTDOWN_POLL_SECONDS = 30.0
_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, float("inf"))


@dataclass
class Metrics:
    tier: str
    cycles: Counter[tuple[str, str]] = field(default_factory=Counter)  # (trigger, outcome)
    reloads: Counter[str] = field(default_factory=Counter)
    duration_buckets: list[int] = field(default_factory=lambda: [0] * len(_BUCKETS))
    duration_sum: float = 0.0
    rows: int = 0
    skipped: int = 0
    last_success: float = 0.0
    owed: int = 0  # reloads owed after the last cycle (the ReconfigureReloadOwed alert)
    heartbeat_failures: Callable[[], int] = lambda: 0  # the heartbeat's failed-ping count
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, report: CycleReport, now: float | None = None) -> None:
        if report.abandoned:
            return
        seconds = report.duration_ms / 1000
        with self._lock:
            self.cycles[(report.trigger, "success" if report.ok else "failure")] += 1
            for reload in report.reloads:
                self.reloads[reload] += 1
            for index, bound in enumerate(_BUCKETS):
                if seconds <= bound:
                    self.duration_buckets[index] += 1
            self.duration_sum += seconds
            self.owed = len(report.owed)
            if report.ok:
                self.rows, self.skipped = report.rows, report.skipped
                self.last_success = time.time() if now is None else now

    def render(self) -> str:
        tier = f'tier="{self.tier}"'
        lines = [
            "# HELP reconfigure_cycles_total Cycles by trigger and outcome.",
            "# TYPE reconfigure_cycles_total counter",
        ]
        with self._lock:
            lines += [f'reconfigure_cycles_total{{{tier},trigger="{trigger}",outcome="{outcome}"}}'
                      f" {count}" for (trigger, outcome), count in sorted(self.cycles.items())]
            lines += ["# HELP reconfigure_reloads_total Reloads done, by daemon and action.",
                      "# TYPE reconfigure_reloads_total counter"]
            lines += [f'reconfigure_reloads_total{{{tier},reload="{name}"}} {count}'
                      for name, count in sorted(self.reloads.items())]
            lines += ["# HELP reconfigure_cycle_duration_seconds Wall time of a cycle.",
                      "# TYPE reconfigure_cycle_duration_seconds histogram"]
            for bound, count in zip(_BUCKETS, self.duration_buckets, strict=True):
                le = "+Inf" if bound == float("inf") else f"{bound:g}"
                lines.append(f'reconfigure_cycle_duration_seconds_bucket{{{tier},le="{le}"}}'
                             f" {count}")
            lines += [
                f"reconfigure_cycle_duration_seconds_sum{{{tier}}} {self.duration_sum:.6f}",
                f"reconfigure_cycle_duration_seconds_count{{{tier}}} {self.duration_buckets[-1]}",
                "# HELP reconfigure_rows Rows read by the last successful cycle.",
                "# TYPE reconfigure_rows gauge",
                f"reconfigure_rows{{{tier}}} {self.rows}",
                "# HELP reconfigure_skipped_rows Rows skipped by the last successful cycle.",
                "# TYPE reconfigure_skipped_rows gauge",
                f"reconfigure_skipped_rows{{{tier}}} {self.skipped}",
                "# HELP reconfigure_last_success_timestamp_seconds End of the last success.",
                "# TYPE reconfigure_last_success_timestamp_seconds gauge",
                f"reconfigure_last_success_timestamp_seconds{{{tier}}} {self.last_success:.3f}",
                "# HELP reconfigure_owed_reloads Reloads whose files are live but not yet done.",
                "# TYPE reconfigure_owed_reloads gauge",
                f"reconfigure_owed_reloads{{{tier}}} {self.owed}",
            ]
        lines += [
            "# HELP reconfigure_heartbeat_failures_total Healthchecks pings given up on "
            "(non-2xx, redirect, or no answer).",
            "# TYPE reconfigure_heartbeat_failures_total counter",
            f"reconfigure_heartbeat_failures_total{{{tier}}} {self.heartbeat_failures()}",
        ]
        return "\n".join(lines) + "\n"


def serve(metrics: Metrics, address: str, port: int) -> http.server.ThreadingHTTPServer:
    """Serve /metrics from a daemon thread; the caller may shut it down."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404)
                return
            body = metrics.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(SHUTDOWN_POLL_SECONDS,), name="metrics",
                     daemon=True).start()
    return server
