"""``jobq backup``: a consistent copy of a queue in use, that verifies, opens and runs."""

from __future__ import annotations

import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
from conftest import child_env, jobq_command, wait_until

from jobq import Queue, Status
from jobq.maintenance import backup
from jobq.errors import InvalidArgument
from jobq.maintenance import purge
from jobq.testing import run_burst
from test_maintenance import HOLD_COMPACT_LOCK

ADD = "jobtasks:add"
SMALL = 4096  # segment size: a dozen records per segment


def jobq(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = child_env()
    env.pop("JOBQ_HOME", None)
    return subprocess.run([*jobq_command(), *args], env=env, text=True, capture_output=True,
                          timeout=timeout)


def states(q: Queue) -> dict[str, tuple]:
    return {s.job_id: (s.status, s.result, s.attempts) for s in q.jobs()}


def test_a_backup_holds_every_job_as_it_was_and_opens_as_a_queue(qpath, tmp_path):
    with Queue(qpath, segment_size=SMALL) as q:
        done = [q.enqueue(ADD, i, i) for i in range(20)]
        q.enqueue_call("jobtasks:boom", max_attempts=1)
        run_burst(q)
        cancelled = q.enqueue(ADD, 0, 0)
        q.cancel(cancelled)
        running = q.enqueue(ADD, 5, 5)
        assert q.store.claim("a-worker", 1)[0].job_id == running
        waiting = [q.enqueue(ADD, i, 100) for i in range(20)]
        before = states(q)  # (indexes every job)
        unindexed = [q.enqueue(ADD, i, 1000) for i in range(5)]  # in the log only
        report = backup(q, tmp_path / "copy")
        assert report.segments == len(q.log.segments()) > 1
        assert report.jobs == len(before)

    copy = tmp_path / "copy"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o700
    assert sorted(p.name for p in copy.iterdir()) == ["jobq.json", "log", "quarantine",
                                                      "state.sqlite3"]
    assert all(stat.S_IMODE(p.stat().st_mode) & 0o077 == 0 for p in copy.rglob("*"))
    assert not list(tmp_path.glob("copy.tmp-*"))
    assert jobq("verify", "--dir", str(copy)).returncode == 0
    with Queue(copy) as b:
        assert states(b) == {**before, **{j: (Status.QUEUED, None, 0) for j in unindexed}}
        assert b.counts() == {"queued": 25, "running": 1, "failed": 0, "succeeded": 20,
                              "dead": 1, "cancelled": 1}
        assert b.state(running).status is Status.RUNNING
        run_burst(b)
        assert [b.result(j) for j in waiting + unindexed] == \
            [i + 100 for i in range(20)] + [i + 1000 for i in range(5)]
        assert [b.result(j) for j in done] == [2 * i for i in range(20)]
    with Queue(qpath) as q:  # the source is as it was
        assert states(q) == {**before, **{j: (Status.QUEUED, None, 0) for j in unindexed}}


def test_a_backup_refuses_a_destination_that_holds_anything(qpath, tmp_path):
    """A file, a non-empty directory, the queue's own directory: refused, nothing written."""
    (tmp_path / "file").write_text("keep me")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    (tmp_path / "empty").mkdir()
    with Queue(qpath) as q:
        q.enqueue(ADD, 1, 2)
        for dest in (tmp_path / "file", tmp_path / "full", qpath, qpath / "inside",
                     tmp_path / "no" / "parent"):
            with pytest.raises(InvalidArgument):
                backup(q, dest)
        backup(q, tmp_path / "empty")  # an empty directory is taken
    assert (tmp_path / "file").read_text() == "keep me"
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["x"]
    assert (tmp_path / "empty" / "state.sqlite3").exists()
    assert not (qpath / "inside").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    done = jobq("backup", str(tmp_path / "full"), "--dir", str(qpath))
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert "exists and is not an empty directory" in done.stderr


CRASHING_COMPACT = """
import os, sys
from jobq import Queue
from jobq.maintenance import compact
q = Queue(sys.argv[1])
os.environ["JOBQ_TEST_CRASH_AT"] = "committed"
compact(q)
"""


def test_a_backup_after_a_compaction_that_died_copies_the_rewritten_segment(qpath, tmp_path,
                                                                          children):
    """A compaction killed between moving the seqs and renaming its copy: the backup finishes
    it first, so the copied state and the copied segments agree."""
    with Queue(qpath, segment_size=SMALL) as q:
        jobs = [q.enqueue_call("jobtasks:boom", args=(f"no {i}",), max_attempts=1) if i % 3 == 0
                else q.enqueue(ADD, i, 1) for i in range(60)]
        run_burst(q)
        purge(q, statuses=[Status.SUCCEEDED], older_than=0, now=time.time() + 1)
        kept = jobs[::3]  # dead, between purged ones: their segments are rewritten
        done = children.run(CRASHING_COMPACT, str(qpath))
        assert done.returncode == -signal.SIGKILL, done.stderr
        backup(q, tmp_path / "copy")
    assert jobq("verify", "--dir", str(tmp_path / "copy")).returncode == 0
    with Queue(tmp_path / "copy") as b:
        assert b.store.quarantined() == []
        assert [b.payload(j).args for j in kept] == [(f"no {i}",) for i in range(0, 60, 3)]
        assert all(b.state(j).status is Status.DEAD for j in kept)


def test_a_backup_waits_for_a_running_compaction(qpath, tmp_path, children):
    """A compaction in progress (its lock held by another process) ends before the backup
    copies anything: it may replace the segments the state points into."""
    with Queue(qpath) as q:
        q.enqueue(ADD, 1, 2)
        go, released = tmp_path / "go", tmp_path / "released"
        holder = children.start(HOLD_COMPACT_LOCK, str(qpath), str(go), str(released))
        assert holder.stdout.readline() == "held\n"
        go.touch()
        backup(q, tmp_path / "copy")
        assert released.exists()  # the backup waited for the holder to let go
        assert holder.wait(timeout=10) == 0


PRODUCER = """
import os, sys
from jobq import Queue
q = Queue(sys.argv[1])
with open(sys.argv[2], "a") as acks:
    while not os.path.exists(sys.argv[3]):
        job_id = q.enqueue("jobtasks:add", 1, 2)
        acks.write(job_id + "\\n")  # after enqueue returned: acknowledged
        acks.flush()
"""


def acknowledged(files: list[Path]) -> set[str]:
    return {line for f in files for line in f.read_text().split("\n")[:-1]}  # whole lines only


def test_a_backup_taken_while_producers_and_a_worker_run_loses_no_acknowledged_job(
        qpath, tmp_path, children, workers):
    """Two producer processes enqueue and a worker drains while ``jobq backup`` runs: every job
    acknowledged before the backup started is in the copy, which verifies, and a burst worker on
    the copy runs every job still to run."""
    Queue(qpath, segment_size=32768).close()  # small segments: the log rolls over meanwhile
    stop = tmp_path / "stop"
    acks = [tmp_path / f"acks-{i}" for i in range(2)]
    producers = [children.start(PRODUCER, str(qpath), str(a), str(stop)) for a in acks]
    worker = workers(str(qpath), "-c", "1")
    with Queue(qpath) as q:
        wait_until(lambda: q.counts()["succeeded"] >= 200 and len(acknowledged(acks)) >= 400,
                   timeout=120)
        before = acknowledged(acks)
        done = jobq("backup", str(tmp_path / "copy"), "--dir", str(qpath))
        after = acknowledged(acks)
        assert done.returncode == 0, done.stderr
        assert len(after) > len(before)  # producers went on throughout
        stop.touch()
        for p in producers:
            _, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
        assert len(q.log.segments()) > 2
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.wait() == 0
    copy = tmp_path / "copy"
    assert "backed up" in done.stdout

    verified = jobq("verify", "--dir", str(copy))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    with Queue(copy) as b:
        missing = [j for j in before if not b.store.exists(j)]
        assert missing == []
        counts = b.counts()
        assert counts["succeeded"] >= 200 and counts["queued"] + counts["running"] > 0
    ran = jobq("worker", "--burst", "--dir", str(copy))
    assert ran.returncode == 0, ran.stderr
    with Queue(copy) as b:
        assert all(b.state(j).status is Status.SUCCEEDED for j in before)
        assert b.counts()["queued"] == b.counts()["running"] == b.counts()["failed"] == 0
        assert b.store.conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
