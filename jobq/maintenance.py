"""Maintenance: purge old finished jobs, then compact away the log records nothing points to.

:func:`purge` deletes finished jobs (index row and state snapshot) in short transactions, so a
large purge never holds the write lock for long. :func:`compact` rewrites the log without the
records no job points to (purged jobs, later duplicates of a job id, damaged ranges). It first
seals the segment producers append to if all its jobs have finished and some of its records are
dead (:meth:`Log.seal`), so that a purged queue shrinks to almost nothing. It touches only segments
that a later one follows and the index has passed (producers never write them) and whose jobs have
all finished (no worker reads them), one at a time:

    (a) copy the live frames, byte for byte and in order, to ``log/<N>.compact``; fsync it
    (b) one transaction: move each live job's ``seq`` to its new offset; meta ``compacting = N``
    (c) rename the copy over segment N; fsync the directory
    (d) clear the marker

The segment keeps its number and its records their order, so arrival order (seq) is unchanged.
The store's write lock is held from (b) to (d), so no retry or claim can act on the moved seqs
before the file matches them. A crash after (b) leaves the marker: the next open redoes the rename
if the copy is still there (:func:`finish_interrupted_compaction`), then clears the marker.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import sqlite3
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING


from . import durable
from .errors import InvalidArgument
from .index import seq_of
from .log import CHUNK, Damage, Entry, Log, Position, Sealed
from .state import FINISHED, Status
from .store import Store
from ._logging import get_logger

if TYPE_CHECKING:
    import filelock  # imported where used: only compaction needs it, not every start-up

    from .queue import Queue

__all__ = ["CompactReport", "compact", "finish_interrupted_compaction", "purge"]

log = get_logger(__name__)

PURGE_BATCH = 1_000
VACUUM_FREE_RATIO = 0.1  # VACUUM rewrites the whole file: worth it once a tenth of it is free
_MARKER = "compacting"
_CRASH_AT = "JOBQ_TEST_CRASH_AT"


@dataclasses.dataclass(frozen=True)
class CompactReport:
    """What one :func:`compact` did; byte counts are of the whole queue directory."""

    segments_rewritten: int
    segments_deleted: int
    segments_skipped: int  # some job in it has not finished yet: compacted by a later run
    records_dropped: int
    bytes_before: int
    bytes_after: int
    bytes_reclaimed: int  # producers appending meanwhile count against it; never below 0


# -- purge ------------------------------------------------------------------------------------

def purge(queue: Queue, *, statuses: Iterable[Status], older_than: float,
          now: float | None = None) -> int:
    """Delete jobs in ``statuses`` that finished more than ``older_than`` seconds ago.

    ``updated_at`` is set by a job's final transition and never after, so it is its finishing
    time. Returns how many jobs were deleted; their log records go at the next :func:`compact`.
    """
    wanted = _finished_statuses(statuses)
    if not isinstance(older_than, (int, float)) or isinstance(older_than, bool) \
            or not math.isfinite(older_than) or older_than < 0:
        raise InvalidArgument(f"older_than must be a number of seconds >= 0, not {older_than!r}")
    cutoff = (queue._clock() if now is None else now) - older_than  # the clock updated_at used
    queue.store.catch_up()  # a duplicate record indexed after the purge would bring a job back
    marks = ", ".join("?" * len(wanted))
    total = 0
    while True:
        with queue.store.transaction() as conn:
            ids = [row[0] for row in conn.execute(
                f"SELECT job_id FROM jobs WHERE status IN ({marks}) AND updated_at < ? LIMIT ?",
                (*wanted, cutoff, PURGE_BATCH))]
            conn.executemany("DELETE FROM jobs WHERE job_id = ?", [(i,) for i in ids])
            conn.executemany("DELETE FROM Dict WHERE key = CAST(? AS BLOB)",
                             [(i.encode(),) for i in ids])
        total += len(ids)
        if len(ids) < PURGE_BATCH:
            break
    log.info("maintenance.purged", count=total, statuses=wanted, older_than=older_than)
    return total


def _finished_statuses(statuses: Iterable[Status]) -> list[str]:
    if isinstance(statuses, str):  # one status (Status is a str too), not its characters
        statuses = [statuses]
    try:
        found = [Status(s) for s in statuses]
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"statuses must be job statuses: {exc}") from exc
    refused = [s.value for s in found if s not in FINISHED]
    if refused or not found:
        allowed = ", ".join(sorted(s.value for s in FINISHED))
        raise InvalidArgument(f"purge deletes only finished jobs ({allowed}); got"
                              f" {', '.join(refused) or 'no status'}")
    return sorted({s.value for s in found})


# -- compact ----------------------------------------------------------------------------------

def compact(queue: Queue) -> CompactReport:
    """Rewrite sealed segments without dead records, delete empty ones, shrink the store."""
    with _compact_lock(queue.path):  # two compactions never overlap
        _redo(queue)
        _remove_stale_copies(queue.log)
        before = _tree_size(queue.path)
        queue.log.seal_stragglers()  # before anything is deleted: see Log.seal
        queue.store.catch_up()
        if _seal_newest(queue):
            queue.store.catch_up()  # indexes past the seal, so the sealed segment is compacted
        covered = queue.store.covered()
        tally: Counter[str] = Counter()
        for segment in queue.log.segments()[:-1]:  # producers append to the last one
            if segment < covered.segment:  # wholly indexed
                outcome, dropped = _compact_segment(queue, segment)
                tally[outcome] += 1
                tally["dropped"] += dropped
        _shrink_store(queue.store)
        after = _tree_size(queue.path)
    report = CompactReport(tally["rewritten"], tally["deleted"], tally["skipped"],
                           tally["dropped"], before, after, max(0, before - after))
    log.info("maintenance.compacted", **dataclasses.asdict(report))
    return report


def _seal_newest(queue: Queue) -> bool:
    """Seal the segment producers append to when compacting it would drop records; True if so.

    Otherwise up to a whole segment (64 MiB by default) of purged jobs would stay. Only a
    segment that is wholly indexed and whose jobs have all finished: sealing one with jobs still
    to run would only start a new segment, and compaction would skip this one anyway.
    """
    end = queue.log.end()
    if end.offset == 0 or queue.store.covered() != end:
        return False  # empty, or producers appended since the catch-up: next time
    with queue.store.transaction() as conn:
        rows = _live(conn, end.segment)
    if any(Status(status) not in FINISHED for _, _, status, _, _ in rows):
        return False
    if rows and _whole_records(queue.log, end.segment) == len(rows):
        return False  # nothing to drop: it would be kept as it is
    return queue.log.seal(end.segment)


def _whole_records(log_: Log, segment: int) -> int | None:
    """How many whole records the newest segment holds; None if damaged bytes lie between them."""
    count = 0
    for item in log_.scan(Position(segment, 0)):
        if isinstance(item, Damage):
            return None
        count += isinstance(item, Entry) and item.pos.segment == segment
    return count


def _compact_segment(queue: Queue, segment: int) -> tuple[str, int]:
    """Delete, rewrite, skip or keep one sealed segment; return what was done and records dropped."""
    with queue.store.transaction() as conn:
        rows = _live(conn, segment)
    if any(Status(status) not in FINISHED for _, _, status, _, _ in rows):
        return "skipped", 0  # a worker may read these payloads: wait until they have finished
    entries, damaged = _scan(queue.log, segment)
    live = {row[1] for row in rows}
    keep = [e for e in entries if seq_of(e.pos) in live]
    if len(keep) != len(live):
        log.warning("maintenance.segment_skipped", segment=segment,
                    reason="the index points at bytes that are not a record")
        return "skipped", 0
    dropped = len(entries) - len(keep)
    if not keep:
        size = os.stat(queue.log.path(segment)).st_size
        os.unlink(queue.log.path(segment))
        durable.sync_dir(queue.log.directory)
        log.info("maintenance.segment_deleted", segment=segment, records_dropped=dropped,
                 bytes=size)
        return "deleted", dropped
    if not dropped and not damaged:
        return "kept", 0
    moves = _write_copy(queue.log, segment, keep)
    _crash_point("copied")
    if not _commit(queue, segment, moves):
        os.unlink(_copy_path(queue.log, segment))
        return "skipped", 0
    log.info("maintenance.segment_rewritten", segment=segment, records_kept=len(keep),
             records_dropped=dropped, bytes_after=os.stat(queue.log.path(segment)).st_size)
    return "rewritten", dropped


def _live(conn: sqlite3.Connection, segment: int) -> list[tuple[str, int, str, int, float]]:
    """(job id, seq, status, priority, run_at) of the jobs whose record lies in ``segment``."""
    return conn.execute("SELECT job_id, seq, status, priority, run_at FROM jobs"
                        " WHERE seq >= ? AND seq < ? ORDER BY seq",
                        (seq_of(Position(segment, 0)), seq_of(Position(segment + 1, 0)))).fetchall()


def _scan(log_: Log, segment: int) -> tuple[list[Entry], bool]:
    """The whole records of one sealed segment, and whether damaged bytes lie between them."""
    entries, damaged = [], False
    for item in log_.scan(Position(segment, 0)):
        if isinstance(item, Sealed) or item.pos.segment != segment:
            break
        if isinstance(item, Entry):
            entries.append(item)
        damaged = damaged or isinstance(item, Damage)
    return entries, damaged


def _write_copy(log_: Log, segment: int, keep: list[Entry]) -> dict[int, int]:
    """Step (a): the kept frames, unchanged and in order, durably in the copy; old seq -> new."""
    moves, offset = {}, 0
    src = os.open(log_.path(segment), os.O_RDONLY | os.O_CLOEXEC)
    dst = os.open(_copy_path(log_, segment), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                  durable.FILE_MODE)
    try:
        for entry in keep:
            moves[seq_of(entry.pos)] = seq_of(Position(segment, offset))
            _copy_range(src, dst, entry.pos.offset, entry.frame.size)
            offset += entry.frame.size
        durable.sync_file(dst)
    finally:
        os.close(src)
        os.close(dst)
    # The marker will say "the copy exists": its directory entry must survive a power cut too.
    durable.sync_dir(log_.directory)
    return moves


def _copy_range(src: int, dst: int, start: int, length: int) -> None:
    while length > 0:
        data = os.pread(src, min(length, CHUNK), start)
        view = memoryview(data)
        while view:
            view = view[os.write(dst, view):]
        start, length = start + len(data), length - len(data)


def _commit(queue: Queue, segment: int, moves: dict[int, int]) -> bool:
    """Steps (b) to (d) under one hold of the store lock; False if a job was retried meanwhile."""
    with queue.store.transaction() as conn:
        rows = _live(conn, segment)
        if any(Status(r[2]) not in FINISHED or r[1] not in moves for r in rows):
            return False
        # Ascending seq: each new offset is below the old one and above every already-moved
        # record's, so no UPDATE meets a seq still held by a job (seq is UNIQUE).
        for job_id, seq, _, priority, run_at in rows:
            conn.execute("UPDATE jobs SET seq = ? WHERE job_id = ?", (moves[seq], job_id))
            # Finished jobs wait nowhere; were one to, its row must follow it.
            conn.execute("UPDATE ready SET seq = ? WHERE neg_priority = ? AND seq = ?",
                         (moves[seq], -priority, seq))
            conn.execute("UPDATE scheduled SET seq = ? WHERE run_at = ? AND seq = ?",
                         (moves[seq], run_at, seq))
        conn.execute("REPLACE INTO meta (key, value) VALUES (?, ?)", (_MARKER, segment))
        conn.execute("COMMIT")  # (b) is durable; the lock stays held until (d) commits
        try:
            _crash_point("committed")
            os.replace(_copy_path(queue.log, segment), queue.log.path(segment))
            durable.sync_dir(queue.log.directory)
            _crash_point("renamed")
        finally:
            conn.execute("BEGIN IMMEDIATE")  # what the transaction's exit commits or rolls back
        conn.execute("DELETE FROM meta WHERE key = ?", (_MARKER,))
    return True


def _shrink_store(store: Store) -> None:
    """Give the pages of purged jobs back to the file system: VACUUM, then empty the WAL.

    In WAL mode VACUUM writes the new database into the WAL; the file shrinks at the checkpoint.
    """
    with store.transaction() as conn:
        conn.execute("COMMIT")  # VACUUM refuses to run in a transaction; the store lock stays held
        try:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            if free and free >= pages * VACUUM_FREE_RATIO:
                conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # partial if a reader is open
        finally:
            conn.execute("BEGIN IMMEDIATE")


# -- recovery ---------------------------------------------------------------------------------

def finish_interrupted_compaction(queue: Queue) -> bool:
    """On open: finish a compaction that died after step (b); True if there was one.

    Costs one read when there is nothing to do. A compaction that holds its lock is alive, not
    interrupted, and is left alone: it renames its copy itself.
    """
    # Called from Queue._open, before any other thread can use this queue's connection.
    if queue.store.conn.execute("SELECT 1 FROM meta WHERE key = ?", (_MARKER,)).fetchone() is None:
        return False
    import filelock  # every queue open reaches this function, almost never this line

    try:
        with _compact_lock(queue.path, timeout=0):
            return _redo(queue)
    except filelock.Timeout:
        return False


def _redo(queue: Queue) -> bool:
    """Under the compaction lock: redo the rename the marker announces, then clear it."""
    with queue.store.transaction() as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (_MARKER,)).fetchone()
        if row is None:
            return False
        segment, copy = int(row[0]), _copy_path(queue.log, int(row[0]))
        renamed = os.path.exists(copy)  # whole, since (a) fsynced it; if gone, (c) was done
        if renamed:
            os.replace(copy, queue.log.path(segment))
            durable.sync_dir(queue.log.directory)
        conn.execute("DELETE FROM meta WHERE key = ?", (_MARKER,))
    log.warning("maintenance.compaction_finished", segment=segment, renamed=renamed)
    return True


def _remove_stale_copies(log_: Log) -> None:
    """Copies a compaction left before its step (b): no job points into them."""
    for name in os.listdir(log_.directory):
        if name.endswith(".compact"):
            os.unlink(os.path.join(log_.directory, name))


# -- helpers ----------------------------------------------------------------------------------

def _compact_lock(root: str, timeout: float = -1) -> filelock.FileLock:
    import filelock

    return filelock.FileLock(os.path.join(root, "compact.lock"), timeout=timeout,
                             mode=durable.FILE_MODE)


def _copy_path(log_: Log, segment: int) -> str:
    return os.path.join(log_.directory, f"{segment:012d}.compact")


def _tree_size(root: str) -> int:
    return sum(_size(os.path.join(d, name)) for d, _, files in os.walk(root) for name in files)


def _size(path: str) -> int:
    try:
        return os.lstat(path).st_size
    except FileNotFoundError:  # a temporary file that came and went
        return 0


def _crash_point(where: str) -> None:
    """Fault-test seam: die here (as a kill or power cut would) when a crash test asks to."""
    if os.environ.get(_CRASH_AT) == where:
        os.kill(os.getpid(), signal.SIGKILL)

