"""Job rows and states: what the engine reads back, and how it writes a job's new state.

A job's state is its row's scalars laid over its snapshot (:func:`jobq.state.overlay`, the
directory engine's rule): claims change only the row, so a snapshot written before the last
claim is never read stale. A job without a snapshot (not yet ended an attempt, never
checkpointed) is its row alone.

Reads look in both tables, the hot ``jobq_jobs`` and ``jobq_done``; they are one statement
each, so they see every commit made before they started.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import psycopg

from ..state import overlay
from ..errors import CorruptRecord, JobNotFound, LoadError, StaleClaim, StorageError
from ..codec import SnapshotCodec
from ..state import FINISHED, JobState, Status, plain_success, row_only
from . import seeks

NOW = "extract(epoch FROM clock_timestamp())::float8"  # the server's clock, epoch seconds

# The rest of a statement whose CTE ``gone`` deleted finished jobs from jobq_done (RETURNING
# job_id): what they leave elsewhere (payloads, snapshots, their parents lists, ttls, unique and
# concurrency keys: a purged job's id may be used again, and its new job must not inherit them)
# goes too, and the statement returns how many. Every purge (by age, by id, by expiry) ends
# with it.
DELETE_WHAT_GONE_LEAVES = (
    " p AS (DELETE FROM jobq_payloads WHERE queue = %(q)s"
    " AND job_id IN (SELECT job_id FROM gone)),"
    " s AS (DELETE FROM jobq_snapshots WHERE queue = %(q)s"
    " AND job_id IN (SELECT job_id FROM gone)),"
    " d AS (DELETE FROM jobq_dependencies WHERE queue = %(q)s"
    " AND child IN (SELECT job_id FROM gone)),"
    " r AS (DELETE FROM jobq_retention WHERE queue = %(q)s"
    " AND job_id IN (SELECT job_id FROM gone)),"
    " k AS (DELETE FROM jobq_job_keys WHERE queue = %(q)s"
    " AND job_id IN (SELECT job_id FROM gone))"
    " SELECT count(*) FROM gone")

# The columns overlay builds a state from, less its last (``snap``: here the blob).
STATE = ("j.job_id, j.task, j.status, j.attempts, j.progress, j.run_at, j.cancel_requested,"
         " j.enqueued_at, j.updated_at, j.started_at")
# A job's snapshot: an unfinished one's is in jobq_snapshots, a finished one's in its row.
BLOB = "(SELECT s.blob FROM jobq_snapshots s WHERE s.queue = j.queue AND s.job_id = j.job_id)"
BLOBS = {"jobq_jobs": BLOB, "jobq_done": "j.blob"}
LISTED = ("job_id, task, status, priority, attempts, progress, run_at, enqueued_at, updated_at,"
          " owner")


def not_found(job_id: str) -> JobNotFound:
    return JobNotFound(f"no job with id {job_id!r}", job_id=job_id)


def state_of(codec: SnapshotCodec, row: Sequence[Any], blob: bytes | None, *,
             writing: bool = False) -> JobState:
    """A job's state from its STATE columns and its snapshot (None: it has none).

    ``writing``: the state is needed to write the job's next one, which cannot be made without
    it, so a snapshot that cannot be loaded is a StorageError naming the job (as in the
    directory engine); a read raises what loading raised (LoadError, CorruptRecord...).
    """
    try:
        snapshot = codec.decode(row[0], bytes(blob)) if blob is not None else None
    except (LoadError, CorruptRecord) as exc:
        if not writing:
            raise
        raise StorageError(f"state snapshot of job {row[0]!r} cannot be loaded: {exc}",
                           job_id=row[0]) from exc
    state = overlay((*row[:10], blob is not None), snapshot)
    if snapshot is None and state.status is Status.SUCCEEDED:  # a plain success (plain_success)
        state.finished_at = state.updated_at
    return state


def claim_error(conn: psycopg.Connection[Any], queue: str, job_id: str,
                token: int) -> StaleClaim | JobNotFound:
    """Why a write under claim ``token`` found no current claim: the job is gone, or another
    claim (or none) is current."""
    row = conn.execute("SELECT status, token FROM jobq_jobs WHERE queue = %s AND job_id = %s"
                       " UNION ALL SELECT status, token FROM jobq_done WHERE queue = %s"
                       " AND job_id = %s", (queue, job_id, queue, job_id)).fetchone()
    if row is None:
        return not_found(job_id)
    return StaleClaim(f"job {job_id!r}: claim {token} is no longer current (status {row[0]},"
                      f" claim {row[1]})", job_id=job_id, token=token)


def load(conn: psycopg.Connection[Any], codec: SnapshotCodec, queue: str, job_id: str,
         *, for_update: bool = False) -> tuple[JobState, tuple[Any, ...], bool]:
    """(state, row, whether it is finished) of one job, locked with ``for_update``."""
    lock = " FOR UPDATE" if for_update else ""
    for table, finished in (("jobq_jobs", False), ("jobq_done", True)):
        row = conn.execute(f"SELECT {STATE}, {BLOBS[table]}, j.priority, j.seq FROM {table} j"
                           f" WHERE j.queue = %s AND j.job_id = %s{lock}",
                           (queue, job_id)).fetchone()
        if row is not None:
            return state_of(codec, row, row[10], writing=for_update), row, finished
    raise not_found(job_id)


# What a settle saw of a job it claimed (jobq.postgres.settle): its claim's token, and the
# columns its state is made of that may change while it runs (a checkpoint's save sets
# ``updated_at`` with ``progress``, a cancel ``cancel_requested``). A write under a Fence
# changes the row only if all are still so. And where the claim left the row (its ``ctid``, as
# text): the write reaches it there, without seeking its id in the primary key (see _WRITE).
Fence = tuple[int, float, bool, float, str]  # token, updated_at, cancel_requested, progress, ctid


def write(conn: psycopg.Connection[Any], codec: SnapshotCodec, queue: str,
          new: Sequence[JobState], now: float, snapshotted: Collection[str] | None = None,
          fences: Sequence[Fence | None] | None = None, *, pinned: bool = False
          ) -> tuple[set[str], bool]:
    """Store the new states of jobs of ``jobq_jobs`` that are not running any more: their
    snapshots, and their rows, moved to ``jobq_done`` with their snapshots for those that
    finished. ``snapshotted``: the ids of those that had a snapshot in ``jobq_snapshots``
    (None: any may have). ``fences`` (one per state, None for a row the caller locked): a
    fenced job is written only if its row is as its fence says.

    ``pinned``: the transaction runs jobq.postgres.seeks.PIN (a settle's), the settings the
    statement is planned for: only then is it prepared, so that its plan, kept by the
    connection, is never one made without them.

    Returns the ids written, and whether a job that finished is some job's parent (the same
    statement looks: jobq.postgres.dependencies then releases them)."""
    if not new:
        return set(), False
    unsnap = [s.job_id for s in new if s.status in FINISHED
              and (snapshotted is None or s.job_id in snapshotted)]
    ids, status, attempts, progress, run_at, cancel = _columns(new)
    fenced = fences or [None] * len(new)
    rows = conn.execute(
        _WRITE, {"q": queue, "now": now, "ids": ids, "status": status, "attempts": attempts,
                 "progress": progress, "run_at": run_at, "cancel": cancel, "unsnap": unsnap,
                 "blobs": [None if _unsnapshotted(s, now, snapshotted)
                           else codec.encode(s.job_id, s) for s in new],
                 "token": [f and f[0] for f in fenced], "was_at": [f and f[1] for f in fenced],
                 "was_cancel": [f and f[2] for f in fenced],
                 "was_progress": [f and f[3] for f in fenced],
                 "at": [f and f[4] for f in fenced]}, prepare=pinned).fetchall()
    return {r[0] for r in rows}, any(r[1] for r in rows)


def _unsnapshotted(state: JobState, now: float, snapshotted: Collection[str] | None) -> bool:
    """Is ``state`` written without a snapshot: a plain success (jobq_done.blob NULL), or an
    unfinished state its row says all of (:func:`jobq.state.row_only`) of a job that has none
    to overwrite (no row in jobq_snapshots: its state is its row)."""
    if state.status in FINISHED:
        return plain_success(state, now)
    return snapshotted is not None and state.job_id not in snapshotted and row_only(state)


# A row written under a fence (see Fence); a row the caller locked has none (token NULL). The
# row at the fence's ctid must be the job's (its queue and id): the ctid may be another row's.
_FENCED = ("(v.token IS NULL OR (j.token = v.token AND j.status = 'running'"
           " AND j.updated_at = v.was_at AND j.cancel_requested = v.was_cancel"
           " AND j.progress = v.was_progress AND j.queue = %(q)s AND j.job_id = v.job_id))")
# Whether the queue has any ttl or any dependency at all: uncorrelated sub-selects, which the
# server runs once a statement (an InitPlan, in the statement's snapshot as the probes it gates),
# so that a queue without them pays no index probe per finished job for its ttl or dependents.
# ``min`` of a primary key's column: always one seek of the index, where an EXISTS planned
# generically (a prepared statement's plan) may scan the whole table, other queues' rows and all.
_ANY_RETENTION = "((SELECT min(job_id) FROM jobq_retention WHERE queue = %(q)s) IS NOT NULL)"
_ANY_DEPENDENCIES = "((SELECT min(child) FROM jobq_dependencies WHERE queue = %(q)s) IS NOT NULL)"
# One statement: the rows of jobs still waiting, their snapshots (those that need one: see
# _unsnapshotted), and finished ones moved (each saying whether it is a parent: a queue without
# dependencies pays no statement more for them); it returns the ids written. The snapshots
# follow the rows written (a fenced row not written keeps its snapshot). Each row is written by
# its ctid (``v.tid``): a fenced one's where its claim left it (``at``), any other's sought by
# its id (COALESCE runs the seek only for a row without one), as the snapshots deleted, and a
# finished job's ttl and dependents are sought by its id (jobq.postgres.seeks: under its
# settings, plans that read those rows only; a join of the ttls read all the queue's for each
# job once jobq_retention had been analyzed empty). A claim's ctid is as old as the claim: a
# row changed since (a lease renewed, a prefetched claim marked started) is not there any more
# and is not written (the caller's locking path writes it); a ctid used since by another row
# (pruned and reused) is not written either, as its queue, id and token say. Reaching the row
# there spares the server a seek of the primary key a job (21,500 of the 252,500 instructions
# a job of its backend in a settle loop of 250-job batches, under callgrind).
_WRITE = (
    "WITH v AS (SELECT u.*, coalesce(u.at::tid,"
    f" {seeks.seek('jobq_jobs', '%(q)s', 'u.job_id')}) AS tid"
    " FROM unnest(%(ids)b::text[], %(status)b::text[], %(attempts)b::int[],"
    " %(progress)b::float8[], %(run_at)b::float8[], %(cancel)b::bool[], %(blobs)b::bytea[],"
    " %(token)b::bigint[], %(was_at)b::float8[], %(was_cancel)b::bool[],"
    " %(was_progress)b::float8[], %(at)b::text[]) AS u(job_id, status, attempts, progress,"
    " run_at, cancel, blob, token, was_at, was_cancel, was_progress, at)),"
    " waiting AS (UPDATE jobq_jobs j SET status = v.status, attempts = v.attempts,"
    " progress = v.progress, run_at = v.run_at, cancel_requested = v.cancel,"
    " ready = v.status IN ('queued', 'failed') AND v.run_at <= %(now)s,"
    " owner = NULL, lease_expires = NULL, prefetched = false, updated_at = %(now)s"
    " FROM v WHERE j.ctid = v.tid"
    f" AND v.status NOT IN ('succeeded', 'dead', 'cancelled') AND {_FENCED} RETURNING j.job_id),"
    " snap AS (INSERT INTO jobq_snapshots (queue, job_id, blob) SELECT %(q)s, v.job_id, v.blob"
    " FROM v JOIN waiting w ON w.job_id = v.job_id WHERE v.blob IS NOT NULL"
    " ON CONFLICT (queue, job_id) DO UPDATE SET blob = EXCLUDED.blob),"
    " gone AS (DELETE FROM jobq_jobs j USING v WHERE j.ctid = v.tid"
    f" AND v.status IN ('succeeded', 'dead', 'cancelled') AND {_FENCED}"
    " RETURNING j.queue, j.job_id, j.seq, v.status, j.priority, v.run_at, v.attempts,"
    " j.max_attempts, j.token, v.cancel, v.progress, j.task, j.enqueued_at, j.started_at,"
    " v.blob),"
    " unsnap AS (DELETE FROM jobq_snapshots s WHERE s.ctid = ANY(ARRAY(SELECT"
    f" {seeks.seek('jobq_snapshots', '%(q)s', 'e.job_id')} FROM gone e"
    " WHERE e.job_id = ANY(%(unsnap)b::text[])))),"
    " done AS (INSERT INTO jobq_done (queue, job_id, seq, status, ready, priority, run_at,"
    " attempts, max_attempts, token, owner, lease_expires, prefetched, cancel_requested,"
    " progress, task, enqueued_at, updated_at, started_at, blob, expires_at)"
    " SELECT g.queue, g.job_id, seq, status, false, priority, run_at, attempts, max_attempts,"
    " token, NULL, NULL, false, cancel, progress, task, enqueued_at, %(now)s, started_at, blob,"
    " %(now)s + (SELECT CASE WHEN g.status = 'dead' THEN x.failure_ttl ELSE x.result_ttl END"
    f" FROM jobq_retention x WHERE {_ANY_RETENTION} AND x.queue = %(q)s"
    " AND x.job_id >= g.job_id AND x.job_id <= g.job_id ORDER BY x.job_id LIMIT 1)"
    " FROM gone g"
    f" RETURNING job_id, {_ANY_DEPENDENCIES} AND (SELECT x.parent FROM jobq_dependencies x"
    " WHERE x.queue = %(q)s AND x.parent >= jobq_done.job_id AND x.parent <= jobq_done.job_id"
    " ORDER BY x.parent LIMIT 1) IS NOT NULL AS parent)"
    " SELECT job_id, parent FROM done UNION ALL SELECT job_id, false FROM waiting")
assert {s.value for s in FINISHED} == {"succeeded", "dead", "cancelled"}


def _columns(states: Sequence[JobState]) -> tuple[list[Any], ...]:
    return ([s.job_id for s in states], [s.status.value for s in states],
            [s.attempts for s in states], [float(s.progress) for s in states],
            [float(s.run_at) for s in states], [bool(s.cancel_requested) for s in states])


# A retried job keeps its concurrency key (jobq_jobs.concurrency_key, jobq.postgres.limits),
# held if the key has a limit (under the key's lock).
_KEY_OF_BACK = ("(SELECT k.concurrency_key FROM jobq_job_keys k WHERE k.queue = back.queue"
                " AND k.job_id = back.job_id)")
_HELD_BACK = (f"EXISTS (SELECT 1 FROM jobq_limits l WHERE l.queue = back.queue"
              f" AND l.key = {_KEY_OF_BACK})")
# The lock of a concurrency key's limit (jobq.postgres.limits): the (int4, int4) space, as the
# lock of a unique key, but its first half hashes "limit <queue>", never a queue's name alone.
LOCK_KEY = "SELECT pg_advisory_xact_lock(hashtext('limit ' || %s), hashtext(%s))"
# The ready jobs of limited keys, held out of the plain ready index (jobq.postgres.limits): the
# condition of the keyed index's rows, so that its readers seek there.
HELD_READY = "ready AND concurrency_key IS NOT NULL AND held"


def unfinish(conn: psycopg.Connection[Any], codec: SnapshotCodec, queue: str, state: JobState,
             now: float) -> None:
    """Move a finished job back to ``jobq_jobs`` with its new (queued, or waiting for its
    parents) state: a retry."""
    key = conn.execute("SELECT concurrency_key FROM jobq_job_keys WHERE queue = %s"
                       " AND job_id = %s", (queue, state.job_id)).fetchone()
    if key is not None and key[0] is not None:
        conn.execute(LOCK_KEY, (queue, key[0]))
    conn.execute(
        "WITH back AS (DELETE FROM jobq_done WHERE queue = %s AND job_id = %s RETURNING *)"
        " INSERT INTO jobq_jobs (queue, job_id, seq, status, ready, priority, run_at, attempts,"
        " max_attempts, token, owner, lease_expires, prefetched, cancel_requested, progress,"
        " task, enqueued_at, updated_at, started_at, concurrency_key, held)"
        " OVERRIDING SYSTEM VALUE"
        " SELECT queue, job_id, seq, %s, %s, priority, %s, %s, max_attempts, token, NULL,"
        f" NULL, false, %s, %s, task, enqueued_at, %s, started_at, {_KEY_OF_BACK},"
        f" {_HELD_BACK} FROM back",
        (queue, state.job_id, state.status.value,
         state.status in (Status.QUEUED, Status.FAILED) and state.run_at <= now, state.run_at,
         state.attempts, bool(state.cancel_requested), float(state.progress), now))
    conn.execute("INSERT INTO jobq_snapshots (queue, job_id, blob) VALUES (%s, %s, %s)"
                 " ON CONFLICT (queue, job_id) DO UPDATE SET blob = EXCLUDED.blob",
                 (queue, state.job_id, codec.encode(state.job_id, state)))
