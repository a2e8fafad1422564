"""Prometheus text format: counters by trigger and outcome, histogram, gauges."""

from __future__ import annotations

from reconfigure.metrics import Metrics
from reconfigure.report import CycleReport


def test_observations_render_in_the_text_format() -> None:
    metrics = Metrics("smtp-in")
    metrics.observe(CycleReport("smtp-in", "h", "startup", rows=10, skipped=1,
                                duration_ms=300, reloads=["sendmail:TERM"]), now=1000.0)
    metrics.observe(CycleReport("smtp-in", "h", "message", rows=11, duration_ms=80), now=1010.0)
    metrics.observe(CycleReport("smtp-in", "h", "timer", rows=99, duration_ms=20000,
                                error="AccessDenied: x"), now=1020.0)
    metrics.observe(CycleReport("smtp-in", "h", "timer", abandoned=True, error="stop"))
    lines = metrics.render().splitlines()
    assert 'reconfigure_cycles_total{tier="smtp-in",trigger="startup",outcome="success"} 1' in lines
    assert 'reconfigure_cycles_total{tier="smtp-in",trigger="timer",outcome="failure"} 1' in lines
    assert 'reconfigure_reloads_total{tier="smtp-in",reload="sendmail:TERM"} 1' in lines
    assert 'reconfigure_cycle_duration_seconds_bucket{tier="smtp-in",le="0.1"} 1' in lines
    assert 'reconfigure_cycle_duration_seconds_bucket{tier="smtp-in",le="0.5"} 2' in lines
    assert 'reconfigure_cycle_duration_seconds_bucket{tier="smtp-in",le="+Inf"} 3' in lines
    assert 'reconfigure_cycle_duration_seconds_count{tier="smtp-in"} 3' in lines
    assert 'reconfigure_rows{tier="smtp-in"} 11' in lines  # the failure does not count
    assert 'reconfigure_last_success_timestamp_seconds{tier="smtp-in"} 1010.000' in lines
    for line in lines:
        assert line.startswith("#") or line.startswith("reconfigure_")
