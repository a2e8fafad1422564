"""Idle threads stay asleep (issue 12: an idle daemon's CPU). Linux: reads the thread's
context switches from /proc."""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path

from reconfigure import metrics


def _switches(native_id: int) -> int:
    for line in Path(f"/proc/self/task/{native_id}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches line")


def test_the_metrics_server_does_not_wake_while_nobody_scrapes() -> None:
    server = metrics.serve(metrics.Metrics("imap", heartbeat_failures=lambda: 0),
                           "127.0.0.1", 0)
    try:
        port = server.server_address[1]
        url = f"http://127.0.0.1:{port}/metrics"
        assert b"reconfigure_" in urllib.request.urlopen(url, timeout=5).read()
        thread = next(t for t in threading.enumerate() if t.name == "metrics")
        assert thread.native_id is not None
        before = _switches(thread.native_id)
        time.sleep(2.0)  # an observation window, not synchronisation: 4 wakes at 0.5 s
        assert _switches(thread.native_id) - before <= 1
    finally:
        server.server_close()
