"""What every test package shares: one moto server over real HTTP for the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.world import moto_server


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto server on a free loopback port; tests isolate by resource names."""
    with moto_server() as endpoint:
        yield endpoint
