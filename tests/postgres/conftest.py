"""Fixtures of the PostgreSQL engine's tests (helpers are in pgq.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Children

import pg
from jobq.postgres import PgEngine
from .outage_kit import Drain, MakeDrain, queue_url
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


@pytest.fixture
def make_drain(pg_cluster: pg.Cluster, tmp_path: Path, children: Children
               ) -> Iterator[MakeDrain]:
    """Makes a Drain (outage_kit) of a new queue on the private cluster; closed at the end."""
    made: list[Drain] = []

    def make(jobs: int, **options: object) -> Drain:
        drain = Drain(queue_url(pg_cluster.port), tmp_path, children, jobs, **options)
        made.append(drain)
        return drain

    try:
        yield make
    finally:
        for drain in made:
            drain.close()
