"""The WAL given its working size up front: commits still survive crashes, and workers do it."""

from __future__ import annotations

import os
import signal
import sqlite3
import textwrap
from pathlib import Path

from conftest import wait_until

from jobq import Queue, Status
from jobq.local import wal


def _wal_size(queue: Queue) -> int:
    return os.path.getsize(wal.path_of(os.path.join(queue.path, "state.sqlite3")))


def test_presize_extends_the_wal_once_and_the_store_still_works(queue):
    jid = queue.enqueue("jobtasks:add", 1, 2)
    claim = queue.store.claim("w/1", 1)[0]  # a write: SQLite has made its WAL
    with queue.store.transaction() as conn:
        target = wal.working_size(conn)
    assert target == 32 + 1000 * (4096 + 24)  # SQLite's defaults: autocheckpoint at 1000 frames
    before = _wal_size(queue)
    assert before < target

    assert queue.store.presize_wal() == target - before
    assert _wal_size(queue) == target
    assert queue.store.presize_wal() == 0  # done: one stat from now on
    queue.store.save_checkpoint(jid, claim.token, "after", 0.5)
    assert queue.state(jid).checkpoint == "after"
    assert _wal_size(queue) == target  # the commit overwrote zeros: the file did not grow


def test_presize_never_creates_a_wal(tmp_path: Path):
    db = tmp_path / "plain.sqlite3"
    assert not wal.needs_presize(str(db), 1 << 20)
    assert wal.presize(str(db), 1 << 20) == 0
    assert not Path(wal.path_of(str(db))).exists()


_SAVE_THEN_DIE = textwrap.dedent("""
    import os, signal, sys
    from jobq import Queue
    q = Queue(sys.argv[1])
    ids = q.enqueue_many("jobtasks:add", [(i, i) for i in range(4)])
    claims = q.store.claim("w/1", 4)
    assert q.store.presize_wal() > 0
    saves = int(sys.argv[2])
    for i in range(saves):  # more frames than the WAL holds: SQLite checkpoints and reuses it
        c = claims[i % len(claims)]
        q.store.save_checkpoint(c.job_id, c.token, {"save": i}, None)
    print(" ".join(f"{c.job_id}:{c.token}" for c in claims), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_commits_over_the_zeros_survive_sigkill(children, qpath: Path):
    """A process that presized the WAL, committed past its end and around again, then died:
    every commit is there when the queue is reopened, and the database is intact."""
    saves = 1_300  # two frames each: more than the 1,000 frames of the presized WAL
    proc = children.run(_SAVE_THEN_DIE, str(qpath), str(saves), timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    claims = [item.split(":") for item in proc.stdout.splitlines()[-1].split()]
    assert Path(wal.path_of(str(qpath / "state.sqlite3"))).exists()  # died without a checkpoint
    with Queue(qpath) as q:
        assert q.store.conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        last = {claims[i % 4][0]: i for i in range(saves)}
        for job_id, token in claims:
            state = q.state(job_id)
            assert state.status is Status.RUNNING and state.checkpoint == {"save": last[job_id]}
            q.store.save_checkpoint(job_id, int(token), "again", None)  # and it goes on working
            assert q.state(job_id).checkpoint == "again"


def test_commits_into_a_presized_wal_survive_sigkill_before_any_checkpoint(children, qpath: Path):
    proc = children.run(_SAVE_THEN_DIE, str(qpath), "50", timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    claims = [item.split(":") for item in proc.stdout.splitlines()[-1].split()]
    with Queue(qpath) as q:
        assert q.store.conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        last = {claims[i % 4][0]: i for i in range(50)}
        assert {job_id: q.state(job_id).checkpoint for job_id, _ in claims} == \
            {job_id: {"save": i} for job_id, i in last.items()}


def test_a_worker_presizes_the_wal_while_its_children_run(queue, workers, tmp_path: Path):
    markers = tmp_path / "markers"
    markers.mkdir()
    jid = queue.enqueue("jobtasks:slow_steps", 40, 0.05, str(markers))
    worker = workers(queue.path)
    wait_until(lambda: (queue.state(jid).checkpoint or 0) >= 1)
    with queue.store.transaction() as conn:
        target = wal.working_size(conn)
    wait_until(lambda: _wal_size(queue) >= target, timeout=10)  # the job is still running
    # Logged once the zeros are durable: a moment after the size is reached.
    wait_until(lambda: worker.events("store.wal_presized"), timeout=10)
    assert queue.wait(jid, timeout=30).status is Status.SUCCEEDED


def test_sqlite_reads_a_zero_filled_wal_as_empty(tmp_path: Path):
    """What the module relies on, checked against the SQLite this Python has: zeros after the
    last frame (or instead of any frame) are not frames."""
    db = tmp_path / "z.sqlite3"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = wal")
    conn.execute("CREATE TABLE t (v)")
    conn.execute("INSERT INTO t VALUES (1)")
    with open(wal.path_of(str(db)), "ab") as f:
        f.write(b"\0" * (3 * (4096 + 24)))
    copy = tmp_path / "copy.sqlite3"  # a process that died: another opens its files afresh
    for suffix in ("", "-wal"):
        Path(f"{copy}{suffix}").write_bytes(Path(f"{db}{suffix}").read_bytes())
    reopened = sqlite3.connect(copy, isolation_level=None)
    assert reopened.execute("SELECT v FROM t").fetchall() == [(1,)]
    assert reopened.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    reopened.close()


def _growing(tmp_path: Path, autocheckpoint: int = 1000) -> tuple[sqlite3.Connection, str]:
    db = str(tmp_path / "g.sqlite3")
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = wal")
    conn.execute(f"PRAGMA wal_autocheckpoint = {autocheckpoint}")
    conn.execute("CREATE TABLE t (v)")
    return conn, db


def _commit(conn: sqlite3.Connection, growth: wal.Growth, value: int) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO t VALUES (?)", (value,))
    growth.extend(conn)
    conn.execute("COMMIT")


def test_commits_keep_a_short_wal_a_step_ahead(tmp_path: Path):
    """Each commit's frames land on zeros written before it: the file grows by whole steps
    (64 KiB, then doubling), each once the commits have used up the step before."""
    conn, db = _growing(tmp_path)
    growth = wal.Growth(db)
    start = os.path.getsize(wal.path_of(db))
    sizes = []
    for i in range(60):  # a frame each: 60 frames, about 240 KiB
        _commit(conn, growth, i)
        sizes.append(os.path.getsize(wal.path_of(db)))
    steps = [b - a for a, b in zip([start, *sizes], sizes) if b != a]
    assert steps[0] == wal.FIRST_STEP  # the first commit wrote into zeros
    # Between steps, one commit writes past the zeros (the file grows by its frame), and the
    # next one adds the next step, twice as long.
    whole_steps = [step for step in steps if step >= wal.FIRST_STEP]
    assert whole_steps == [64 << 10, 128 << 10, 256 << 10]
    assert len(steps) <= 2 * len(whole_steps)  # not 60 growths, one per commit
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone() == (60,)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert not growth.whole
    conn.close()


def test_growth_stops_once_the_wal_has_its_working_size(tmp_path: Path):
    conn, db = _growing(tmp_path, autocheckpoint=10)  # working size: 10 frames, about 40 KiB
    growth = wal.Growth(db)
    _commit(conn, growth, 0)
    assert os.path.getsize(wal.path_of(db)) == wal.working_size(conn)  # a step, cut at it
    assert not growth.whole
    _commit(conn, growth, 1)
    assert growth.whole  # from now on, one attribute test per commit
    conn.close()
