"""Fixtures shared by the integration tests."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from tests.integration.support import AwsWorld, make_root, make_world


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto server over real HTTP on a free port; tests isolate by resource names."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


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
