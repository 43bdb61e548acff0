"""Torn and damaged storage, full disks and clock jumps (issue 5).

Every case ends one of two ways: every acknowledged job is still there and the queue works, or
opening or using the queue raises a StorageError that names the file and says what to do. No case
hangs, and none drops an acknowledged job without saying so.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from jobq import Queue, transitions
from jobq.errors import CorruptStore, StaleClaim, StorageError
from jobq.local.log import Damage, Entry, Position, Tail
from jobq.state import Status
from jobq.testing import run_burst
from jobq.local.workers import LivenessLock

from jobtasks import add, boom, count_with_checkpoints

DAY = 86_400.0
STATE_FILES = ("state.sqlite3", "state.sqlite3-wal", "state.sqlite3-shm")


# -- helpers ----------------------------------------------------------------------------------

def _entries(q: Queue) -> list[Entry]:
    return [item for item in q.log.scan(Position(1, 0)) if isinstance(item, Entry)]


def _segment_files(root: Path) -> list[Path]:
    return sorted((root / "log").glob("*.log"))


def _states(q: Queue) -> dict[str, tuple[object, ...]]:
    """What a user can observe of every job: status, attempts, checkpoint, result."""
    return {s.job_id: (s.status.value, s.attempts, s.checkpoint, s.result) for s in q.jobs()}


def _clone(src: Path, dst: Path) -> Path:
    """A copy of a queue directory, without its lock files."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.lock"))
    return dst


def _events(events: list[dict], name: str) -> list[dict]:
    return [e for e in events if e["event"] == name]


def _check_remedy(err: BaseException) -> None:
    """A refusal names the state database and says how to recover."""
    assert isinstance(err, CorruptStore), f"{type(err).__name__}: {err}"
    message = str(err)
    assert "state.sqlite3" in message, message
    assert "restore it from a backup" in message and "move it aside" in message, message


class Clock:
    """A wall clock a test can jump backwards and forwards."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset


# -- 1. the log torn at every byte of its last records ------------------------------------------

SEGMENT = 700  # three records of `add` per segment: the last records straddle a boundary


@pytest.fixture(scope="module")
def torn_source(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A closed queue: four jobs run and indexed, then three more appended but not yet indexed."""
    root = tmp_path_factory.mktemp("torn") / "queue"
    with Queue(root, segment_size=SEGMENT) as q:
        done = [q.enqueue(add, i, i) for i in range(4)]
        assert run_burst(q) == 4
        pending = [q.enqueue(add, i, 100) for i in range(3)]  # appended; the index never saw them
        entries = _entries(q)
    assert [e.pos.segment for e in entries] == [1, 1, 1, 2, 2, 2, 3]
    return {"root": root, "done": done, "pending": pending,
            "records": [(e.pos, e.frame.size) for e in entries[4:]],
            "segments": {p.name: p.read_bytes() for p in _segment_files(root)}}


def _torn_copy(source: dict[str, object], dst: Path, cut: Position, *, keep_later: bool) -> Path:
    """The source queue cut at ``cut``, with the segments after it kept only if ``keep_later``."""
    root = source["root"]
    assert isinstance(root, Path)
    dst.mkdir()
    shutil.copy(root / "jobq.json", dst / "jobq.json")
    shutil.copy(root / "state.sqlite3", dst / "state.sqlite3")
    (dst / "log").mkdir()
    segments = source["segments"]
    assert isinstance(segments, dict)
    for name, data in segments.items():
        number = int(name.split(".")[0])
        if number < cut.segment or (number > cut.segment and keep_later):
            (dst / "log" / name).write_bytes(data)
        elif number == cut.segment:
            (dst / "log" / name).write_bytes(data[:cut.offset])
    return dst


def _cuts(records: list[tuple[Position, int]], last: int) -> Iterator[Position]:
    """Every position from the start of the ``last``-th record from the end to the log's end."""
    for pos, size in records[-last:]:
        for offset in range(pos.offset, pos.offset + size):
            yield Position(pos.segment, offset)
    end, size = records[-1]
    yield Position(end.segment, end.offset + size)


def test_log_cut_at_every_byte_of_its_last_records_keeps_every_whole_one(tmp_path, torn_source):
    """A log cut at any byte of its last two records, across a segment boundary, keeps every
    whole record before the cut and goes on taking jobs."""
    last = 2  # every byte of three records takes 24 s here; two cover the boundary and the tail
    records = torn_source["records"]
    done, pending = torn_source["done"], torn_source["pending"]
    cases = lost = 0
    for cut in _cuts(records, last):
        case = _torn_copy(torn_source, tmp_path / f"cut-{cut.segment}-{cut.offset}", cut,
                          keep_later=False)
        whole = [job for job, (pos, size) in zip(pending, records)
                 if (pos.segment, pos.offset + size) <= (cut.segment, cut.offset)]
        torn = [pos.offset for pos, size in records
                if pos.segment == cut.segment and pos.offset < cut.offset < pos.offset + size]
        kept = torn[0] if torn else cut.offset  # where the log must end after the repair
        with capture_logs() as events, Queue(case) as q:
            states = {s.job_id: s.status for s in q.jobs()}
            lost += len(set(done + whole) - set(states))
            assert list(states) == done + whole, f"cut={cut}"
            assert all(states[j] is Status.SUCCEEDED for j in done), f"cut={cut}"
            assert (case / "log" / f"{cut.segment:012d}.log").stat().st_size == kept, f"cut={cut}"
            assert q.store.quarantined() == [], f"cut={cut}"
            new = q.enqueue(add, 9, 9)
            claimed = [c.job_id for c in q.store.claim("t", 10)]
            assert claimed == [*whole, new], f"cut={cut}"
        assert len(_events(events, "log.tail_truncated")) == (kept != cut.offset), f"cut={cut}"
        shutil.rmtree(case)
        cases += 1
    assert cases == sum(size for _, size in records[-last:]) + 1 and lost == 0


@pytest.mark.parametrize("into", [1, 19, 20, 100, -1],
                         ids=lambda n: f"cut=+{n}" if n > 0 else "cut=end-1")
def test_sealed_segment_torn_before_a_later_one_loses_only_the_torn_record(tmp_path, torn_source,
                                                                          into):
    """A record torn at the end of a sealed segment (its producer died as another rolled over) is
    quarantined while the later segment's records stay and new jobs still run."""
    records, pending = torn_source["records"], torn_source["pending"]
    (pos, size) = records[1]  # the last record of segment 2; segment 3 follows
    assert pos.segment == 2 and records[2][0].segment == 3
    cut = Position(2, pos.offset + (into if into > 0 else size + into))
    case = _torn_copy(torn_source, tmp_path / "case", cut, keep_later=True)
    with capture_logs() as events, Queue(case) as q:
        expected = [*torn_source["done"], pending[0], pending[2]]
        assert [s.job_id for s in q.jobs()] == expected
        bad = q.store.quarantined()
        # Zero bytes at the end of the torn bytes look like zero fill: the range ends before them.
        torn = torn_source["segments"]["000000000002.log"][pos.offset:cut.offset].rstrip(b"\0")
        assert [(b["segment"], b["offset"], b["end_offset"]) for b in bad] == [
            (2, pos.offset, pos.offset + len(torn))]
        assert Path(bad[0]["saved_to"]).read_bytes() == torn
        new = q.enqueue(add, 9, 9)
        assert q.state(new).status is Status.QUEUED and q.store.payload_position(new).segment == 3
        assert run_burst(q) == 3 and q.counts()["succeeded"] == 7
    assert len(_events(events, "log.record_quarantined")) == 1


def test_bit_rot_in_an_indexed_record_ends_its_job_dead_and_spares_the_others(tmp_path):
    """A record damaged after it was indexed ends its job dead at once (one claim, no attempt
    spent) with an error naming the segment, and every other job runs."""
    root = tmp_path / "q"
    with Queue(root) as q:
        ids = [q.enqueue_call(add, (i, i), max_attempts=2) for i in range(5)]
        assert q.counts()["queued"] == 5  # indexed: the damage comes after the acknowledgment
        victim = _entries(q)[2]
    segment = _segment_files(root)[0]
    with open(segment, "r+b") as f:
        f.seek(victim.pos.offset + victim.frame.size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    with Queue(root) as q:
        assert run_burst(q) == 4 + 1
        dead = q.state(ids[2])
        assert dead.status is Status.DEAD and str(segment) in dead.error
        assert dead.attempts == 0 and len(dead.errors) == 1
        assert all(q.state(j).status is Status.SUCCEEDED for j in ids if j != ids[2])


# -- 2. the state database truncated or damaged ---------------------------------------------------

@pytest.fixture(scope="module")
def state_source(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A closed queue whose jobs are in every status, and whose database holds free pages."""
    from jobq.maintenance import purge
    root = tmp_path_factory.mktemp("state") / "queue"
    with Queue(root) as q:
        q.enqueue_many(add, [("x" * 300, str(i)) for i in range(60)])
        run_burst(q)
        purged = set(_states(q))
        assert purge(q, statuses=["succeeded"], older_than=0) == 60  # leaves free pages
        done = q.enqueue_many(add, [(i, 1) for i in range(20)])
        assert run_burst(q) == 20
        for _ in range(2):
            q.enqueue_call(boom, max_attempts=1)
        assert run_burst(q) == 2  # dead
        cancelled = q.enqueue(add, 0, 0)
        delayed = q.enqueue_call(add, (1, 1), delay=3600)
        running = q.enqueue_call(count_with_checkpoints, (10,))
        assert q.cancel(cancelled)
        claim, = q.store.claim("a-worker-that-died", 1)
        q.store.save_checkpoint(running, claim.token, 4, 0.4)
        token = claim.token
        queued = q.enqueue_many(add, [(i, 2) for i in range(15)])
        reference = _states(q)
        free = q.store.conn.execute("PRAGMA freelist_count").fetchone()[0]
    assert free > 5 and not (root / "state.sqlite3-wal").exists()
    return {"root": root, "reference": reference, "queued": queued, "done": done, "purged": purged,
            "delayed": delayed, "running": running, "token": token,
            "db": (root / "state.sqlite3").read_bytes()}


def _use_everything(root: Path, source: dict[str, object]) -> str:
    """Open a damaged queue, read every job and run every runnable one: 'identical', 'rebuilt'
    (from the log alone) or 'refused'."""
    reference = source["reference"]
    assert isinstance(reference, dict)
    try:
        with capture_logs() as events, Queue(root) as q:
            states = _states(q)
            rebuilt = _events(events, "store.index_rebuilt")
            if rebuilt:  # every job is back, waiting to run again; so are purged ones
                assert rebuilt[0]["reason"] == "state database missing or empty"
                assert set(reference) <= set(states) <= set(reference) | source["purged"]
                assert {s[0] for s in states.values()} == {"queued"}
            else:
                assert states == reference
            ran = run_burst(q)
            runnable = [j for j, s in states.items() if s[0] == "queued" and j != source["delayed"]]
            assert ran >= len(runnable)
            assert all(q.state(j).status in (Status.SUCCEEDED, Status.DEAD) for j in runnable)
            return "rebuilt" if rebuilt else "identical"
    except StorageError as exc:
        _check_remedy(exc)
        return "refused"


def _apply_remedy(root: Path, source: dict[str, object]) -> None:
    """Move the damaged state database aside: every job of the log comes back."""
    for name in STATE_FILES:
        if (root / name).exists():
            (root / name).rename(root / f"{name}.damaged")
    assert _use_everything(root, source) == "rebuilt"


def _damaged_copy(source: dict[str, object], dst: Path, damage) -> Path:
    root = _clone(source["root"], dst)
    db = root / "state.sqlite3"
    data = bytearray(source["db"])
    damage(data)
    db.write_bytes(bytes(data))
    return root


def _random_bytes(data: bytearray, start: int, length: int, seed: int) -> None:
    rng = random.Random(seed)
    data[start:start + length] = bytes(rng.randrange(256) for _ in range(length))


def _free_leaf_pages(data: bytes) -> list[int]:
    """Numbers of the free pages listed by the freelist trunk pages (SQLite file format 1.5)."""
    page_size = int.from_bytes(data[16:18], "big")
    leaves, trunk = [], int.from_bytes(data[32:36], "big")
    while trunk:
        base = (trunk - 1) * page_size
        count = int.from_bytes(data[base + 4:base + 8], "big")
        leaves += [int.from_bytes(data[base + 8 + 4 * i:base + 12 + 4 * i], "big")
                   for i in range(count)]
        trunk = int.from_bytes(data[base:base + 4], "big")
    return leaves


def _overwrite_free_pages(data: bytearray) -> None:
    leaves = _free_leaf_pages(bytes(data))
    assert len(leaves) >= 5
    for number in leaves:
        _random_bytes(data, (number - 1) * PAGE, PAGE, number)


PAGE = 4096
STATE_DAMAGE = {
    "truncate=0": (lambda d: d.clear(), {"rebuilt"}),
    "truncate=100": (lambda d: d.__delitem__(slice(100, None)), {"refused"}),
    "truncate=half": (lambda d: d.__delitem__(slice(len(d) // 2, None)), {"refused"}),
    # SQLite reads the missing end of a page cut short as zeros: rows come back wrong, silently.
    "truncate=size-1": (lambda d: d.__delitem__(slice(-1, None)), {"refused"}),
    "truncate=size-1000": (lambda d: d.__delitem__(slice(-1000, None)), {"refused"}),
    "truncate=size-page": (lambda d: d.__delitem__(slice(-PAGE, None)), {"refused"}),
    "header=random": (lambda d: _random_bytes(d, 0, 100, 1), {"refused"}),
    "middle=random-4k": (lambda d: _random_bytes(d, len(d) // 2 // PAGE * PAGE, PAGE, 2),
                         {"identical", "refused"}),
    "free-pages=random": (_overwrite_free_pages, {"identical"}),
}


@pytest.mark.parametrize("case", list(STATE_DAMAGE))
def test_damaged_state_database_recovers_or_names_the_file_and_the_remedy(tmp_path, state_source,
                                                                        case):
    """A truncated or overwritten state database loses nothing or stops with an error naming
    state.sqlite3 and a remedy that brings every job back."""
    damage, allowed = STATE_DAMAGE[case]
    root = _damaged_copy(state_source, tmp_path / "q", damage)
    outcome = _use_everything(root, state_source)
    assert outcome in allowed, outcome
    if outcome == "refused":
        _apply_remedy(root, state_source)


def test_every_page_of_the_state_database_overwritten_in_turn_is_survived_or_refused(
        tmp_path, state_source):
    """Whichever page of state.sqlite3 turns to garbage, the queue loses nothing or refuses with
    the remedy, never returning wrong states or a raw SQLite error."""
    db = state_source["db"]
    assert isinstance(db, bytes) and len(db) % PAGE == 0
    outcomes: dict[str, list[int]] = {"identical": [], "refused": []}
    for number in range(1, len(db) // PAGE + 1):
        root = _damaged_copy(state_source, tmp_path / f"page-{number}",
                             lambda d, n=number: _random_bytes(d, (n - 1) * PAGE, PAGE, n))
        outcome = _use_everything(root, state_source)
        assert outcome in outcomes, f"page={number}: {outcome}"
        outcomes[outcome].append(number)
        shutil.rmtree(root)
    free = set(_free_leaf_pages(db))
    assert free <= set(outcomes["identical"]), outcomes  # garbage in a free page harms nothing
    assert 1 in outcomes["refused"] and len(outcomes["refused"]) >= 5, outcomes


WAL_CHILD = """
import os, sys
from jobq import Queue
from jobq.testing import run_burst
from jobtasks import add
q = Queue(sys.argv[1])
q.enqueue_many(add, [(i, i) for i in range(30)])
run_burst(q, max_jobs=10)
q.store.claim("a-worker-that-died", 1)
os._exit(0)  # no close: every transaction stays in the -wal file
"""


def test_torn_or_damaged_wal_opens_to_a_consistent_state_with_every_job(tmp_path, children):
    """A -wal file cut short or with flipped bytes opens to a consistent earlier state (SQLite
    drops the transactions after the damage) that still holds every job of the log."""
    source = tmp_path / "source"
    assert children.run(WAL_CHILD, str(source)).returncode == 0
    wal = (source / "state.sqlite3-wal").read_bytes()
    with Queue(_clone(source, tmp_path / "intact")) as q:
        ids = list(_states(q))
        assert len(ids) == 30 and q.counts()["succeeded"] == 10
    cuts = [0, 32, 100, len(wal) // 2, len(wal) - 1]
    flips = [10, 40, len(wal) // 2, len(wal) - 10]
    cases = lost = 0
    for kind, at in [("cut", n) for n in cuts] + [("flip", n) for n in flips]:
        root = _clone(source, tmp_path / f"{kind}-{at}")
        data = bytearray(wal)
        if kind == "cut":
            del data[at:]
        else:
            data[at] ^= 0xFF
        (root / "state.sqlite3-wal").write_bytes(bytes(data))
        with Queue(root) as q:
            assert q.store.conn.execute("PRAGMA quick_check").fetchall() == [("ok",)], (kind, at)
            states = _states(q)
            lost += len(set(ids) - set(states))
            assert list(states) == ids, (kind, at)
            run_burst(q)
            left = [j for j in ids if not q.store.status(j).finished]
            # Left running: the dead worker's claim, or one of the child's own run_burst whose
            # finish was in the transactions the damage dropped.
            owners = [q.store.row(j)["owner"] for j in left]
            assert owners in ([], ["a-worker-that-died"], ["burst"]), (kind, at)
        cases += 1
    assert cases == 9 and lost == 0


# -- 3. the index deleted ---------------------------------------------------------------------

@pytest.mark.parametrize("delete", [STATE_FILES, STATE_FILES[:1]],
                         ids=["all-state-files", "state.sqlite3-only"])
def test_deleted_state_database_is_rebuilt_from_the_log_and_every_job_runs(tmp_path, state_source,
                                                                          delete):
    """Without state.sqlite3 every job of the log is queued again and none is lost, even with a
    stale -wal left behind."""
    root = _clone(state_source["root"], tmp_path / "q")
    conn = sqlite3.connect(root / "state.sqlite3")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("UPDATE jobs SET status = 'succeeded'")  # committed to the -wal only
    conn.commit()
    stale = (root / "state.sqlite3-wal").read_bytes()
    conn.close()
    assert len(stale) > PAGE
    (root / "state.sqlite3-wal").write_bytes(stale)  # a leftover of the lost database
    for name in delete:
        (root / name).unlink(missing_ok=True)
    assert _use_everything(root, state_source) == "rebuilt"
    with Queue(root) as q:
        done = state_source["done"]
        assert all(q.state(j).status is Status.SUCCEEDED and q.state(j).attempts == 1
                   for j in done)  # ran a second time, from scratch


DROPS = {
    "jobs": ["DROP TABLE jobs"],
    "ready+scheduled": ["DROP TABLE ready", "DROP TABLE scheduled"],
    "all-index-tables": ["DROP TABLE jobs", "DROP TABLE ready", "DROP TABLE scheduled",
                         "DROP TABLE meta"],
    "jobs-emptied": ["DELETE FROM jobs"],
}


@pytest.mark.parametrize("drop", list(DROPS))
def test_lost_index_tables_are_rebuilt_from_the_log_and_the_snapshots(tmp_path, state_source,
                                                                     drop):
    """Index tables lost while the snapshots survive are rebuilt on open, keeping finished jobs
    finished and queuing the running one again with its checkpoint."""
    root = _clone(state_source["root"], tmp_path / "q")
    conn = sqlite3.connect(root / "state.sqlite3")
    for statement in DROPS[drop]:
        conn.execute(statement)
    conn.commit()
    conn.close()
    reference, running = state_source["reference"], state_source["running"]
    with capture_logs() as events, Queue(root) as q:
        states = _states(q)
        rebuilt = _events(events, "store.index_rebuilt")
        assert len(rebuilt) == 1
        purged_back = set(states) - set(reference)
        assert purged_back <= state_source["purged"]
        if drop != "all-index-tables":
            assert not purged_back  # the covered position survived: purged jobs stay purged
        for job_id, state in reference.items():
            if job_id == running:
                assert states[job_id] == ("queued", 0, 4, None)  # its attempt was not charged
            else:
                assert states[job_id] == state, job_id
        with pytest.raises(StaleClaim):
            q.store.save_checkpoint(running, state_source["token"], 5, None)
        q.store.rebuild_index()  # on demand too, and idempotent
        assert _states(q) == states
        run_burst(q)
        assert q.result(running) == 10 and q.state(running).attempts == 1
        assert all(q.state(j).attempts == 1 for j in state_source["done"])  # not run again
        assert all(q.state(j).status is Status.SUCCEEDED for j in state_source["queued"])
        assert q.state(state_source["delayed"]).status is Status.QUEUED  # still waiting its hour
        with pytest.raises(StaleClaim):
            q.store.save_checkpoint(running, state_source["token"], 5, None)


def test_lost_covered_position_alone_rereads_the_log_and_keeps_every_state(tmp_path,
                                                                         state_source):
    """Without its covered position the index re-reads the whole log and keeps every state."""
    root = _clone(state_source["root"], tmp_path / "q")
    conn = sqlite3.connect(root / "state.sqlite3")
    conn.execute("DROP TABLE meta")
    conn.commit()
    conn.close()
    with Queue(root) as q:
        states = _states(q)
        assert {j: states[j] for j in state_source["reference"]} == state_source["reference"]
        assert {states[j][0] for j in set(states) - set(state_source["reference"])} == {"queued"}
        assert q.store.covered() == q.log.end()


# -- 4. a full disk (RLIMIT_FSIZE: writes past the limit fail with EFBIG) --------------------------

FULL_LOG_CHILD = """
import json, pickle, resource, signal, sys
from jobq import Queue
from jobq.errors import StorageError
from jobtasks import add
root, mode, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
q = Queue(root)
assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN  # so write() fails instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    if mode == "batch":
        q.enqueue_many(add, [(i, i) for i in range(5)])
    else:
        q.enqueue(add, 1, 1)
    print(json.dumps(None))
except Exception as exc:
    sent = pickle.loads(pickle.dumps(exc))  # as a worker child would send it
    print(json.dumps([type(exc).__name__, isinstance(exc, StorageError), exc.errno, sent.errno,
                      str(exc)]))
"""


@pytest.mark.parametrize("mode", ["record", "batch", "new-segment"])
def test_enqueue_on_a_full_disk_raises_leaves_no_partial_record_and_recovers(tmp_path, children,
                                                                           mode):
    """An append that hits the file size limit raises StorageError with EFBIG, adds no byte to
    the log, and the queue works again once space is back."""
    import errno
    root = tmp_path / "q"
    # With small segments the three records fill segment 1, so the next append starts segment 2.
    with Queue(root, segment_size=SEGMENT if mode == "new-segment" else 1 << 20) as q:
        acked = [q.enqueue(add, i, i) for i in range(3)]
        end, size = q.log.end(), _entries(q)[-1].frame.size
    before = {p.name: p.read_bytes() for p in _segment_files(root)}
    # A partial first write, then EFBIG: two whole records of a batch are written before it fails.
    limit = {"record": end.offset + 100, "batch": end.offset + 2 * size + 100,
             "new-segment": 100}[mode]
    result = children.run(FULL_LOG_CHILD, str(root), mode, str(limit))
    assert result.returncode == 0, result.stderr
    name, is_storage, code, sent, message = json.loads(result.stdout.splitlines()[-1])
    assert is_storage and code == sent == errno.EFBIG, (name, code, sent, message)
    assert "cannot append to" in message and str(root / "log") in message
    after = {p.name: p.read_bytes() for p in _segment_files(root)}
    assert {n: d for n, d in after.items() if n in before} == before  # not one byte added
    assert all(after[n] == b"" for n in set(after) - set(before))  # a new segment stays empty
    with Queue(root) as q:
        items = list(q.log.scan(Position(1, 0)))
        assert not [i for i in items if isinstance(i, (Damage, Tail))]
        assert [s.job_id for s in q.jobs()] == acked
        more = q.enqueue_many(add, [(i, 1) for i in range(2)])
        assert run_burst(q) == 5
        assert all(q.state(j).status is Status.SUCCEEDED for j in acked + more)


FULL_STATE_CHILD = """
import json, os, resource, sys
from jobq import Queue
from jobq.errors import StorageError
from jobq.testing import run_burst
from jobtasks import add
root = sys.argv[1]
q = Queue(root)
# In the log; indexed by the next read: more pages than the state files have room for (the WAL
# is as long as the longest write so far: making the schema's tables).
ids = q.enqueue_many(add, [(i, i) for i in range(600)])
covered = q.store.covered()
grown = max(os.path.getsize(os.path.join(root, n)) for n in os.listdir(root)
            if n.startswith("state.sqlite3"))
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (grown, hard))  # the state files cannot grow
failures = []
for call in (q.counts, lambda: q.store.claim("w", 5),
             lambda: q.enqueue_call(add, (1, 1), job_id="by-id")):
    try:
        call()
        failures.append(None)
    except Exception as exc:
        failures.append([type(exc).__name__, isinstance(exc, StorageError), str(exc)])
unchanged = q.store.covered() == covered
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space is back
counts = q.counts()
ran = run_burst(q)
print(json.dumps({"failures": failures, "unchanged": unchanged, "queued": counts["queued"],
                  "ran": ran, "ids": ids}))
"""


def test_state_database_that_cannot_grow_fails_clearly_and_loses_nothing(tmp_path, children):
    """When state.sqlite3 cannot grow, indexing and claiming raise a StorageError with the
    remedy and change nothing, and the same process works again once space is back."""
    root = tmp_path / "q"
    Queue(root).close()
    result = children.run(FULL_STATE_CHILD, str(root))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.splitlines()[-1])
    for failure in out["failures"]:
        assert failure is not None, out["failures"]
        _, is_storage, message = failure
        assert is_storage and "state.sqlite3" in message and "Free disk space" in message, failure
    assert out["unchanged"] and out["queued"] == 600 and out["ran"] == 600
    with Queue(root) as q:
        assert q.store.conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]
        assert [s.job_id for s in q.jobs()] == out["ids"]
        assert q.counts()["succeeded"] == 600


FULL_WORKER_CHILD = """
import json, resource, sys
from jobq import Queue
from jobq.errors import StorageError
from workers import Worker
q = Queue(sys.argv[1])
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # its child processes inherit it
try:
    Worker(q, concurrency=2).run(burst=True)
except StorageError as exc:
    print(json.dumps(str(exc)))
    sys.exit(3)
"""


def test_worker_whose_state_database_fills_up_stops_clearly_and_the_next_one_finishes(
        tmp_path, children, workers):
    """A real worker that can no longer grow state.sqlite3 stops with the remedy, and the next
    worker finishes every job."""
    root = tmp_path / "q"
    with Queue(root) as q:
        ids = q.enqueue_many(add, [("x" * 200, str(i)) for i in range(600)])
        assert q.counts()["queued"] == 600
    size = (root / "state.sqlite3").stat().st_size
    result = children.run(FULL_WORKER_CHILD, str(root), str(size + 30_000))
    assert result.returncode == 3, result.stderr[-2000:]
    message = json.loads(result.stdout.splitlines()[-1])
    assert "state.sqlite3" in message and "Free disk space" in message
    with Queue(root) as q:
        assert 0 < q.counts()["succeeded"] < 600  # it stopped part-way
    assert workers(str(root), "--burst").wait(timeout=60) == 0
    with Queue(root) as q:
        assert [s.job_id for s in q.jobs(status="succeeded")] == ids


# -- 5. clock jumps ---------------------------------------------------------------------------

def test_far_future_and_past_run_at_times_do_not_stall_the_queue(queue, qpath, workers):
    """A job due in thirty years does not hold back the others, one due a year ago runs at once,
    and a burst worker still finishes."""
    far = queue.enqueue_call(add, (0, 0), delay=10**9)
    with Queue(qpath, clock=Clock(-365 * DAY)) as slow:  # a producer whose clock is a year behind
        old = slow.enqueue(add, 1, 1)
    now = [queue.enqueue(add, 2, 2)]
    assert queue.state(old).run_at < time.time() - 300 * DAY
    worker = workers(str(qpath), "--burst")
    assert worker.wait(timeout=60) == 0
    assert [queue.state(j).status for j in [old, *now]] == [Status.SUCCEEDED] * 2
    far_state = queue.state(far)
    assert far_state.status is Status.QUEUED and far_state.run_at > time.time() + 0.9 * 10**9
    assert not queue.store.has_ready()


@pytest.mark.parametrize("jump", [-DAY, DAY], ids=["clock-back-a-day", "producer-clock-ahead"])
def test_job_enqueued_before_a_clock_jump_runs_at_once(qpath, jump):
    """A job enqueued without delay is due at once even when the reader's clock is a day behind
    the producer's."""
    with Queue(qpath, clock=Clock(max(jump, 0))) as producer:
        undelayed = producer.enqueue(add, 1, 1)
        delayed = producer.enqueue_call(add, (2, 2), delay=60)
    with Queue(qpath, clock=Clock(min(jump, 0))) as reader:  # indexes the jobs on open
        assert [c.job_id for c in reader.store.claim("w", 5)] == [undelayed]
        # The delayed one waits its 60 s from now, not a day and 60 s.
        assert reader.state(delayed).run_at <= time.time() + min(jump, 0) + 61


def test_leases_claims_and_renewals_survive_the_clock_jumping_back_and_forth(qpath):
    """Claims, renewals, checkpoints and results keep working while the clock jumps a day back
    and a day forward."""
    clock = Clock()
    with Queue(qpath, clock=clock) as q:
        ids = [q.enqueue(add, i, i) for i in range(3)]
        first, = q.store.claim("w", 1, lease_seconds=60)
        clock.offset = -DAY
        assert q.store.renew("w", 60) == 1
        (_, token, _, expires), = q.store.running("w")
        assert token == first.token and abs(expires - (time.time() - DAY + 60)) < 5
        q.store.save_checkpoint(first.job_id, first.token, 1, 0.5)
        second, = q.store.claim("w", 1, lease_seconds=60)  # due jobs stay due after a jump back
        clock.offset = DAY
        third, = q.store.claim("w", 1, lease_seconds=60)
        for claim in (first, second, third):
            q.store.finish(claim.job_id, claim.token,
                           lambda s, now, _: transitions.succeeded(s, 0, now))
        assert [q.state(j).status for j in ids] == [Status.SUCCEEDED] * 3


@pytest.mark.parametrize(("skew", "holder"), [(DAY, "alive"), (-DAY, "alive"), (DAY, "dead")],
                         ids=["clock-went-back", "clock-went-forward", "clock-went-back-holder-dead"])
def test_a_clock_jump_never_loses_a_running_job(qpath, workers, skew, holder):
    """A clock jump never loses a running job: a live holder keeps it after a backward jump, a
    forward jump gets it run again elsewhere, and a dead holder loses it at once."""
    with Queue(qpath) as q:
        job, other = q.enqueue(count_with_checkpoints, 3), q.enqueue(add, 1, 1)
    lock = LivenessLock(str(qpath), "holder") if holder == "alive" else None
    try:
        # The holder claimed before the jump: its clock then is the reaper's now minus the jump.
        with Queue(qpath, clock=Clock(skew)) as held:
            claim, = held.store.claim("holder", 1, lease_seconds=60)
            assert claim.job_id == job
            held.store.save_checkpoint(job, claim.token, 2, 2 / 3)
            assert workers(str(qpath), "--burst").wait(timeout=60) == 0  # reaps, then runs
            assert held.state(other).status is Status.SUCCEEDED
            state = held.state(job)
            if skew < 0 or holder == "dead":  # taken and run again, from its checkpoint
                # The holder's attempt had saved a new checkpoint: taking it charged nothing.
                assert state.status is Status.SUCCEEDED and (state.attempts, state.crashes) == (1, 0)
                cause = "lease expired" if holder == "alive" else "worker holder died"
                assert cause in state.errors[0]
                with pytest.raises(StaleClaim):  # the holder's late result does not count
                    held.store.finish(job, claim.token,
                                      lambda s, now, _: transitions.succeeded(s, -1, now))
            else:  # still the holder's, and its result is the one recorded
                assert state.status is Status.RUNNING and held.store.running()[0][2] == "holder"
                held.store.finish(job, claim.token,
                                  lambda s, now, _: transitions.succeeded(s, 3, now))
            assert held.result(job) == 3
    finally:
        if lock is not None:
            lock.close()
