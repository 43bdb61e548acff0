"""A settle of the engine's own claims writes them from the rows its claims returned, fenced,
without locking them first: whatever changed a row since the claim (a cancel, a checkpoint, a
reaper) is still seen, as the locking path sees it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from jobq import transitions
from jobq.postgres import PgEngine
from jobq.postgres.url import parse
from jobq.state import Status

from .pgq import frames, open_url, succeed


@pytest.fixture
def statements(engine: PgEngine, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The text of every statement the engine's connection runs from now on."""
    seen: list[str] = []
    conn = engine._db.conn  # noqa: SLF001 - the test spies on the session's statements
    execute = conn.execute

    def spy(query: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(str(query))
        return execute(query, *args, **kwargs)

    monkeypatch.setattr(conn, "execute", spy)
    yield seen


def test_own_claims_are_settled_without_a_lock_statement(engine: PgEngine,
                                                        statements: list[str]) -> None:
    engine.append(frames(["a", "b", "c"]))
    _, claims = engine.settle([], "w1", 3)
    statements.clear()
    states, more = engine.settle([(c.job_id, c.token, succeed(c.job_id)) for c in claims],
                                 "w1", 1)
    assert [s.result for s in states if s is not None] == ["a", "b", "c"]
    assert more == []
    assert not [q for q in statements if "FOR UPDATE" in q and "jobq_jobs_ready" not in q
                and q.lstrip().startswith("SELECT")]
    assert engine.counts()["succeeded"] == 3
    assert {engine.get(j).result for j in "abc"} == {"a", "b", "c"}


def test_a_cancel_requested_after_the_claim_is_kept(engine: PgEngine, pg_url: str) -> None:
    engine.append(frames(["a"]))
    _, (claim,) = engine.settle([], "w1", 1)
    with psycopg.connect(parse(pg_url).conninfo, autocommit=True) as other:
        other.execute("UPDATE jobq_jobs SET cancel_requested = true WHERE job_id = 'a'")
    (state,), _ = engine.settle([("a", claim.token, succeed(1))], "w1", 0)
    assert state is not None and state.status is Status.SUCCEEDED and state.cancel_requested
    assert engine.get("a").cancel_requested


def test_a_checkpoint_saved_after_the_claim_is_kept(engine: PgEngine) -> None:
    """The claim's row had no snapshot; the settle must not write the job back without the
    checkpoint saved since (the fence sees the save's updated_at and progress)."""
    engine.append(frames(["a"]))
    _, (claim,) = engine.settle([], "w1", 1)
    engine.save_checkpoint("a", claim.token, {"step": 2}, 0.5)
    failed = (lambda s, now, m: transitions.failed(s, "boom", now, max_attempts=m,
                                                   retry_delay=60.0))
    (state,), _ = engine.settle([("a", claim.token, failed)], "w1", 0)
    assert state is not None and state.status is Status.FAILED
    assert state.checkpoint == {"step": 2} and state.progress == 0.5
    assert engine.get("a").checkpoint == {"step": 2}


def test_a_claim_whose_lease_was_renewed_since_is_recorded(engine: PgEngine) -> None:
    """The renewal wrote the row anew elsewhere than the claim left it: the settle finds it
    (by the locking path) and records the job once."""
    engine.append(frames(["a", "b"]))
    _, claims = engine.settle([], "w1", 2)
    assert engine.renew("w1", 120.0) == 2
    states, _ = engine.settle([(c.job_id, c.token, succeed(c.job_id)) for c in claims], "w1", 0)
    assert [s.result for s in states if s is not None] == ["a", "b"]
    assert engine.counts()["succeeded"] == 2 and engine.get("b").result == "b"


def test_a_claim_reaped_and_claimed_again_records_nothing(engine: PgEngine,
                                                           pg_url: str) -> None:
    engine.append(frames(["a"]))
    _, (claim,) = engine.settle([], "w1", 1)
    other = open_url(pg_url)
    try:
        given_back = (lambda s, now, m: transitions.released(s, now))
        other.settle([("a", claim.token, given_back)], "w2", 0)
        _, (again,) = other.settle([], "w2", 1)
        assert again.token > claim.token
        (state,), _ = engine.settle([("a", claim.token, succeed(1))], "w1", 0)
        assert state is None
        assert engine.status("a") is Status.RUNNING
        (state,), _ = other.settle([("a", again.token, succeed(2))], "w2", 0)
        assert state is not None and engine.get("a").result == 2
    finally:
        other.close()


def test_a_claim_listed_twice_is_recorded_once(engine: PgEngine) -> None:
    engine.append(frames(["a"]))
    _, (claim,) = engine.settle([], "w1", 1)
    states, _ = engine.settle([("a", claim.token, succeed(1)), ("a", claim.token, succeed(2))],
                              "w1", 0)
    assert states[1] is None and states[0] is not None and states[0].result == 1
    assert engine.counts()["succeeded"] == 1 and engine.get("a").result == 1


def _snapshots(pg_url: str) -> set[str]:
    with psycopg.connect(parse(pg_url).conninfo) as conn:
        return {r[0] for r in conn.execute("SELECT job_id FROM jobq_snapshots WHERE queue = %s",
                                           (parse(pg_url).queue,))}


@pytest.mark.parametrize("by", ["owner", "watcher"])
def test_a_claim_given_back_unstarted_writes_no_snapshot(engine: PgEngine, pg_url: str,
                                                         by: str) -> None:
    """Its row says all of its state, as a new job's does; a job given back after a failed
    attempt (errors to keep) still gets one. Read back, both are what was written."""
    engine.append(frames(["a", "b"]))
    _, claims = engine.settle([], "w/1", 2)
    given_back = (lambda s, now, m: transitions.released(s, now))
    failed = (lambda s, now, m: transitions.failed(s, "boom", now, max_attempts=m,
                                                   retry_delay=0.0))
    settler = engine if by == "owner" else open_url(pg_url)  # a watcher: the locking path
    try:
        states, _ = settler.settle([(claims[0].job_id, claims[0].token, given_back),
                                    (claims[1].job_id, claims[1].token, failed)], "w/1", 0)
    finally:
        if settler is not engine:
            settler.close()
    assert _snapshots(pg_url) == {claims[1].job_id}
    for state in states:
        assert state is not None and engine.get(state.job_id) == state
    released = engine.get(claims[0].job_id)
    assert released.status is Status.QUEUED and released.attempts == 0 and not released.errors
    _, again = engine.settle([], "w/1", 2)
    assert {c.job_id for c in again} == {"a", "b"}
    assert [c.state.errors for c in again if c.job_id == claims[1].job_id] == [["boom"]]
