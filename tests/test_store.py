"""The state store: claim order, fencing, the index catching up from several processes."""

from __future__ import annotations

import json
import sqlite3

import pytest

from jobq import Queue, Status, transitions
from jobq.errors import StaleClaim

from jobtasks import add


def test_claim_takes_priority_then_age_and_marks_running(queue):
    """Claims come out highest priority first, oldest first within it, each running and fenced."""
    ids = [queue.enqueue_call(add, args=(i, i), priority=p) for i, p in enumerate([0, 2, 1, 2])]
    claims = queue.store.claim("w1", limit=10)
    assert [c.job_id for c in claims] == [ids[1], ids[3], ids[2], ids[0]]
    assert all(c.state.status is Status.RUNNING and c.state.attempts == 1 for c in claims)
    assert queue.counts()["running"] == 4 and queue.store.claim("w2") == []


def test_stale_claim_cannot_write(queue):
    """After a job is re-claimed, the old claim's token is refused for checkpoints and results."""
    jid = queue.enqueue(add, 1, 2)
    old = queue.store.claim("w1")[0]
    # Put the job back (as lease expiry will in the worker runtime) and claim it again.
    queue.store.finish(jid, old.token, lambda s, now, m: transitions.failed(
        s, "lost", now, max_attempts=m, retry_delay=0))
    new = queue.store.claim("w2")[0]
    assert new.token > old.token and new.state.attempts == 2
    with pytest.raises(StaleClaim):
        queue.store.save_checkpoint(jid, old.token, "late", 0.5)
    with pytest.raises(StaleClaim):
        queue.store.finish(jid, old.token, lambda s, now, m: transitions.succeeded(s, 1, now))
    queue.store.finish(jid, new.token, lambda s, now, m: transitions.succeeded(s, 3, now))
    assert queue.result(jid) == 3
    with pytest.raises(StaleClaim):  # a finished job takes no more writes from anyone
        queue.store.finish(jid, new.token, lambda s, now, m: transitions.succeeded(s, 4, now))


def test_checkpoint_is_durable_and_progress_never_goes_back(queue):
    """save_checkpoint stores the object and keeps the highest progress seen."""
    jid = queue.enqueue(add, 1, 2)
    claim = queue.store.claim("w")[0]
    queue.store.save_checkpoint(jid, claim.token, {"row": 10}, 0.5)
    queue.store.save_checkpoint(jid, claim.token, {"row": 11}, 0.3)
    with Queue(queue.path) as other:  # another process's view, through a fresh connection
        state = other.state(jid)
    assert state.checkpoint == {"row": 11} and state.progress == 0.5


def test_cancelling_a_running_job_sets_the_flag(queue):
    """Cancel of a running job asks it to stop; it stays running until its worker ends it."""
    jid = queue.enqueue(add, 1, 2)
    queue.store.claim("w")
    assert queue.cancel(jid) is True
    assert queue.state(jid).status is Status.RUNNING and queue.state(jid).cancel_requested
    assert queue.store.cancel_requested(jid)


def test_a_cancel_request_for_a_claimed_job_changes_the_cancel_generation(queue):
    """Workers poll the generation before each job they hold, and read the cancelled claims
    (with their tokens) only when it changed: every request for a claimed job changes it."""
    held, waiting = queue.enqueue(add, 1, 2), queue.enqueue(add, 3, 4)
    claim, = queue.store.claim("w/1", 1)
    before = queue.store.cancel_generation()
    assert queue.cancel(waiting) and queue.store.cancel_generation() == before  # not claimed
    assert queue.store.cancelling("w") == set()
    with Queue(queue.path) as other:  # another process's view: same file, its own descriptor
        assert other.cancel(held)
    assert claim.job_id == held and queue.store.cancel_generation() != before
    assert queue.store.cancelling("w") == {(held, claim.token)}


def test_due_jobs_are_promoted_in_run_at_order(qpath):
    """Delayed jobs become claimable when due, earliest first, whatever their number."""
    now = [100.0]
    with Queue(qpath, clock=lambda: now[0]) as q:
        ids = [q.enqueue_call(add, args=(i, 0), delay=d) for i, d in enumerate([30, 10, 20])]
        q.enqueue_many(add, [(0, 0)] * 500, delay=1000)
        assert q.store.claim("w", 10) == []
        now[0] += 25
        assert [c.job_id for c in q.store.claim("w", 10)] == [ids[1], ids[2]]
        now[0] += 10
        assert [c.job_id for c in q.store.claim("w", 10)] == [ids[0]]


def test_ready_lookup_uses_the_index_not_a_scan(queue):
    """The next-job query is an index seek on ready, never a scan of jobs (cost does not grow)."""
    conn = queue.store.conn
    plan = " ".join(row[-1] for row in conn.execute(
        "EXPLAIN QUERY PLAN SELECT neg_priority, seq, job_id FROM ready"
        " ORDER BY neg_priority, seq LIMIT 32"))
    assert "SCAN ready" in plan and "TEMP B-TREE" not in plan  # walks the primary key in order
    plan = " ".join(row[-1] for row in conn.execute(
        "EXPLAIN QUERY PLAN SELECT run_at, seq FROM scheduled WHERE run_at <= 5"
        " ORDER BY run_at, seq LIMIT 10"))
    assert "SEARCH scheduled USING PRIMARY KEY (run_at<?)" in plan


def test_several_indexers_at_once_index_each_record_once(queue, children):
    """Processes that all catch up the index while producers append agree on every job."""
    producer = ("import sys, json; from jobq import Queue; q = Queue(sys.argv[1]);"
                "print(json.dumps([q.enqueue('jobtasks:add', 1, i) for i in range(500)]))")
    reader = ("import sys; from jobq import Queue; q = Queue(sys.argv[1]);"
              "[q.counts() for _ in range(300)]; print(q.counts()['queued'])")
    procs = [children.start(producer, queue.path) for _ in range(2)]
    readers = [children.start(reader, queue.path) for _ in range(3)]
    ids = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        ids += json.loads(out)
    for proc in readers:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert queue.counts()["queued"] == 1000
    assert sorted(s.job_id for s in queue.jobs()) == sorted(ids)
    conn = sqlite3.connect(f"file:{queue.store._qdir.state_db}?mode=ro", uri=True)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT COUNT(*) FROM ready").fetchone()[0] == 1000
    conn.close()


def test_a_late_result_for_a_purged_job_does_not_lose_the_batch(queue):
    """settle records the other results of a batch when one job was purged meanwhile."""
    from jobq.maintenance import purge
    a, b = queue.enqueue(add, 1, 1), queue.enqueue(add, 2, 2)
    claims = {c.job_id: c for c in queue.store.claim("w", 2)}
    queue.store.finish(a, claims[a].token, lambda s, now, m: transitions.succeeded(s, 2, now))
    assert purge(queue, statuses=[Status.SUCCEEDED], older_than=0, now=queue.store._clock() + 1) == 1
    states, _ = queue.store.settle(
        [(a, claims[a].token, lambda s, now, m: transitions.succeeded(s, 2, now)),
         (b, claims[b].token, lambda s, now, m: transitions.succeeded(s, 4, now))], "w", 0)
    assert states[0] is None and states[1].status is Status.SUCCEEDED
    assert queue.result(b) == 4


def test_a_checkpoint_builds_on_a_snapshot_another_process_wrote_since(queue):
    """A process remembers the snapshot of its last checkpoint, but uses it only while the job's
    row says nobody wrote another since (same claim, same updated_at)."""
    from jobq.local import snapshots

    jid = queue.enqueue("jobtasks:add", 1, 2)
    claim = queue.store.claim("w/1", 1)[0]
    queue.store.save_checkpoint(jid, claim.token, "first", 0.25)
    queue.store.save_checkpoint(jid, claim.token, "second", None)  # from the remembered one
    assert (queue.state(jid).checkpoint, queue.state(jid).progress) == ("second", 0.25)
    with Queue(queue.path) as other:
        elsewhere = other.state(jid)
        elsewhere.errors = ["written elsewhere"]
        with other.store.transaction() as conn:
            snapshots.store_one(conn, other.store.shelf, elsewhere)
            conn.execute("UPDATE jobs SET updated_at = updated_at + 1 WHERE job_id = ?", (jid,))
    queue.store.save_checkpoint(jid, claim.token, "third", 0.5)
    state = queue.state(jid)
    assert (state.checkpoint, state.progress, state.errors) == ("third", 0.5, ["written elsewhere"])
    assert state.attempts == 1 and state.status.value == "running"


# -- finished jobs prepared before the write lock (Settler._prepare) ---------------------------


def _succeeded(result=None):
    return lambda s, now, m: transitions.succeeded(s, result, now)


def _snapshot_bytes(queue, job_id):
    return queue.store.shelf.raw(job_id)


@pytest.mark.parametrize("now", [1000.0, 1000])
def test_a_prepared_finish_stores_what_the_transaction_would_have(tmp_path, now):
    """A job finished by the process that claimed it (its state and snapshot made before the
    lock) ends with the same state and the same snapshot bytes as one recorded the long way;
    its claim's state is the job's state as read back (times as floats, whatever the clock)."""
    states = []
    for name, forget in (("prepared", False), ("in_transaction", True)):
        with Queue(tmp_path / name, clock=lambda: now) as q:
            q.enqueue_call(add, args=(1, 2), job_id="job-1")
            claim = q.store.claim("w")[0]
            read = q.state("job-1")
            assert list(claim.state.__dict__.items()) == list(read.__dict__.items())
            assert type(claim.state.started_at) is type(claim.state.updated_at) is float
            if forget:
                q.store._fresh_claims.clear()
            else:
                assert (claim.job_id, claim.token) in q.store._fresh_claims
            finished, _ = q.store.settle([(claim.job_id, claim.token, _succeeded(3))], "w", 0)
            assert not q.store._fresh_claims
            states.append((finished[0], q.state("job-1"), _snapshot_bytes(q, "job-1")))
    assert states[0] == states[1]
    assert states[0][1].status is Status.SUCCEEDED and states[0][1].result == 3


def test_a_prepared_finish_is_dropped_when_the_row_changed_meanwhile(queue):
    """A cancel asked while the job ran changes its row: the finish is made again in the
    transaction from the row as it is, and the job ends cancelled, not succeeded."""
    from jobq.execution import Outcome, change_for

    jid = queue.enqueue(add, 1, 2)
    claim = queue.store.claim("w")[0]
    assert (jid, claim.token) in queue.store._fresh_claims  # so the finish is prepared
    assert queue.cancel(jid) is True
    change = change_for(Outcome("succeeded", result=3), lambda attempt: 0.0)
    states, _ = queue.store.settle([(jid, claim.token, change)], "w", 0)
    assert states[0].status is Status.CANCELLED
    assert queue.state(jid).status is Status.CANCELLED


def test_only_the_latest_claims_are_remembered_and_earlier_ones_finish_all_the_same(queue):
    """The rows kept to prepare finishes outside the lock are the latest claim's alone, so they
    never grow with claims that are not finished here; a job of an earlier claim is recorded
    the long way, with the same result."""
    ids = queue.enqueue_many(add, [(i, i) for i in range(12)])
    batches = [queue.store.claim("w", 4) for _ in range(3)]
    assert set(queue.store._fresh_claims) == {(c.job_id, c.token) for c in batches[-1]}
    queue.store.settle([], "w", 0)  # finishing only (nothing claimed) forgets nothing
    assert len(queue.store._fresh_claims) == 4
    finished = [(c.job_id, c.token, _succeeded(c.job_id)) for batch in batches for c in batch]
    states, _ = queue.store.settle(finished, "w", 0)
    assert [s.status for s in states] == [Status.SUCCEEDED] * 12
    assert [queue.result(j) for j in ids] == ids and not queue.store._fresh_claims


def test_a_checkpoint_forgets_the_prepared_basis_even_on_a_frozen_clock(qpath):
    """A job that saved a checkpoint has a snapshot: its finish loads it (even when the clock did
    not move, so the row's updated_at cannot tell), and the checkpoint is kept."""
    with Queue(qpath, clock=lambda: 500.0) as q:
        jid = q.enqueue(add, 1, 2)
        claim = q.store.claim("w")[0]
        q.store.save_checkpoint(jid, claim.token, {"step": 7}, None)
        assert (jid, claim.token) not in q.store._fresh_claims
        q.store.finish(jid, claim.token, _succeeded())
        state = q.state(jid)
    assert state.status is Status.SUCCEEDED and state.checkpoint == {"step": 7}


def test_a_prepared_finish_of_a_stale_claim_records_nothing(queue):
    """The claim check comes first: a prepared finish whose claim was taken over records nothing
    and leaves the new attempt alone."""
    jid = queue.enqueue(add, 1, 2)
    old = queue.store.claim("w1")[0]
    with queue.store.transaction() as conn:  # its lease ran out and another worker took it
        conn.execute("UPDATE jobs SET status = 'queued' WHERE job_id = ?", (jid,))
        conn.execute("INSERT INTO ready SELECT -priority, seq, job_id FROM jobs WHERE job_id = ?",
                     (jid,))
    new = queue.store.claim("w2")[0]
    states, _ = queue.store.settle([(jid, old.token, _succeeded(1))], "w1", 0)
    assert states == [None]
    assert queue.state(jid).status is Status.RUNNING and queue.store.row(jid)["owner"] == "w2"
    queue.store.finish(jid, new.token, _succeeded(2))
    assert queue.result(jid) == 2


def test_a_prepared_finish_that_cannot_be_pickled_fails_as_before(queue):
    """An unpicklable result is refused by the transaction, as without the preparation."""
    from jobq.errors import NotPicklable

    jid = queue.enqueue(add, 1, 2)
    claim = queue.store.claim("w")[0]
    with pytest.raises(NotPicklable):
        queue.store.finish(jid, claim.token, _succeeded(lambda: None))
    assert queue.state(jid).status is Status.RUNNING  # nothing was recorded
    queue.store.finish(jid, claim.token, _succeeded(5))
    assert queue.result(jid) == 5


@pytest.mark.parametrize("key", [None, "key-A-0123456789abcdef"], ids=["unsigned", "signed"])
def test_a_job_just_indexed_has_its_marker_under_its_id_as_bytes(qpath, key):
    """The index gives each new job the marker its codec makes, stored under the UTF-8 of its
    id as a blob (as the shelf's own writes store keys), so the shelf finds it."""
    with Queue(qpath, secret_key=key) as q:
        ids = [q.enqueue(add, i, i) for i in range(3)] + [q.enqueue_call(add, (1, 1), job_id="é-1")]
        q.store.catch_up()
        rows = q.store.conn.execute("SELECT key, typeof(key), value FROM Dict").fetchall()
        assert sorted(rows) == sorted((j.encode(), "blob", q.store.shelf.encode_marker(j))
                                      for j in ids)
        assert all(q.store.shelf.raw(j) == q.store.shelf.encode_marker(j) for j in ids)
        assert all(q.store.shelf[j] is None for j in ids)
