"""Fixtures of the PostgreSQL engine's tests (helpers are in pgq.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import pg
from jobq.postgres import PgEngine
from .pgq import new_queue_url, open_url


@pytest.fixture(scope="session")
def pg_engine_dsn(pg_server: pg.Server) -> Iterator[str]:
    """A database for the engine's tables, made for the session (the shared ``pg_dsn`` one is
    expected empty by the tests of the test infrastructure)."""
    try:
        with pg.fresh_database(pg_server.dsn, prefix="jobq_test_engine") as dsn:
            yield dsn
    except pg.PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


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
