"""How many jobs a worker child claims at once on PostgreSQL: the engine's default (250), unless
``prefetch`` says. The claims of one settle share its server time as their ``started_at``."""

from __future__ import annotations

from collections import Counter

import psycopg

from jobq import Queue
from jobq.postgres import PgEngine
from workers import Worker

from jobtasks import add


def _batches(q: Queue) -> Counter[float]:
    """Jobs of ``add`` claimed per settle, by the settle's time (a periodic schedule another
    test of the process registered may add a job of its own to the queue)."""
    engine = q.engine
    assert isinstance(engine, PgEngine)
    with psycopg.connect(engine._db.loc.conninfo) as conn:  # noqa: SLF001 - the rows' times
        rows = conn.execute("SELECT started_at FROM jobq_done WHERE queue = %s AND task = %s",
                            (engine._queue, "jobtasks:add")).fetchall()  # noqa: SLF001
    return Counter(started for started, in rows)


def test_a_child_claims_up_to_the_engines_prefetch_by_default(pg_url: str) -> None:
    with Queue(pg_url) as q:
        assert q.engine.prefetch == 250
        q.enqueue_many(add, [(i, i) for i in range(1_000)])
        assert Worker(q).run(burst=True) >= 1_000
        sizes = _batches(q)
    assert sum(sizes.values()) == 1_000
    assert 100 < max(sizes.values()) <= 250


def test_the_prefetch_option_still_bounds_a_batch(pg_url: str) -> None:
    with Queue(pg_url) as q:
        q.enqueue_many(add, [(i, i) for i in range(300)])
        assert Worker(q, prefetch=40).run(burst=True) >= 300
        sizes = _batches(q)
    assert sum(sizes.values()) == 300
    assert 1 < max(sizes.values()) <= 40
