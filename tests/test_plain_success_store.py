"""Store schema 7: a plain success is stored as a compact tuple (``jobs.snap`` 2), not a whole
pickled JobState; it reads back as the state its settle made, survives a rebuild of lost index
tables without running again, verifies, re-signs; a schema-6 store is upgraded on open and a
jobq of schema 6 refuses a schema-7 one (jobq.local.snapshots)."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from jobq import JobState, Queue, Status, pickling, transitions
from jobq.errors import StorageError
from jobq.local import snapshots, state_db
from jobq.local.shelf import SIGNED_MAGIC
from jobq.maintenance import backup, compact, purge, rekey, verify
from jobq.testing import run_burst

GOLDEN = Path(__file__).parent / "golden"
NONE = "jobtasks:record_call"  # returns its argument: None makes a plain success
KEY_A, KEY_B = "key-A-0123456789abcdef", "key-B-0123456789abcdef"


def succeed(result: Any = None) -> Callable[[JobState, float, int], JobState]:
    return lambda state, now, max_attempts: transitions.succeeded(state, result, now)


def _snaps(q: Queue) -> dict[str, int]:
    with q.store.reading():
        return dict(q.store.conn.execute("SELECT job_id, snap FROM jobs"))


def _stored(q: Queue, job_id: str) -> Any:
    """The job's shelf value, decoded (verified first when the queue is signed)."""
    with q.store.reading():
        return q.store.shelf[job_id]


def test_a_plain_success_is_stored_as_its_tuple_and_read_back_whole(qpath: Path) -> None:
    """Settled by the process that claimed it (state made before the lock) or by another (made
    in the transaction), a success without a result, errors or checkpoint keeps a 66-byte tuple;
    one with a result, or after a checkpoint, keeps its whole snapshot."""
    with Queue(qpath) as q, Queue(qpath) as other:
        for job_id in ("plain", "elsewhere", "result", "saved"):
            q.enqueue_call(NONE, (None,), job_id=job_id)
        claims = {c.job_id: c for c in q.store.claim("w", 4)}
        q.store.save_checkpoint("saved", claims["saved"].token, 3, 0.5)
        changes = {"plain": succeed(), "result": succeed({"n": 1}), "saved": succeed()}
        states, _ = q.store.settle([(j, claims[j].token, c) for j, c in changes.items()], "w", 0)
        made = {s.job_id: s for s in states if s is not None}
        made["elsewhere"] = other.store.finish("elsewhere", claims["elsewhere"].token, succeed())
        assert _snaps(q) == {"plain": 2, "elsewhere": 2, "result": 1, "saved": 1}
        for job_id in ("plain", "elsewhere"):
            state = made[job_id]
            assert _stored(q, job_id) == ("succeeded", 1, 1.0, state.run_at, False,
                                          state.started_at, state.finished_at)
            assert len(q.store.shelf.raw(job_id)) < 80
            assert state.finished_at == state.updated_at is not None and state.result is None
        assert isinstance(_stored(q, "result"), JobState)
        assert isinstance(_stored(q, "saved"), JobState)
    with Queue(qpath) as fresh:  # a new connection reads what was stored, not a cache
        for job_id, state in made.items():
            assert fresh.state(job_id) == state, job_id
        assert fresh.state("saved").checkpoint == 3 and fresh.result("result") == {"n": 1}
        assert fresh.counts()["succeeded"] == 4


def test_a_worker_stores_plain_successes_and_a_retried_success_whole(qpath: Path) -> None:
    """Jobs run by a real worker child: a no-op's success is plain; one after a failed attempt
    keeps its errors in a whole snapshot."""
    with Queue(qpath) as q:
        retried = q.enqueue(NONE, None)
        first, = q.store.claim("w", 1)
        q.store.finish(retried, first.token, lambda s, now, m: transitions.failed(
            s, "boom", now, max_attempts=m, retry_delay=0))
        plain = q.enqueue_many(NONE, [(None,)] * 5)
        assert run_burst(q) == 6
        snaps = _snaps(q)
        assert [snaps[j] for j in plain] == [2] * 5 and snaps[retried] == 1
        assert all(q.state(j).status is Status.SUCCEEDED for j in [*plain, retried])
        assert q.state(retried).errors == ["boom"] and q.state(retried).attempts == 2
        report = verify(q)
        assert report.ok and report.snapshots_ok == 6


@pytest.mark.parametrize("drop", ["jobs-emptied", "all-index-tables"])
def test_lost_index_tables_keep_plain_successes_finished_and_whole(qpath: Path,
                                                                  drop: str) -> None:
    """A rebuild from the log and the shelf makes a plain success's row again from its tuple:
    the job stays succeeded with its times and attempts, and never runs again."""
    with Queue(qpath) as q:
        plain = q.enqueue_many(NONE, [(None,)] * 3)
        result = q.enqueue("jobtasks:add", 1, 2)
        run_burst(q)
        queued = q.enqueue("jobtasks:add", 3, 4)
        before = {j: q.state(j) for j in [*plain, result]}
    statements = {"jobs-emptied": ["DELETE FROM jobs"],
                  "all-index-tables": ["DROP TABLE jobs", "DROP TABLE ready",
                                       "DROP TABLE scheduled", "DROP TABLE meta"]}[drop]
    with closing(sqlite3.connect(qpath / "state.sqlite3")) as conn:
        for statement in statements:
            conn.execute(statement)
        conn.commit()
    with capture_logs() as events, Queue(qpath) as q:
        assert [e for e in events if e["event"] == "store.index_rebuilt"]
        assert {j: q.state(j) for j in before} == before
        assert all(_snaps(q)[j] == 2 for j in plain)
        assert run_burst(q) == 1 and q.result(queued) == 7  # only the queued job ran
        assert all(q.state(j).attempts == 1 for j in plain)


def test_a_damaged_plain_success_fails_verify_and_stops_a_rebuild(qpath: Path) -> None:
    """A tuple that is not a plain success's is reported by verify, and a rebuild that would
    need it stops naming the job instead of guessing its state."""
    with Queue(qpath) as q:
        job_id = q.enqueue(NONE, None)
        run_burst(q)
        assert verify(q).ok
        bad = pickling.dumps(("succeeded", "one", 1.0, 0.0, False, 0.0, 0.0))
        with q.store.transaction() as conn:
            conn.execute("UPDATE Dict SET value = ? WHERE key = ?", (bad, job_id.encode()))
        report = verify(q)
        assert not report.ok and report.snapshots_failed == 1
        with q.store.transaction() as conn:
            conn.execute("DELETE FROM jobs")
    with pytest.raises(StorageError, match=f"snapshot of job '{job_id}'.*wrong types"):
        Queue(qpath)


def test_backup_compaction_and_purge_keep_or_drop_a_plain_success_whole(qpath: Path,
                                                                         tmp_path: Path) -> None:
    """A backup holds plain successes as they were; a compaction of the purged jobs' segments keeps
    their states; a purge takes their rows and tuples both."""
    with Queue(qpath, segment_size=4096) as q:  # a few records a segment: compaction has work
        old = q.enqueue_many(NONE, [("x" * 500,)] * 12)
        run_burst(q)
        assert purge(q, statuses=[Status.SUCCEEDED], older_than=0) == 12
        plain = q.enqueue_many(NONE, [(None,)] * 12)
        run_burst(q)
        states = {j: q.state(j) for j in plain}
        report = compact(q)
        assert report.segments_rewritten + report.segments_deleted > 0
        assert {j: q.state(j) for j in plain} == states
        with q.store.reading():
            keys = {k.decode() for k, in q.store.conn.execute("SELECT key FROM Dict")}
        assert keys == set(plain) and not keys & set(old)
        backup(q, tmp_path / "copy")
    with Queue(tmp_path / "copy") as copy:
        assert {j: copy.state(j) for j in plain} == states and _snaps(copy) == dict.fromkeys(
            plain, 2)
        assert verify(copy).ok


def test_a_signed_queue_signs_the_tuple_and_rekey_resigns_it(qpath: Path) -> None:
    """With a secret key the tuple is signed like any snapshot: verify checks it, and rekey
    re-signs it with the new key."""
    with Queue(qpath, secret_key=KEY_A) as q:
        job_id = q.enqueue(NONE, None)
        run_burst(q)
        raw = q.store.shelf.raw(job_id)
        assert raw[:4] == SIGNED_MAGIC and _snaps(q)[job_id] == 2
        assert snapshots.is_plain(_stored(q, job_id)) and verify(q).ok
        state = q.state(job_id)
    with Queue(qpath, secret_key=KEY_B, old_secret_keys=[KEY_A]) as q:
        assert q.store.shelf.signer(job_id, q.store.shelf.raw(job_id)) == 1
        assert rekey(q).snapshots_resigned == 1
    with Queue(qpath, secret_key=KEY_B) as q:
        assert q.store.shelf.signer(job_id, q.store.shelf.raw(job_id)) == 0
        assert q.state(job_id) == state and verify(q).ok


def test_a_store_schema_6_queue_opens_upgraded_and_keeps_its_whole_snapshots(
        golden_store: Callable[[int], Path]) -> None:
    """golden/queue_store6.md: its successes keep their whole snapshots and read as before;
    the jobs run after the upgrade store plain successes."""
    root = golden_store(6)
    with Queue(root) as q:
        assert q.store.conn.execute("PRAGMA user_version").fetchone()[0] == 7
        assert q.result("succeeded") == 5 and q.state("succeeded-none").result is None
        none = q.state("succeeded-none")
        assert none.finished_at is not None and none.finished_at == none.updated_at
        assert _snaps(q)["succeeded-none"] == 1 and isinstance(_stored(q, "succeeded-none"),
                                                               JobState)
        new = q.enqueue(NONE, None)
        run_burst(q)
        assert q.result("queued") == 42 and q.result("waiting") == 3
        assert _snaps(q)[new] == 2 and q.state(new).status is Status.SUCCEEDED
        assert verify(q).ok


def test_a_jobq_of_store_schema_6_refuses_a_schema_7_file(
        golden_store: Callable[[int], Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """It would read a plain success's tuple as a JobState: it says to upgrade instead."""
    root = golden_store(6)
    Queue(root).close()
    monkeypatch.setattr(state_db, "STORE_SCHEMA", 6)
    with pytest.raises(StorageError, match="has store schema 7; this jobq knows 6: upgrade jobq"):
        Queue(root)


def test_the_golden_schema_7_store_reads_and_rebuilds(tmp_path: Path) -> None:
    """golden/queue_store7.md, written by the code that made schema 7: its plain successes read
    back whole, before and after a rebuild of its index, and its queued jobs run."""
    root = tmp_path / "q"
    shutil.copytree(GOLDEN / "queue_store7", root)
    with Queue(root) as q:
        assert _snaps(q)["plain"] == 2 and _snaps(q)["saved"] == 1
        states = {j: q.state(j) for j in ("plain", "plain-2", "result", "saved", "dead")}
        plain = states["plain"]
        assert (plain.status, plain.attempts, plain.result, plain.progress) == (
            Status.SUCCEEDED, 1, None, 1.0)
        assert plain.finished_at == plain.updated_at and plain.started_at is not None
        assert states["saved"].checkpoint == 3 and states["result"].result == 5
        q.store.rebuild_index()
        assert {j: q.state(j) for j in states} == states
        assert run_burst(q) == 1 and q.result("queued") == 42
