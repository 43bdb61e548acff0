"""The settle's writes in statements of many rows (jobq.local.settle, jobq.local.snapshots):
each job's row and snapshot end as they would one statement a job."""

from __future__ import annotations

import dataclasses

import pytest

from jobq import Queue, Status, transitions
from jobq.local import settle, snapshots

from jobtasks import add


def _succeed(state, now, max_attempts):
    return transitions.succeeded(state, None, now)


def _fail(state, now, max_attempts):
    return transitions.failed(state, "boom", now, max_attempts=max_attempts, retry_delay=30.0)


def _result(state, now, max_attempts):
    return transitions.succeeded(state, state.job_id, now)


@pytest.mark.parametrize("key", [None, b"k" * 32], ids=["unsigned", "signed"])
def test_a_batch_of_snapshots_is_written_over_each_jobs_own_row(tmp_path, key):
    """250 jobs settled at once (two statements of 100 rows and 50 one by one): each job's
    snapshot replaces its marker in the same ``Dict`` row, under its UTF-8 id as a blob, and
    the shelf reads it back."""
    with Queue(tmp_path / "q", secret_key=key) as q:
        ids = [q.enqueue(add, i, i) for i in range(249)]
        ids.append(q.enqueue_call(add, (1, 1), job_id="é-1"))
        q.store.catch_up()
        conn, shelf = q.store.conn, q.store.shelf
        before = dict(conn.execute("SELECT key, rowid FROM Dict"))
        claims = q.store.settle([], "w", 250)[1]
        changes = [_succeed if i % 3 else _result for i in range(len(claims))]
        states = q.store.settle([(c.job_id, c.token, change) for c, change in
                                  zip(claims, changes)], "w", 0)[0]
        rows = conn.execute("SELECT key, typeof(key), typeof(value), rowid FROM Dict").fetchall()
        assert sorted(rows) == sorted((j.encode(), "blob", "blob", before[j.encode()])
                                      for j in ids)
        for state in states:
            stored = shelf[state.job_id]
            if state.result is None:
                assert snapshots.is_plain(stored)
            else:
                assert stored == state
            assert q.state(state.job_id) == state


def test_a_snapshot_whose_row_is_missing_is_inserted(queue):
    """Every indexed job has a ``Dict`` row; should one be missing, the write inserts it."""
    jid = queue.enqueue(add, 1, 2)
    queue.store.catch_up()
    claim = queue.store.claim("w")[0]
    queue.store.conn.execute("DELETE FROM Dict WHERE key = ?", (jid.encode(),))
    state = queue.store.finish(jid, claim.token, _result)
    assert queue.store.shelf[jid] == state
    assert queue.store.conn.execute("SELECT COUNT(*) FROM Dict").fetchone() == (1,)


def test_jobs_given_different_values_each_get_their_own(queue):
    """One statement per set of jobs given the same values, the others one by one: every job
    ends with its own status, attempts, run time and snapshot."""
    ids = [queue.enqueue(add, i, i) for i in range(7)]
    queue.store.catch_up()
    claims = queue.store.settle([], "w", 7)[1]
    changes = [_succeed, _succeed, _fail, _succeed, _result, _fail, _succeed]
    queue.store.settle([(c.job_id, c.token, ch) for c, ch in zip(claims, changes)], "w", 0)
    got = {j: queue.state(j) for j in ids}
    for claim, change in zip(claims, changes):
        state = got[claim.job_id]
        expected = {_succeed: Status.SUCCEEDED, _result: Status.SUCCEEDED,
                    _fail: Status.FAILED}[change]
        assert state.status is expected
        assert state.attempts == 1
        assert state.result == (claim.job_id if change is _result else None)
        assert (state.run_at > claim.state.run_at + 29) is (change is _fail)
    row = "SELECT status, snap FROM jobs WHERE job_id = ?"
    assert [queue.store.conn.execute(row, (c.job_id,)).fetchone() for c in claims] == [
        ("succeeded", 2), ("succeeded", 2), ("failed", 1), ("succeeded", 2), ("succeeded", 1),
        ("failed", 1), ("succeeded", 2)]


def test_a_job_listed_twice_is_written_in_order(queue):
    """write_transitions given the same job twice writes both, the last one last (as one
    statement a job did), even where its last values are those of another job of the batch."""
    ids = [queue.enqueue(add, 1, 2) for _ in range(2)]
    queue.store.catch_up()
    a, b = [dataclasses.replace(c.state, run_at=0.0) for c in queue.store.claim("w", 2)]
    first = transitions.failed(a, "boom", 20.0, max_attempts=3, retry_delay=5.0)
    a_done, b_done = (transitions.succeeded(s, None, 20.0) for s in (a, b))
    store = queue.store
    with store.transaction() as conn:
        rows = {r[0]: r for r in conn.execute("SELECT job_id, priority, seq FROM jobs")}
        settle.write_transitions(conn, store.shelf, [(first, rows[a.job_id], None),
                                                     (b_done, rows[b.job_id], None),
                                                     (a_done, rows[a.job_id], None)],
                                 20.0, Status.RUNNING)
    assert [queue.state(j).status for j in ids] == [Status.SUCCEEDED, Status.SUCCEEDED]
    assert snapshots.is_plain(store.shelf[a.job_id])
