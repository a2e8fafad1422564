"""The tier in a box, end to end: a real supervisord running a real sendmail, a real opendkim
(smtp-out) and `reconfigure run` from the shipped stanza, against moto, in private
namespaces. The box itself (tests/e2e/box.py) drives the scenario and records every check;
these tests run it, assert that every check passed, print the timings (`pytest -s`), and
check that the machine's own files are as they were.

    make e2e        # just these
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.launch import BoxRun, host_snapshot, run_box, usable

pytestmark = pytest.mark.skipif(usable() is not None, reason=str(usable()))

# Checks a passing run must contain: a box that skipped a phase must not pass by silence.
REQUIRED = {
    "smtp-in": {
        "new address: RCPT TO accepted",
        "new address accepted within 2 s",
        "unknown address on a known subdomain still rejected",
        "a map-only change leaves sendmail alone (same listening socket)",
        "sendmail listening again on a new socket after the class-file change",
        "sendmail kept its pid (HUP re-exec, not a restart)",
        "in-flight session: message accepted after the reload",
        "new subdomain: RCPT TO accepted",
        "deleted address: RCPT TO rejected",
        "sendmail never exited under supervisord",
        "reconfigure never exited under supervisord",
        "reconfigure stops cleanly on supervisord's TERM",
    },
    "smtp-out": {
        "known subdomain signed, d=acme.example.com",
        "subdomain not yet in the table not signed",
        "new subdomain signed by opendkim, d=fresh.example.com",
        "replaced KeyTable/SigningTable still opendkim:opendkim 0640",
        "opendkim kept its pid (reloaded, not restarted)",
        "sendmail kept its pid (HUP re-exec, not a restart)",
        "the queued message carries DKIM-Signature d=fresh.example.com",
        "deleted subdomain no longer signed",
        "opendkim never exited under supervisord",
        "sendmail never exited under supervisord",
        "reconfigure stops cleanly on supervisord's TERM",
    },
}


@pytest.fixture
def workdir() -> Iterator[Path]:
    """Not tmp_path: the box's queue and overlays hold root-only files, and a short path
    keeps the mount options readable in an error."""
    path = Path(tempfile.mkdtemp(prefix="box-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_and_check(tier: str, workdir: Path) -> BoxRun:
    before = host_snapshot()
    run = run_box(tier, workdir)
    after = host_snapshot()
    for name, seconds in run.result["timings"].items():
        print(f"[box {tier}] {name}: {seconds:.3f} s")
    print(f"[box {tier}] whole run: {run.seconds:.1f} s")
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"the box changed the machine's own files: {changed}"
    assert not run.failed and not run.result["error"], run.report(workdir)
    assert run.returncode == 0, run.report(workdir)
    missing = REQUIRED[tier] - {c["name"] for c in run.result["checks"]}
    assert not missing, f"checks the box never made: {sorted(missing)}\n{run.report(workdir)}"
    return run


@pytest.mark.timeout(150)
def test_smtp_in_box(workdir: Path) -> None:
    run = run_and_check("smtp-in", workdir)
    assert run.result["timings"]["publish to RCPT accepted (new address)"] <= 2.0


@pytest.mark.timeout(150)
def test_smtp_out_box(workdir: Path) -> None:
    run = run_and_check("smtp-out", workdir)
    assert "publish to signed (new subdomain)" in run.result["timings"]
