"""`make run`'s demo: the new address reaches the files and a heartbeat arrives."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("tier", ["imap", "smtp-out"])
def test_demo_shows_the_whole_loop(tmp_path: Path, tier: str) -> None:
    root = tmp_path / "demo-root"
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.demo", "--root", str(root),
         "--seconds", "1", "--change-after", "0.5"],
        env={**os.environ, "TIER": tier}, capture_output=True, text=True, timeout=120,
        cwd=REPO, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "published the change" in out
    assert "ms after the publish" in out
    assert f"[heartbeat] /ping/{tier}  tier: {tier}" in out
    assert "trigger: message" in out
    files = "etc/mail/local-host-names" if tier == "imap" else "etc/opendkim/KeyTable"
    assert "demo.example.com" in (root / files).read_text()
