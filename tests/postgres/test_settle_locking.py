"""settle's reads under concurrent writers: what a settle that waited on a row lock reads."""

from __future__ import annotations

import threading

import psycopg

from conftest import wait_until
from jobq import transitions
from jobq.postgres import PgEngine, settle
from jobq.postgres.url import parse

from .pgq import frames, open_url


def test_a_reaper_that_waited_on_a_save_keeps_the_checkpoint_saved(engine: PgEngine,
                                                                   pg_url: str) -> None:
    """A reaper whose row lock waited on a checkpoint being saved records the attempt's end on
    top of that checkpoint, not on the one before it (a checkpoint must never go backwards)."""
    loc = parse(pg_url)
    engine.append(frames(["a"]))
    _, (claim,) = engine.settle([], "w1/1", 1)
    engine.save_checkpoint("a", claim.token, 1, 0.1)
    reaper = open_url(pg_url)
    ended: list[object] = []
    died = (lambda s, now, m: transitions.interrupted(s, "worker w1 died", now, max_attempts=m,
                                                      max_crashes=3, token=claim.token))
    thread = threading.Thread(target=lambda: ended.append(
        reaper.settle([("a", claim.token, died)], "w2", 0)[0]))
    try:
        with psycopg.connect(loc.conninfo, autocommit=True) as saver, \
                psycopg.connect(loc.conninfo, autocommit=True) as watcher:
            with saver.transaction():  # the worker saves step 2: committed once the reaper waits
                settle.save_checkpoint(saver, engine._codec, loc.queue, "a",  # noqa: SLF001
                                       claim.token, 2, 0.2)
                thread.start()
                wait_until(lambda: watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database()").fetchone()[0])
        thread.join(30)
    finally:
        reaper.close()
    (state,) = ended[0]  # type: ignore[index]
    assert state is not None and state.checkpoint == 2
    assert engine.get("a").checkpoint == 2 and engine.get("a").progress == 0.2
