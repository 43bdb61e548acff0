"""Fixtures of the dashboard's tests: a running ``jobq dashboard``, always stopped."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from .serving import Served


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(location: str, *args: str, env: dict[str, str] | None = None) -> Served:
        served = Served(location, *args, env=env)
        started.append(served)
        return served

    try:
        yield start
    finally:
        for served in started:
            served.stop()
