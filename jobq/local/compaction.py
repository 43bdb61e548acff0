"""Compaction: rewrite the log without the records no job points to, while the queue runs.

Records die when their job is purged (:mod:`jobq.maintenance`); a later duplicate of a job id and
a damaged range are dead from the start. A compaction first seals the segment producers append
to if some of the records the index has passed in it are dead (:meth:`Log.seal`), so that a
queue which never rolls over shrinks too. Then it takes each segment that a later one follows
and the index has passed (producers never write them), one at a time: a segment of dead records
only is deleted; one holding dead records beside live ones, whatever their jobs' status, is
rewritten in place:

    (a) copy the live frames, byte for byte and in order, to ``log/<N>.compact``; fsync it
    (b) one transaction: move each live job's ``seq`` (and its ``ready`` or ``scheduled`` row)
        to its new offset; meta ``compacting = N``
    (c) rename the copy over segment N; fsync the directory
    (d) clear the marker

The segment keeps its number and its records their order, so arrival order (seq) is unchanged.
The store's write lock is held from (b) to (d), so no claim, retry or locked read acts on a moved
seq before the file matches it. A job claimed before (b) carries its old position: a reader that
finds another record there reads the job's record again under the write lock
(:meth:`Store.job_record`). A crash before (b) leaves only a copy no job points to, removed by the
next compaction; a crash after (b) leaves the marker, and whoever next holds the write lock (an
open, a compaction, a locked read) redoes the rename if the copy is still there
(:func:`jobq.local.compaction_redo.redo_interrupted`), then clears the marker.

A record an old key signed (:mod:`jobq.local.keys`) is copied signed with the current key instead, as
long as before, so every rewrite also re-signs; :func:`compact` with ``resign=True`` (``jobq rekey``)
rewrites every segment holding such a record, dead bytes or not.

A segment left with no dead byte is remembered with its count of jobs (meta
``clean_segment:N``) and not read again until one of its jobs is purged, so a compaction reads
only the segments where records died. Only one compaction runs at a time (``compact.lock``).
:func:`compact` does everything at once; :func:`compaction_steps` yields after each segment, for
a worker that compacts between its other duties (:mod:`jobq.local.upkeep`).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from . import durable, permissions
from .compaction_redo import MARKER, copy_path, lock, redo_interrupted, remove_stale_copies
from .index import seq_of
from .log import Damage, Entry, Log, Position, Sealed, Tail
from ..state import WAITING, Status
from .._logging import get_logger

if TYPE_CHECKING:
    from .parts import Parts

__all__ = ["CompactReport", "compact", "compaction_steps", "dead_bytes",
           "lock", "purged_since", "redo_interrupted",
           "PURGED_KEY"]

log = get_logger(__name__)

VACUUM_FREE_RATIO = 0.1  # VACUUM rewrites the whole file: worth it once a tenth of it is free
PURGED_KEY = "purged_since_compaction"  # meta: records purged since a compaction last ended
_CRASH_AT = "JOBQ_TEST_CRASH_AT"


@dataclasses.dataclass(frozen=True)
class CompactReport:
    """What one compaction did. Sizes are of the log segments and the SQLite database file (not
    its WAL, which SQLite reuses and a running worker keeps at its working size)."""

    segments_rewritten: int
    segments_deleted: int
    segments_skipped: int  # changed under it, or the index points at bytes that are no record
    records_dropped: int
    bytes_before: int
    bytes_after: int  # producers appending meanwhile count here
    bytes_reclaimed: int  # freed for good: log bytes removed and the database file's shrink
    records_resigned: int = 0  # kept records an old key had signed, now the current key's


def compact(engine: Parts, *, resign: bool = False) -> CompactReport:
    """Rewrite sealed segments without dead records, delete empty ones, shrink the store; with
    ``resign``, also rewrite (sealing the newest) every segment with a record an old key signed."""
    with lock(engine.path):  # two compactions never overlap
        engine.store.checkpoint()  # so that the database file's size before counts its WAL pages
        run = _Run(engine, catch_up=None, min_dead_share=0.0, max_live=None, resign=resign)
        for _ in run.steps():
            pass
        run.shrink_store()
    return run.finish()


def compaction_steps(engine: Parts, *, catch_up: int = 4, min_dead_share: float = 0.0,
                     max_live: int | None = None) -> Iterator[None]:
    """A compaction that yields after each segment; nothing at all if another one runs.

    For a worker's supervisor: it indexes at most ``catch_up`` batches of new records (its
    children index the rest as they claim) and leaves the database file as it is (VACUUM would
    hold the write lock for as long as it takes to rewrite the file; the free pages are reused).
    A segment is rewritten only if at least ``min_dead_share`` of its bytes are dead: the write
    lock is held while its live jobs are repointed (about 10 µs each), so a worker leaves a
    segment of many live jobs and few dead ones for later, and one of more than ``max_live`` live
    jobs to ``jobq compact``. Closing the generator part-way releases the lock; the segments done
    so far stay done.
    """
    import filelock  # here, not at the top: only compaction needs it, not every start-up

    held = lock(engine.path, timeout=0)
    try:
        held.acquire()
    except filelock.Timeout:
        return
    try:
        run = _Run(engine, catch_up=catch_up, min_dead_share=min_dead_share, max_live=max_live)
        yield from run.steps()
        run.finish()
    finally:
        held.release()


def purged_since(engine: Parts) -> int:
    """How many records were purged since a compaction last ended (one read)."""
    with engine.store.reading():
        row = engine.store.conn.execute("SELECT value FROM meta WHERE key = ?",
                                       (PURGED_KEY,)).fetchone()
    return max(0, int(row[0])) if row else 0


def dead_bytes(engine: Parts) -> int:
    """About how many log bytes a compaction would free now: the log's size times the share of
    its records that were purged since a compaction last ended (a count of the jobs)."""
    purged = purged_since(engine)
    if not purged:
        return 0
    with engine.store.reading():
        live = engine.store.conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
    return _log_size(engine.log) * purged // (live + purged)


class _Run:
    """One compaction, under the compaction lock."""

    def __init__(self, engine: Parts, *, catch_up: int | None, min_dead_share: float,
                 max_live: int | None, resign: bool = False) -> None:
        self.engine, self.store, self.log = engine, engine.store, engine.log
        self.catch_up, self.min_dead_share, self.max_live = catch_up, min_dead_share, max_live
        self.resign = resign
        self.tally: Counter[str] = Counter()
        self.purged = 0  # PURGED_KEY when this run started: what its end forgets
        self.before = 0

    def steps(self) -> Iterator[None]:
        with self.store.transaction() as conn:
            redo_interrupted(conn, self.log)
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (PURGED_KEY,)).fetchone()
            self.purged = int(row[0]) if row else 0
        remove_stale_copies(self.log)
        self.before = _stored_size(self.engine)
        self.log.seal_stragglers()  # before anything is deleted: see Log.seal
        self.store.catch_up(self.catch_up)
        if self._seal_newest():
            crash_point("sealed")
            self.store.catch_up(self.catch_up)  # past the seal: the sealed segment is compacted
        covered = self.store.covered()
        for segment in self.log.segments()[:-1]:  # producers append to the last one
            if segment < covered.segment:  # wholly indexed
                yield
                outcome, dropped, freed, resigned = self._segment(segment)
                self.tally[outcome] += 1
                self.tally["dropped"] += dropped
                self.tally["freed"] += freed
                self.tally["resigned"] += resigned
        with self.store.transaction() as conn:  # what was purged before this run is gone now
            conn.execute("UPDATE meta SET value = MAX(0, value - ?) WHERE key = ?",
                         (self.purged, PURGED_KEY))

    def shrink_store(self) -> None:
        """Give the pages of purged jobs back to the file system: VACUUM, then empty the WAL.

        In WAL mode VACUUM writes the new database into the WAL; the file shrinks at the
        checkpoint.
        """
        db_path = self.engine.store.db_path
        with self.store.transaction() as conn:
            conn.execute("COMMIT")  # VACUUM refuses to run in a transaction; the lock stays held
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the purges, into the file
                size = _size(db_path)
                pages = conn.execute("PRAGMA page_count").fetchone()[0]
                free = conn.execute("PRAGMA freelist_count").fetchone()[0]
                if free and free >= pages * VACUUM_FREE_RATIO:
                    conn.execute("VACUUM")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # partial if a reader is open
            finally:
                conn.execute("BEGIN IMMEDIATE")
        self.tally["freed"] += max(0, size - _size(db_path))

    def finish(self) -> CompactReport:
        t = self.tally
        report = CompactReport(t["rewritten"], t["deleted"], t["skipped"], t["dropped"],
                               self.before, _stored_size(self.engine), t["freed"], t["resigned"])
        log.info("maintenance.compacted", **dataclasses.asdict(report))
        return report

    # -- the segment producers append to --------------------------------------------------------

    def _seal_newest(self) -> bool:
        """Seal the newest segment if records the index has passed in it are dead; True if so.

        Only those: records appended since the last catch-up are not indexed yet, not dead.
        """
        covered = self.store.covered()
        if covered.offset == 0 or self.log.segments()[-1:] != [covered.segment]:
            return False
        with self.store.reading():
            live = {row[1] for row in _live(self.store.conn, covered.segment)}
        kept, old = 0, False
        for item in self.log.scan(Position(covered.segment, 0)):
            if isinstance(item, (Sealed, Tail)) or item.pos.offset >= covered.offset:
                break
            if isinstance(item, Entry) and seq_of(item.pos) in live:
                kept += item.frame.size
                old = old or item.frame.signer != 0
        if not self._worth_it(covered.offset - kept, covered.offset) \
                and not (self.resign and old):
            return False  # sealing would only start a new segment
        return self.log.seal(covered.segment)

    def _worth_it(self, dead: int, size: int) -> bool:
        return dead > 0 and dead >= size * self.min_dead_share

    # -- one sealed segment ---------------------------------------------------------------------

    def _segment(self, segment: int) -> tuple[str, int, int, int]:
        """Delete, rewrite, skip or keep one sealed segment: (what was done, records dropped,
        bytes freed, records re-signed)."""
        with self.store.reading():
            rows = _live(self.store.conn, segment)
            clean = self.store.conn.execute("SELECT value FROM meta WHERE key = ?",
                                            (_clean_key(segment),)).fetchone()
        if clean is not None and clean[0] == len(rows) and not self.resign:
            return "kept", 0, 0, 0  # no job of it was purged since it was found without dead bytes
        if self.max_live is not None and len(rows) > self.max_live:
            return "kept", 0, 0, 0  # repointing them all would hold the write lock too long
        entries, damaged = _scan(self.log, segment)
        live = {row[1] for row in rows}
        keep = [e for e in entries if seq_of(e.pos) in live]
        if len(keep) != len(live):
            log.warning("maintenance.segment_skipped", segment=segment,
                        reason="the index points at bytes that are not a record")
            return "skipped", 0, 0, 0
        dropped = len(entries) - len(keep)
        size = _size(self.log.path(segment))
        dead = size - sum(e.frame.size for e in keep)  # damaged bytes are dead too
        old = sum(e.frame.signer != 0 for e in keep)
        if keep and not self._worth_it(dead, size) and not (self.resign and old):
            if not dead:  # the next compactions skip it until one of its jobs is purged
                with self.store.transaction() as conn:
                    conn.execute("REPLACE INTO meta (key, value) VALUES (?, ?)",
                                 (_clean_key(segment), len(keep)))
            return "kept", 0, 0, 0
        if not keep:
            if not self._delete(segment):
                return "skipped", 0, 0, 0
            log.info("maintenance.segment_deleted", segment=segment, records_dropped=dropped,
                     bytes=size)
            return "deleted", dropped, size, 0
        moves = _write_copy(self.log, segment, keep)
        crash_point("copied")
        if not self._commit(segment, moves):
            os.unlink(copy_path(self.log, segment))
            return "skipped", 0, 0, 0
        after = _size(self.log.path(segment))
        log.info("maintenance.segment_rewritten", segment=segment, records_kept=len(keep),
                 records_dropped=dropped, records_resigned=old, bytes_after=after,
                 unfinished=sum(not Status(r[2]).finished for r in rows))
        return "rewritten", dropped, size - after, old

    def _delete(self, segment: int) -> bool:
        """Unlink a segment no job points into (checked under the write lock); False if one does."""
        with self.store.transaction() as conn:
            if _live(conn, segment):  # a rebuild of the index meanwhile
                return False
            conn.execute("DELETE FROM meta WHERE key = ?", (_clean_key(segment),))
            os.unlink(self.log.path(segment))
            durable.sync_dir(self.log.directory)
            crash_point("deleted")
        return True

    def _commit(self, segment: int, moves: dict[int, int]) -> bool:
        """Steps (b) to (d) under one hold of the store lock; False if a job in the segment is
        not in the copy (the index was rebuilt meanwhile)."""
        with self.store.transaction() as conn:
            rows = _live(conn, segment)
            if any(seq not in moves for _, seq, _, _, _ in rows):
                return False
            # Ascending seq: each new offset is at or below the old one and above every
            # already-moved record's, so no UPDATE meets a seq still held by a job (seq is UNIQUE).
            conn.executemany("UPDATE jobs SET seq = ? WHERE job_id = ?",
                             [(moves[seq], job_id) for job_id, seq, _, _, _ in rows])
            waiting = [r for r in rows if Status(r[2]) in WAITING]  # only these have index rows
            conn.executemany("UPDATE ready SET seq = ? WHERE neg_priority = ? AND seq = ?",
                             [(moves[seq], -priority, seq) for _, seq, _, priority, _ in waiting])
            conn.executemany("UPDATE scheduled SET seq = ? WHERE run_at = ? AND seq = ?",
                             [(moves[seq], run_at, seq) for _, seq, _, _, run_at in waiting])
            conn.execute("REPLACE INTO meta (key, value) VALUES (?, ?)", (MARKER, segment))
            if len(rows) == len(moves):  # else jobs purged since the copy are dead in it
                conn.execute("REPLACE INTO meta (key, value) VALUES (?, ?)",
                             (_clean_key(segment), len(rows)))
            conn.execute("COMMIT")  # (b) is durable; the lock stays held until (d) commits
            try:
                crash_point("committed")
                os.replace(copy_path(self.log, segment), self.log.path(segment))
                durable.sync_dir(self.log.directory)
                crash_point("renamed")
            finally:
                conn.execute("BEGIN IMMEDIATE")  # what the transaction's exit commits
            conn.execute("DELETE FROM meta WHERE key = ?", (MARKER,))
        return True


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
    """Step (a): the kept frames, in order, durably in the copy; old seq -> new. A frame is
    copied byte for byte, or re-signed with the current key if an old key signed it."""
    moves, offset = {}, 0
    src = os.open(log_.path(segment), os.O_RDONLY | os.O_CLOEXEC)
    dst = permissions.open_file(copy_path(log_, segment), os.O_WRONLY | os.O_TRUNC)
    try:
        for entry in keep:
            moves[seq_of(entry.pos)] = seq_of(Position(segment, offset))
            if entry.frame.signer:
                durable.write_all(dst, log_.encode(entry.frame.kind, entry.frame.body))
            else:
                durable.copy_range(src, dst, entry.pos.offset, entry.frame.size)
            offset += entry.frame.size
            crash_point("copying")  # a copy cut short, never fsynced
        durable.sync_file(dst)
    finally:
        os.close(src)
        os.close(dst)
    # The marker will say "the copy exists": its directory entry must survive a power cut too.
    durable.sync_dir(log_.directory)
    return moves


# -- helpers ----------------------------------------------------------------------------------

def _clean_key(segment: int) -> str:
    """Meta key: how many live jobs the segment held when it was last seen with no dead byte."""
    return f"clean_segment:{segment}"


def _log_size(log_: Log) -> int:
    """The log's bytes, less the zero fill after the newest segment's records: like the WAL,
    room kept for the next appends, which no compaction frees."""
    end = log_.end()
    return sum(_size(log_.path(s)) for s in log_.segments() if s < end.segment) + end.offset


def _stored_size(engine: Parts) -> int:
    """The log's and the database file's bytes: what compaction can free for good."""
    return _log_size(engine.log) + _size(engine.store.db_path)


def _size(path: str) -> int:
    try:
        return os.lstat(path).st_size
    except FileNotFoundError:  # deleted by a compaction, or a file that came and went
        return 0


def crash_point(where: str) -> None:
    """Fault-test seam: die here (as a kill or power cut would) when a crash test asks to."""
    if os.environ.get(_CRASH_AT) == where:
        os.kill(os.getpid(), signal.SIGKILL)
