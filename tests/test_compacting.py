"""A worker compacts the log by itself once purges have left enough dead bytes in it."""

from __future__ import annotations

import time

import pytest

from jobq import Queue, Status
from jobq.maintenance import compact, purge
from jobq.local.compaction import dead_bytes
from workers import Worker

SMALL = 8192


def fill(q: Queue) -> tuple[list[str], str]:
    """60 jobs run to success, then one delayed by a day (it must survive every compaction)."""
    done = [q.enqueue("jobtasks:add", i, i) for i in range(60)]
    Worker(q, compact_threshold=0).run(burst=True)
    later = q.enqueue_call("jobtasks:add", args=(20, 22), delay=86400)
    return done, later


def log_bytes(q: Queue) -> int:
    """The log's bytes, less the zero fill after the newest segment's records (as compaction
    counts them)."""
    import os
    end = q.log.end()
    return sum(os.path.getsize(q.log.path(s)) for s in q.log.segments() if s < end.segment) \
        + end.offset


@pytest.mark.parametrize("threshold,compacts", [(0, False), (1 << 30, False), (1, True)],
                         ids=["off", "above_the_dead_bytes", "below_the_dead_bytes"])
def test_a_burst_worker_compacts_only_past_its_threshold(qpath, threshold, compacts):
    """After a purge, a worker compacts if the dead bytes reach its threshold (0: never), and a
    burst worker finishes that compaction before it returns."""
    with Queue(qpath, segment_size=SMALL) as q:
        done, later = fill(q)
        assert purge(q, statuses=["succeeded"], older_than=0, now=time.time() + 1) == 60
        before, dead = log_bytes(q), dead_bytes(q.engine)
        assert before * 0.9 < dead < before  # all but one of the records are dead
        Worker(q, compact_threshold=threshold).run(burst=True)
        if compacts:
            assert log_bytes(q) < before * 0.1 and dead_bytes(q.engine) == 0
        else:
            assert log_bytes(q) == before and dead_bytes(q.engine) == dead
        assert q.state(later).status is Status.QUEUED and q.payload(later).args == (20, 22)


def test_a_running_worker_compacts_while_it_drains_and_producers_enqueue(qpath, workers):
    """A long-running worker notices a purge and compacts; jobs enqueued meanwhile all run, and
    the delayed one still loads."""
    with Queue(qpath, segment_size=SMALL) as q:
        done, later = fill(q)
        w = workers(str(qpath), "-c", "2", "--compact-threshold", "2K")
        before = log_bytes(q)
        purge(q, statuses=["succeeded"], older_than=0, now=time.time() + 1)
        more = []
        while not events(w, "maintenance.compacted"):
            more.append(q.enqueue("jobtasks:add", len(more), 1))
            assert len(more) < 5000, "the worker never compacted"
        [started] = events(w, "worker.compaction_started")
        [compacted] = events(w, "maintenance.compacted")
        assert started["dead_bytes"] >= 2048 and compacted["records_dropped"] > 0
        # Whole segments of purged jobs at least; the newest is rewritten only if half dead.
        assert compacted["bytes_reclaimed"] > before * 0.5
        assert [q.result(j, timeout=60) for j in more] == [i + 1 for i in range(len(more))]
        assert q.payload(later).args == (20, 22) and q.state(later).status is Status.QUEUED
        assert q.store.quarantined() == []


def events(w, name: str) -> list[dict]:
    """The worker's events so far (a line it is still writing is read next time)."""
    try:
        return w.events(name)
    except ValueError:
        return []


def test_a_worker_leaves_segments_whose_rewrite_would_hold_claims_too_long(qpath):
    """Rewriting repoints every live job under the write lock: the worker's compaction rewrites
    a segment only once half its bytes are dead, and only if few enough jobs are still in it;
    ``jobq compact`` takes anything dead."""
    from jobq.local.compaction import compaction_steps
    with Queue(qpath) as q:
        segments = []
        for _ in range(2):
            ids = q.enqueue_many("jobtasks:add", [(i, i) for i in range(30)])
            segments.append((q.log.end().segment, ids))
            q.log.seal(q.log.end().segment)
        (few, few_ids), (most, most_ids) = segments
        for jid in few_ids[:1] + most_ids[:25]:
            q.cancel(jid)
        assert purge(q, statuses=["cancelled"], older_than=0, now=time.time() + 1) == 26
        sizes = {s: log_segment(q, s) for s in (few, most)}
        for _ in compaction_steps(q, min_dead_share=0.5, max_live=4):
            pass
        assert log_segment(q, few) == sizes[few] and log_segment(q, most) == sizes[most]
        for _ in compaction_steps(q, min_dead_share=0.5, max_live=5):
            pass
        assert log_segment(q, few) == sizes[few] and log_segment(q, most) < sizes[most] * 0.25
        assert [q.payload(j).args for j in few_ids[1:] + most_ids[25:]] == [
            (i, i) for i in range(1, 30)] + [(i, i) for i in range(25, 30)]
        compact(q)
        assert log_segment(q, few) < sizes[few]


def log_segment(q: Queue, segment: int) -> int:
    import os
    return os.path.getsize(q.log.path(segment))
