"""Fixtures of the PostgreSQL engine's tests (helpers are in pgq.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jobq.postgres import PgEngine
from .pgq import new_queue_url, open_url


@pytest.fixture
def pg_url(pg_engine_dsn: str) -> str:
    """A URL of a queue no other test uses."""
    return new_queue_url(pg_engine_dsn)


@pytest.fixture
def engine(pg_url: str) -> Iterator[PgEngine]:
    eng = open_url(pg_url)
    try:
        yield eng
    finally:
        eng.close()
