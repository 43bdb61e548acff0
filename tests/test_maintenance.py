"""Purge and compact: what they delete, what they keep, and that a crash or a busy queue loses nothing."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from conftest import wait_until
from structlog.testing import capture_logs

from jobq import Queue, Status, job_record, transitions
from jobq.local import purging
from jobq.errors import CorruptRecord, InvalidArgument, JobNotFound
from jobq.local.log import Entry, Position
from jobq.maintenance import compact, purge
from jobq.state import FINISHED
from jobq.engine import Claim
from jobq.testing import run_burst

ADD, BOOM, NOTE = "jobtasks:add", "jobtasks:boom", "jobtasks:note_run"
SMALL = 4096  # segment size: a dozen records per segment


def enqueue_each(q: Queue, task: str, args_list: list[tuple], **options) -> list[str]:
    """One append per job, so segments roll over between jobs (enqueue_many writes one run)."""
    return [q.enqueue_call(task, args=args, **options) for args in args_list]


def tree_size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def stored_size(path: Path) -> int:
    """The log segments and the database file: what compaction reports (not the WAL, nor the
    zero fill after the newest segment's records)."""
    *sealed, newest = sorted((Path(path) / "log").glob("*.log"))
    return sum(f.stat().st_size for f in sealed) + len(newest.read_bytes().rstrip(b"\0")) \
        + (Path(path) / "state.sqlite3").stat().st_size


def payloads(q: Queue, ids: list[str]) -> dict[str, tuple]:
    return {j: (p.task, p.args, p.kwargs) for j in ids for p in [q.payload(j)]}


def order(q: Queue) -> list[str]:
    return [s.job_id for s in q.jobs()]


def segment_of(q: Queue, job_id: str) -> int:
    return q.store.payload_position(job_id).segment


def marker(q: Queue) -> int | None:
    row = q.store.conn.execute("SELECT value FROM meta WHERE key = 'compacting'").fetchone()
    return None if row is None else row[0]


def copies(qpath: Path) -> list[str]:
    return sorted(p.name for p in (qpath / "log").glob("*.compact"))


def purge_succeeded(q: Queue) -> int:
    return purge(q, statuses=[Status.SUCCEEDED], older_than=0, now=time.time() + 1)


def build_layout(q: Queue) -> dict[str, list[str]]:
    """Segments of purgeable jobs only, of purgeable and dead jobs mixed, then of queued jobs."""
    gone = enqueue_each(q, ADD, [(i, i) for i in range(30)])
    mixed = [q.enqueue_call(BOOM, args=(f"no {i}",), max_attempts=1) if i % 3 == 0
             else q.enqueue_call(ADD, args=(i, 1)) for i in range(30)]
    run_burst(q)
    queued = enqueue_each(q, ADD, [(i, 100) for i in range(40)])
    dead = [j for j in mixed if q.state(j).status is Status.DEAD]
    return {"gone": gone + [j for j in mixed if j not in dead], "dead": dead, "queued": queued}


# -- purge ------------------------------------------------------------------------------------

def test_purge_deletes_only_finished_jobs_finished_long_enough_ago(qpath):
    """Old succeeded, dead and cancelled jobs go; recent, waiting and failed ones stay."""
    clock = [1000.0]
    with Queue(qpath, clock=lambda: clock[0]) as q:
        old = enqueue_each(q, ADD, [(i, i) for i in range(4)])
        old += enqueue_each(q, BOOM, [()] * 3, max_attempts=1)
        cancelled = enqueue_each(q, ADD, [(9, 9)] * 2)
        for jid in cancelled:
            q.cancel(jid)
        waiting = enqueue_each(q, ADD, [(3, 4)] * 2, delay=10_000)
        failing = q.enqueue_call(BOOM, max_attempts=3)
        run_burst(q, retry_delay=lambda attempt: 10_000.0)
        clock[0] = 2000.0
        recent = enqueue_each(q, ADD, [(1, 2)] * 3)
        run_burst(q)
        before = order(q)
        assert q.state(failing).status is Status.FAILED

        with capture_logs() as events:
            assert purge(q, statuses=FINISHED, older_than=500) == 9
        assert [e["count"] for e in events if e["event"] == "maintenance.purged"] == [9]
        purged = old + cancelled
        assert order(q) == [j for j in before if j not in purged]
        assert q.counts() == {"queued": 2, "running": 0, "failed": 1, "succeeded": 3, "dead": 0,
                              "cancelled": 0}
        for jid in purged:
            with pytest.raises(JobNotFound):
                q.state(jid)
            with pytest.raises(JobNotFound):
                q.payload(jid)
        snapshots = q.store.conn.execute("SELECT COUNT(*) FROM Dict").fetchone()[0]
        assert snapshots == len(waiting) + 1 + len(recent)

        # "More than older_than seconds ago": a job finished exactly at the cutoff stays.
        assert purge(q, statuses=["succeeded"], older_than=0) == 0
        assert purge(q, statuses=["succeeded"], older_than=0, now=2000.5) == 3
        assert q.store.get(failing).status is Status.FAILED


@pytest.mark.parametrize("kwargs", [
    {"statuses": [Status.QUEUED], "older_than": 0},
    {"statuses": ["running"], "older_than": 0},
    {"statuses": ["succeeded", "failed"], "older_than": 0},
    {"statuses": [], "older_than": 0},
    {"statuses": ["bogus"], "older_than": 0},
    {"statuses": ["succeeded"], "older_than": -1},
    {"statuses": ["succeeded"], "older_than": float("nan")},
    {"statuses": ["succeeded"], "older_than": "1"},
], ids=["queued", "running", "with_failed", "none", "unknown", "negative_age", "nan_age",
        "str_age"])
def test_purge_refuses_what_it_must_not_delete_and_changes_nothing(queue, kwargs):
    """Unfinished statuses and ages below zero raise InvalidArgument before anything is deleted."""
    enqueue_each(queue, ADD, [(1, 1)] * 3)
    run_burst(queue)
    enqueue_each(queue, ADD, [(2, 2)] * 2)
    counts, ids = queue.counts(), order(queue)
    with pytest.raises(InvalidArgument, match="statuses|finished|older_than"):
        purge(queue, now=time.time() + 10, **kwargs)
    assert queue.counts() == counts and order(queue) == ids


def test_purge_works_in_short_transactions(queue, monkeypatch):
    """A purge larger than one batch commits batch by batch and deletes every job."""
    monkeypatch.setattr(purging, "PURGE_BATCH", 7)
    transactions = []
    real = queue.store.transaction
    monkeypatch.setattr(queue.store, "transaction", lambda: transactions.append(1) or real())
    queue.enqueue_many(ADD, [(i, i) for i in range(30)])
    run_burst(queue)
    assert purge_succeeded(queue) == 30
    assert len(transactions) == 5 and order(queue) == []


# -- compact ----------------------------------------------------------------------------------

def test_compact_deletes_purged_segments_rewrites_mixed_ones_and_keeps_the_others(qpath):
    """The log loses exactly the purged records; every kept job loads, in its order, and runs."""
    with Queue(qpath, segment_size=SMALL) as q:
        jobs = build_layout(q)
        old_segment = {j: segment_of(q, j) for j in jobs["gone"] + jobs["dead"]}
        assert purge_succeeded(q) == len(jobs["gone"])
        kept = jobs["dead"] + jobs["queued"]
        expected, ids = payloads(q, kept), order(q)  # also caches read descriptors (see below)
        sizes = {s: os.path.getsize(q.log.path(s)) for s in q.log.segments()}

        with capture_logs() as events:
            report = compact(q)
        deleted = [e["segment"] for e in events if e["event"] == "maintenance.segment_deleted"]
        rewritten = [e["segment"] for e in events if e["event"] == "maintenance.segment_rewritten"]
        assert report.segments_deleted == len(deleted) >= 2
        assert report.segments_rewritten == len(rewritten) >= 2
        assert report.segments_skipped == 0  # the queued jobs' segments are kept as they are
        assert report.records_dropped == sum(old_segment[j] in deleted + rewritten
                                             for j in jobs["gone"])
        assert [e for e in events if e["event"] == "maintenance.compacted"]
        assert not set(deleted) & set(q.log.segments())
        for s in rewritten:
            assert 0 < os.path.getsize(q.log.path(s)) < sizes[s]
        log_freed = sum(size - (os.path.getsize(q.log.path(s)) if s in q.log.segments() else 0)
                        for s, size in sizes.items())
        assert report.bytes_after == stored_size(qpath) < report.bytes_before
        assert report.bytes_reclaimed >= log_freed > 0
        again = compact(q)
        assert (again.segments_rewritten, again.segments_deleted, again.records_dropped,
                again.bytes_reclaimed) == (0, 0, 0, 0)

        # The same Queue read these payloads before: its cached descriptors must not be stale.
        assert payloads(q, kept) == expected and order(q) == ids
        with Queue(qpath) as fresh:
            assert payloads(fresh, kept) == expected and order(fresh) == ids
        run_burst(q)
        assert [q.result(j) for j in jobs["queued"]] == [i + 100 for i in range(40)]
        assert all(q.state(j).status is Status.DEAD for j in jobs["dead"])


def test_moved_records_land_on_offsets_that_earlier_live_records_held(qpath):
    """seq is UNIQUE and moves within the segment; updating in ascending order never collides."""
    clock = [1000.0]
    with Queue(qpath, segment_size=SMALL, clock=lambda: clock[0]) as q:
        first = q.enqueue_call(BOOM, max_attempts=1)  # same task and arguments: same record size
        rest = enqueue_each(q, BOOM, [()] * 5, max_attempts=1)
        run_burst(q, max_jobs=1)
        clock[0] = 2000.0
        while len(q.log.segments()) < 2:  # seal the segment
            q.enqueue(ADD, 0, 0)
        run_burst(q)
        old = [q.store.payload_position(j) for j in [first, *rest]]
        expected = payloads(q, rest)
        assert purge(q, statuses=["dead"], older_than=500) == 1
        assert compact(q).segments_rewritten == 1
        new = [q.store.payload_position(j) for j in rest]
        assert new == old[:-1]  # each record moved exactly onto its predecessor's old offset
        assert payloads(q, rest) == expected


def test_a_cached_descriptor_on_a_rewritten_segment_is_noticed_when_loading_a_job(qpath):
    """A reader that skips the per-read stat (execution.load) still gets the moved record: the
    stale file holds another job at the new offset, which load_payload refuses, and load reads
    again through the segment's current file."""
    from jobq.execution import load
    from jobq.local.store import Claim

    clock = [1000.0]
    with Queue(qpath, segment_size=SMALL, clock=lambda: clock[0]) as q, Queue(qpath) as reader:
        q.enqueue_call(BOOM, max_attempts=1)  # ends dead, is purged: the records after it move
        rest = enqueue_each(q, ADD, [(i, 1) for i in range(5)])
        while len(q.log.segments()) < 2:  # seal the segment
            q.enqueue(ADD, 0, 0)
        run_burst(q)  # the first job ends dead, the rest succeed (compaction keeps them)
        state = q.state(rest[0])
        old = Claim(rest[0], 0, state, reader.store.payload_position(rest[0]))
        load(reader.engine, old, reader.config.rules)  # the reader now caches the old file
        clock[0] = 2000.0
        assert purge(q, statuses=["dead"], older_than=500) == 1
        assert compact(q).segments_rewritten == 1
        moved = q.store.payload_position(rest[1])
        assert moved.offset < old.ref.offset + 200  # moved back, over the purged record
        try:  # the old file, read at the new offset: not rest[1]'s record
            stale = reader.log.read(moved, recheck=False)
            assert job_record.decode_meta(stale.body)[0].job_id != rest[1]
        except CorruptRecord:
            pass
        claim = Claim(rest[1], 0, q.state(rest[1]), moved)
        payload, _ = load(reader.engine, claim, reader.config.rules)
        assert (payload.job_id, payload.args) == (rest[1], (1, 1))


def test_the_directory_shrinks_to_an_empty_segment(qpath):
    """20,000 finished jobs purged and compacted: even the segment being appended to goes; the log
    keeps only the empty segment that sealing it started."""
    with Queue(qpath, segment_size=64 * 1024, fsync=False) as q:
        for batch in range(1000):
            q.enqueue_many(ADD, [(batch, i) for i in range(20)])
        claims = q.store.claim("fast", 1000)
        while claims:  # finish them without running them: this is about sizes
            done = [(c.job_id, c.token, lambda s, now, _: transitions.succeeded(s, None, now))
                    for c in claims]
            claims = q.store.settle(done, "fast", 1000)[1]
        assert q.counts()["succeeded"] == 20_000
        last = q.log.segments()[-1]
        before = tree_size(qpath)
        assert purge_succeeded(q) == 20_000
        report = compact(q)
        assert q.log.segments() == [last + 1]
        assert os.path.getsize(q.log.path(last + 1)) == 0
        assert report.bytes_after == stored_size(qpath) and tree_size(qpath) < before * 0.01
        assert q.counts()["succeeded"] == 0 and q.enqueue(ADD, 1, 2)


def test_a_segment_with_jobs_still_to_run_shrinks_and_each_runs_once(qpath, tmp_path):
    """20 of 24 jobs of the one segment purged: it is sealed and rewritten with the 4 still to
    run (queued, delayed a month, failed awaiting its retry, running). Each loads, the running
    one from the position its claim got before the rewrite, and each runs exactly once."""
    from jobq.execution import load, run_claim
    runs = tmp_path / "runs"
    clock = [1000.0]
    with Queue(qpath, clock=lambda: clock[0]) as q:
        enqueue_each(q, NOTE, [(str(runs), f"done{i}") for i in range(20)])
        failing = q.enqueue_call("jobtasks:fail_until", args=(2,), max_attempts=3)
        run_burst(q, retry_delay=lambda attempt: 3600.0)
        queued = q.enqueue_call(NOTE, args=(str(runs), "queued"))
        delayed = q.enqueue_call(NOTE, args=(str(runs), "delayed"), delay=30 * 86400)
        running = q.enqueue_call(NOTE, args=(str(runs), "running"), priority=5)
        [claim] = q.store.claim("holder", 1)
        assert claim.job_id == running
        clock[0] += 10
        assert purge_succeeded(q) == 20
        size = q.log.end().offset  # the records' bytes (the zero fill after them is cut too)

        report = compact(q)
        assert (report.segments_rewritten, report.records_dropped) == (1, 20)
        assert q.log.segments() == [1, 2]
        shrunk = size - os.path.getsize(q.log.path(1))
        assert report.bytes_reclaimed >= shrunk > size * 0.6
        statuses = {failing: Status.FAILED, queued: Status.QUEUED, delayed: Status.QUEUED,
                    running: Status.RUNNING}
        with Queue(qpath) as fresh:  # no descriptor cached: it reads the rewritten file
            assert {j: fresh.state(j).status for j in statuses} == statuses
            assert [fresh.payload(j).args[1:] for j in (queued, delayed, running)] == [
                ("queued",), ("delayed",), ("running",)]
            with pytest.raises(CorruptRecord):  # the claim's position is stale now...
                job_record.load_payload(fresh.log.read(claim.ref).body, fresh.config.rules,
                                        claim.job_id)
            payload, _ = load(fresh.engine, claim, fresh.config.rules)  # ...followed
            assert payload.args[1] == "running"
            run_claim(fresh.engine, claim, fresh.config.rules)
        clock[0] += 31 * 86400
        run_burst(q)
        assert q.result(failing) == 2
        assert sorted(runs.read_text().split()) == sorted(
            [f"done{i}" for i in range(20)] + ["queued", "delayed", "running"])


@pytest.mark.parametrize("left", ["nothing", "one_queued", "all_finished_none_purged"])
def test_compact_seals_the_segment_being_appended_only_when_it_frees_something(qpath, left):
    """The newest segment is sealed and compacted once some of its jobs are purged, even with a
    job still to run in it (a queue that never rolls over shrinks too); a producer idle on it
    since before then appends to the new segment, and its job runs."""
    with Queue(qpath) as idle, Queue(qpath) as q:
        idle.enqueue(ADD, 0, 0)  # idle's append handle sits on segment 1
        ids = q.enqueue_many(ADD, [(i, i) for i in range(50)])
        run_burst(q)
        if left == "one_queued":
            q.enqueue(ADD, 1, 1)
        if left != "all_finished_none_purged":
            assert purge_succeeded(q) == 51
        with capture_logs() as events:
            report = compact(q)
        sealed = [e for e in events if e["event"] == "log.segment_sealed"]
        if left == "nothing":
            assert sealed and report.segments_deleted == 1
            assert q.log.segments() == [2] and os.path.getsize(q.log.path(2)) == 0
        elif left == "one_queued":
            assert sealed and report.segments_rewritten == 1 and report.records_dropped == 51
            assert q.log.segments() == [1, 2] and os.path.getsize(q.log.path(2)) == 0
            assert [e.frame.size for e in q.log.scan(Position(1, 0))
                    if isinstance(e, Entry)] == [os.path.getsize(q.log.path(1))]
            assert q.payload(q.store.job_ids().__next__()).args == (1, 1)
        else:
            assert not sealed and q.log.segments() == [1]
            assert report.segments_deleted == report.segments_rewritten == 0
        jid = idle.enqueue(ADD, 20, 22)
        assert q.state(jid).status is Status.QUEUED
        assert segment_of(q, jid) == q.log.segments()[-1]
        run_burst(q)
        assert q.result(jid) == 42
        if left == "all_finished_none_purged":
            assert [q.result(j) for j in ids] == [2 * i for i in range(50)]


def test_a_segment_found_without_dead_records_is_not_read_again_until_a_purge(qpath,
                                                                               monkeypatch):
    """Compaction remembers each sealed segment it left with no dead byte, with its count of
    jobs; it reads such a segment again only once one of its jobs was purged."""
    with Queue(qpath, segment_size=SMALL) as q:
        jobs = build_layout(q)
        purge_succeeded(q)
        compact(q)
        scanned = []
        real = q.log.scan
        monkeypatch.setattr(q.log, "scan", lambda pos: scanned.append(pos.segment) or real(pos))
        report = compact(q)
        assert scanned == q.log.segments()[-1:] and report.records_dropped == 0  # the newest
        victim = jobs["dead"][0]
        segment = segment_of(q, victim)
        assert purge(q, statuses=["dead"], older_than=0, now=time.time() + 1) == len(jobs["dead"])
        report = compact(q)
        assert segment in scanned and report.records_dropped == len(jobs["dead"])
        assert payloads(q, jobs["queued"])


def test_segments_stay_when_the_index_points_at_bytes_that_are_no_record(qpath):
    """A live record damaged since it was indexed: the segment is left alone, not half-dropped."""
    with Queue(qpath, segment_size=SMALL) as q:
        jobs = build_layout(q)
        purge_succeeded(q)
        victim = q.store.payload_position(jobs["dead"][0])
        with open(q.log.path(victim.segment), "r+b") as f:
            f.seek(victim.offset + 30)
            byte = f.read(1)[0]
            f.seek(victim.offset + 30)
            f.write(bytes([byte ^ 0xFF]))  # flipped, whatever it was
        with capture_logs() as events:
            compact(q)
        skipped = [e for e in events if e["event"] == "maintenance.segment_skipped"]
        assert [e["segment"] for e in skipped] == [victim.segment]
        assert q.store.payload_position(jobs["dead"][0]) == victim
        assert payloads(q, jobs["dead"][1:])  # the others load


@pytest.mark.parametrize("keep_some", [False, True], ids=["segments_deleted", "segments_shrunk"])
def test_a_producer_idle_since_an_early_segment_appends_to_the_newest(qpath, keep_some):
    """A producer whose append handle is on a compacted segment does not write into the
    segments compaction removed or shrank (the index has passed them: the job would be lost)."""
    with Queue(qpath, segment_size=SMALL) as idle, Queue(qpath, segment_size=SMALL) as busy:
        idle.enqueue(ADD, 0, 0)  # idle's handle now sits on segment 1
        for i in range(60):
            if keep_some and i % 5 == 0:
                busy.enqueue_call(BOOM, max_attempts=1)
            else:
                busy.enqueue(ADD, i, i)
        run_burst(busy)
        purge_succeeded(busy)
        report = compact(busy)
        assert (report.segments_rewritten if keep_some else report.segments_deleted) >= 3
        segments = busy.log.segments()
        jid = idle.enqueue(ADD, 20, 22)
        assert busy.state(jid).status is Status.QUEUED
        assert busy.log.segments()[:len(segments)] == segments  # nothing came back
        assert segment_of(busy, jid) >= segments[-1]
        run_burst(busy)
        assert busy.result(jid) == 42


# -- crashes ----------------------------------------------------------------------------------

CRASHING_COMPACT = """
import os, sys
from jobq import Queue
from jobq.maintenance import compact
q = Queue(sys.argv[1])
os.environ["JOBQ_TEST_CRASH_AT"] = sys.argv[2]
compact(q)
print("no crash")
"""


def test_compact_reports_only_what_it_freed_for_good_while_a_worker_runs(qpath, workers):
    """A running worker gives the SQLite WAL its working size back after a compaction empties
    it: that is not reclaimed, so a compaction with nothing to do reports 0 bytes every time."""
    from jobq.local import wal
    with Queue(qpath) as q:
        workers(str(qpath), "-c", "1", "--compact-threshold", "off")
        ids = q.enqueue_many(ADD, [(i, i) for i in range(50)])
        assert [q.result(j, timeout=60) for j in ids] == [2 * i for i in range(50)]
        working = wal.working_size(q.store.conn)
        presized = lambda: os.path.getsize(wal.path_of(q.store.db_path)) >= working  # noqa: E731
        wait_until(presized)
        purge_succeeded(q)
        assert compact(q).bytes_reclaimed > 0
        for _ in range(2):
            wait_until(presized)  # the worker made it whole again
            again = compact(q)
            assert (again.bytes_reclaimed, again.records_dropped) == (0, 0)
            assert again.bytes_after == stored_size(qpath)


def crash_layout(q: Queue, runs: Path) -> tuple[dict[str, tuple[Status, str]], Claim]:
    """Segments of purged jobs only; segments where purged jobs lie beside queued, delayed,
    failed (awaiting a retry), dead and running ones; the segment being appended to, with purged
    and queued jobs. Returns each kept job's status and tag (its args[1]), and the running claim."""
    kinds = ["gone"] * 30 + ["gone", "queued", "delayed", "failing", "dead", "gone"] * 7 \
        + ["running"] + ["gone", "queued"] * 5
    ids = {}
    for i, kind in enumerate(kinds):
        tag = f"{kind}{i}"
        if kind == "failing":
            ids[q.enqueue_call("jobtasks:fail_until", args=(2,), max_attempts=3,
                               priority=9)] = (Status.FAILED, tag)
        elif kind == "dead":
            ids[q.enqueue_call(BOOM, args=(tag,), max_attempts=1, priority=9)] = (Status.DEAD,
                                                                                  tag)
        else:
            status = Status.RUNNING if kind == "running" else Status.QUEUED
            ids[q.enqueue_call(NOTE, args=(str(runs), tag), delay=3600 if kind == "delayed"
                               else None, priority=8 if kind == "running" else 0)] = (status, tag)
    run_burst(q, max_jobs=14, retry_delay=lambda attempt: 3600.0)  # the priority 9 ones
    [claim] = q.store.claim("holder", 1)
    for jid, (_, tag) in list(ids.items()):
        if tag.startswith("gone"):
            assert q.cancel(jid)
            del ids[jid]
    assert purge(q, statuses=["cancelled"], older_than=0, now=time.time() + 1) == 49
    assert {status for status, _ in ids.values()} == {Status.QUEUED, Status.FAILED, Status.DEAD,
                                                       Status.RUNNING}
    return ids, claim


CRASH_POINTS = {"sealed": (False, 0), "deleted": (False, 0), "copying": (False, 1),
                "copied": (False, 1), "committed": (True, 1), "renamed": (True, 0)}


@pytest.mark.parametrize("crash_at", list(CRASH_POINTS))
def test_compaction_killed_at_each_step_loses_nothing(qpath, tmp_path, children, crash_at):
    """SIGKILL after sealing the active segment, after deleting a segment, part-way through a
    copy, after the copy, after repointing the index, after the rename: reopening leaves every
    kept job in its state, loadable once and in order; the claim made before still loads; and
    compacting again then running everything runs each job exactly once."""
    from jobq.execution import load, run_claim
    from workers import Worker

    runs = tmp_path / "runs"
    with Queue(qpath, segment_size=SMALL) as q:
        ids, claim = crash_layout(q, runs)
        expected, kept = payloads(q, list(ids)), order(q)
        assert len(q.log.segments()) >= 6

        done = children.run(CRASHING_COMPACT, str(qpath), crash_at)
        assert done.returncode == -signal.SIGKILL, done.stdout + done.stderr
        assert (marker(q) is not None, len(copies(qpath))) == CRASH_POINTS[crash_at]

        with capture_logs() as events:
            # The Queue open throughout reads every payload; after "committed" its index points
            # into a file not renamed yet: a locked read (Store.job_record) finishes the rename.
            assert payloads(q, kept) == expected
            reopened = Queue(qpath)
        with reopened:
            assert marker(reopened) is None
            assert order(reopened) == kept  # each job once, in arrival order
            assert {j: reopened.state(j).status for j in ids} == {j: s for j, (s, _) in
                                                                  ids.items()}
            assert payloads(reopened, kept) == expected
            payload, _ = load(reopened.engine, claim, reopened.config.rules)
            assert payload.args[1] == ids[claim.job_id][1]
            run_claim(reopened.engine, claim, reopened.config.rules)
        finished = [e for e in events if e["event"] == "maintenance.compaction_finished"]
        assert len(finished) == CRASH_POINTS[crash_at][0]

        report = compact(q)
        assert copies(qpath) == [] and marker(q) is None
        assert report.segments_rewritten + report.segments_deleted >= 1
        assert payloads(q, kept) == expected and order(q) == kept
    with Queue(qpath, clock=lambda: time.time() + 7200) as later:  # the delayed jobs are due
        Worker(later, concurrency=2).run(burst=True)
        tags = [tag for status, tag in ids.values() if status is not Status.DEAD]
        assert sorted(runs.read_text().split()) == sorted(
            t for t in tags if not t.startswith("failing"))  # each exactly once
        assert {later.state(j).status for j in ids} == {Status.SUCCEEDED, Status.DEAD}
        assert all(later.result(j) == 2 for j, (_, t) in ids.items() if t.startswith("failing"))


HOLD_COMPACT_LOCK = """
import os, sys, time
from filelock import FileLock
with FileLock(os.path.join(sys.argv[1], "compact.lock")):
    print("held", flush=True)
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.01)
    time.sleep(0.2)
    open(sys.argv[3], "w").close()
"""


def test_a_running_compaction_is_neither_recovered_nor_overlapped(qpath, tmp_path, children):
    """While a compaction holds its lock, opening the queue leaves its marker and copy alone, and
    a second compaction waits for it to end."""
    with Queue(qpath, segment_size=SMALL) as q:
        jobs = build_layout(q)
        purge_succeeded(q)
        expected = payloads(q, jobs["dead"])
    done = children.run(CRASHING_COMPACT, str(qpath), "committed")
    assert done.returncode == -signal.SIGKILL, done.stderr
    go, released = tmp_path / "go", tmp_path / "released"
    holder = children.start(HOLD_COMPACT_LOCK, str(qpath), str(go), str(released))
    assert holder.stdout.readline() == "held\n"
    with Queue(qpath) as q:
        assert marker(q) is not None and len(copies(qpath)) == 1  # "alive": not touched
        go.touch()
        compact(q)
        assert released.exists()  # compact waited for the holder to let go
        assert holder.wait(timeout=10) == 0
        assert marker(q) is None and copies(qpath) == []
        assert payloads(q, jobs["dead"]) == expected


# -- concurrency ------------------------------------------------------------------------------

PRODUCER = """
import json, os, sys, time
from jobq import Queue
q = Queue(sys.argv[1], segment_size=8192)
n, go, runs = int(sys.argv[2]), sys.argv[3], sys.argv[4]
for i in range(300):
    if i == 150:
        print("half", flush=True)
        while not os.path.exists(go):
            time.sleep(0.01)
    if i % 4 == 0:
        print(json.dumps(["boom", q.enqueue_call("jobtasks:boom", max_attempts=1)]), flush=True)
    elif i % 8 == 1:
        jid = q.enqueue_call("jobtasks:note_run", args=(runs, f"later-{n}-{i}"), delay=3600)
        print(json.dumps(["later", jid, f"later-{n}-{i}"]), flush=True)
    else:
        jid = q.enqueue("jobtasks:note_run", runs, f"{n}-{i}")
        print(json.dumps(["note", jid, f"{n}-{i}"]), flush=True)
"""


def _read_until_half(proc) -> list:
    acknowledged = []
    while (line := proc.stdout.readline()) != "half\n":
        assert line, proc.stderr.read()
        acknowledged.append(json.loads(line))
    return acknowledged


def test_compaction_alongside_producers_and_a_worker_loses_nothing(qpath, tmp_path, children,
                                                                  workers):
    """3 producer processes and a 2-child worker run while purge and compact loop, over segments
    that hold jobs delayed an hour besides purged and finished ones: every acknowledged job runs
    exactly once or waits with its payload intact, nothing is quarantined, the store is sound."""
    go, runs = tmp_path / "go", tmp_path / "runs"
    with Queue(qpath, segment_size=8192) as q:
        workers(str(qpath), "-c", "2", "--compact-threshold", "off")
        producers = [children.start(PRODUCER, str(qpath), str(n), str(go), str(runs))
                     for n in range(3)]
        acknowledged = [a for p in producers for a in _read_until_half(p)]
        due = sum(a[0] != "later" for a in acknowledged)
        wait_until(lambda: q.counts()["succeeded"] + q.counts()["dead"] == due)
        purge(q, statuses=["dead"], older_than=0)
        with capture_logs() as events:
            reports = [compact(q)]  # producers and worker alive
        rewritten = [e for e in events if e["event"] == "maintenance.segment_rewritten"]
        assert len(rewritten) >= 3 and all(e["unfinished"] for e in rewritten[:-1])
        go.touch()
        while any(p.poll() is None for p in producers):
            purge(q, statuses=["dead"], older_than=0)
            reports.append(compact(q))
        for p in producers:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            acknowledged += [json.loads(line) for line in out.splitlines()]
        notes = [a for a in acknowledged if a[0] == "note"]
        later = [a for a in acknowledged if a[0] == "later"]
        assert len(acknowledged) == 900 and len(notes) == 900 - 225 - len(later)
        for _, jid, tag in notes:
            assert q.result(jid, timeout=60) == tag
        wait_until(lambda: q.counts()["running"] == 0 and q.counts()["queued"] == len(later))
        purge(q, statuses=["dead"], older_than=0)
        reports.append(compact(q))
        assert q.store.quarantined() == []
        assert q.counts()["succeeded"] == len(notes) and q.counts()["dead"] == 0
        assert sorted(runs.read_text().split()) == sorted(tag for _, _, tag in notes)
        for _, jid, tag in notes + later:
            assert q.payload(jid).args[1] == tag
        assert all(q.state(jid).status is Status.QUEUED for _, jid, _ in later)
        assert q.store.conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_a_worker_runs_a_retried_job_from_its_moved_record(qpath, workers, tmp_path):
    """A worker child that read a segment before compaction rewrote it reads the moved record,
    not whatever the old file holds at the new offset."""
    fixed = tmp_path / "fixed"
    with Queue(qpath, segment_size=SMALL) as q:
        workers(str(qpath), "-c", "1")
        ids = [q.enqueue_call("jobtasks:fail_unless_exists", args=(str(fixed),), max_attempts=1)
               if i % 3 == 0 else q.enqueue(ADD, i, 1000) for i in range(45)]
        for jid in ids:
            q.wait(jid, timeout=60)
        dead = [j for j in ids if q.state(j).status is Status.DEAD]
        assert len(dead) == 15
        purge_succeeded(q)
        assert compact(q).segments_rewritten >= 2
        fixed.touch()
        for jid in dead:
            assert q.retry(jid)
        assert [q.result(j, timeout=60) for j in dead] == ["fixed"] * 15
