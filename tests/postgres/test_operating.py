"""PgEngine's operator actions against a real PostgreSQL: cancel, retry, purge."""

from __future__ import annotations

import time

import pytest

from jobq import transitions
from jobq.errors import JobNotFound
from jobq.postgres import PgEngine
from jobq.state import Status

from .pgq import fail, frame, frames, succeed


def test_cancel_waiting_and_running_jobs(engine: PgEngine) -> None:
    engine.append(frames(["run", "wait"]))
    (c,) = engine.settle([], "w/1", 1)[1]
    generation = engine.cancel_generation()
    assert engine.cancel("wait") is True
    assert engine.status("wait") is Status.CANCELLED
    assert engine.cancel_generation() == generation  # no running job was asked
    assert engine.cancel("run") is True
    time.sleep(0.06)  # past the reuse of the last read
    assert engine.cancel_generation() != generation
    assert engine.cancel_requested("run")
    assert engine.cancelling("w") == {("run", c.token)}
    assert engine.status("run") is Status.RUNNING
    engine.finish("run", c.token, lambda s, now, m: transitions.cancelled(s, now))
    assert engine.cancel("run") is False  # finished
    with pytest.raises(JobNotFound):
        engine.cancel("nope")
    assert engine.counts()["cancelled"] == 2


def test_requeue_brings_a_dead_job_back(engine: PgEngine) -> None:
    engine.append([frame("a", max_attempts=1), frame("b")])
    (c,) = engine.settle([], "w", 1)[1]
    engine.finish("a", c.token, fail("bad"))
    assert engine.requeue("b") is False  # queued
    assert engine.requeue("a") is True
    assert engine.requeue("a") is False  # queued again
    assert engine.status("a") is Status.QUEUED and engine.get("a").errors == ["bad"]
    claims = engine.settle([], "w", 2)[1]
    assert [cl.job_id for cl in claims] == ["a", "b"]  # its arrival place kept
    assert claims[0].token == c.token + 1 and claims[0].state.attempts == 1
    with pytest.raises(JobNotFound):
        engine.requeue("nope")


def test_purge_deletes_finished_jobs_only(engine: PgEngine) -> None:
    engine.append(frames(["a", "b", "c"]))
    for c in engine.settle([], "w", 2)[1]:
        engine.finish(c.job_id, c.token, succeed())
    assert engine.purge(frozenset({Status.SUCCEEDED}), engine.now() - 3600) == 0
    assert engine.purge(frozenset({Status.SUCCEEDED, Status.QUEUED}), engine.now() + 1) == 2
    assert not engine.exists("a") and engine.exists("c")
    with pytest.raises(JobNotFound):
        engine.payload_body("a")
    assert engine.damage() == []
