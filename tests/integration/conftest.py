"""Fixtures shared by the integration tests."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.world import AwsWorld, make_root, make_world


@pytest.fixture
def world(moto_endpoint: str) -> AwsWorld:
    """This test's own table and queue."""
    return make_world(moto_endpoint)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A throw-away container root."""
    return make_root(tmp_path / "root")


@pytest.fixture
def daemons() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Daemon processes a test started; any still running at the end are killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()
