"""The hot path: ended attempts recorded and the next jobs claimed in one transaction.

``settle`` is one transaction and one durable commit, whatever the batch size:

1. lock the finished jobs' rows (``FOR UPDATE``, in id order so that two settles never wait on
   each other in a cycle) with their snapshots and the server's time (those of claims of other
   owners read again after the lock: see ``_SNAPSHOTS``), and keep only the claims still
   current: the fencing token must match, or the entry records nothing (None);
2. apply each :data:`~jobq.engine.Change` in Python with the server's clock, write the new
   snapshots and rows; finished jobs move to ``jobq_done`` in the same statement;
3. make due delayed and retrying jobs ready (``SKIP LOCKED``: workers never queue behind one
   another for it; every PROMOTE_EVERY seconds of the engine, and whenever a claim finds fewer
   ready jobs than it asked for, before claiming the rest);
4. mark the prefetched claims that started (if any), then claim, in one statement: a CTE selects
   the ctids of the first ready rows by priority, then arrival, ``FOR UPDATE SKIP LOCKED`` with
   a ``LIMIT``, into an array (the CTE keeps the planner from updating more rows than the
   limit), and the UPDATE hands those rows out by those ctids with the next token.

Every statement reads the rows of its jobs only, whatever the table's statistics say (an
ANALYZE of an emptied queue made them read the whole queue): see :mod:`jobq.postgres.seeks`.

The first ``limit`` claims are started; the next ``prefetch`` are marked not started
(``prefetched``), so a dead owner's unstarted claims go back uncharged.

A settle's statements, whatever its size: the first (the server's time, and its plans' settings:
_BEGIN), the write of the finished jobs (their rows locked first by one more when they are not
all this process's claims, as a reaper's or a child's watcher's are) and of their totals, the
marks of started prefetched claims if any (two: locked, then written), and the claim (when it
finds too few ready jobs: promote, and claim the rest; every PROMOTE_EVERY seconds it promotes
first). (Pipeline mode, sending them in one go, measured no faster on a 2-core
machine, where the server's CPU is what a drain runs out of.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import psycopg

from .. import transitions
from ..engine import Change, Claim
from ..codec import SnapshotCodec
from ..state import JobState
from ..totals import tally
from . import dependencies, jobs, limits, seeks, totals
from .jobs import BLOB, NOW, STATE

PROMOTE_BATCH = 1_000

# A row a claim of this process returned (the claim's RETURNING: STATE, token, priority, seq,
# snapshot, frame, max_attempts, the ctid of the version it wrote) and the state made from it
# (its Claim's), kept by the engine until the job is settled. The settle of a claim without a
# snapshot makes the job's new state from that one (its row's scalars over a fresh state, which
# jobq.transitions never changes in place) instead of from the row again: ~1 us a job. A
# snapshot's state is made again from the row: its checkpoint went to the task, which may have
# changed it in place without saving it.
Claimed = tuple[Sequence[Any], JobState]


class Settled(NamedTuple):
    """What :func:`settle` did: the finished jobs' new states (None for a claim no longer
    current), the new claims, their frames (job id -> framed record, read by the claim
    itself), and whether the finished jobs released others (dependents, a group's final job:
    see :class:`jobq.postgres.dependencies.Written`)."""

    states: list[JobState | None]
    claims: list[Claim]
    frames: dict[str, bytes]
    released: bool


# The due rows locked in the waiting index's order, written by the ctid the lock returned.
_PROMOTE = (
    "WITH d AS (SELECT ctid AS tid FROM jobq_jobs WHERE queue = %(q)s AND NOT ready"
    f" AND status IN ('queued', 'failed') AND run_at <= {NOW} ORDER BY run_at"
    f" LIMIT {PROMOTE_BATCH} FOR UPDATE SKIP LOCKED)"
    " UPDATE jobq_jobs j SET ready = true FROM d WHERE j.ctid = d.tid")

# A claimed job's snapshot, sought only in a queue that has any: an uncorrelated sub-select,
# which the server runs once a statement (an InitPlan, in the statement's snapshot as the probes
# it gates), so that a claim of new jobs (none has a snapshot) pays no probe of jobq_snapshots a
# row (``min`` of its primary key's column: one seek of the index, as jobq.postgres.jobs's).
_CLAIMED_BLOB = ("CASE WHEN (SELECT min(job_id) FROM jobq_snapshots WHERE queue = %(q)s)"
                 f" IS NOT NULL THEN {BLOB} END")
# The claim's rows come back in binary: each carries the job's frame (~300 bytes), which text results
# send hex-encoded, and numbers as text; decoding a claimed row cost the client ~5 us in text,
# ~3 in binary (100-row claims, psycopg 3.3's C loaders).
# One statement: the first n ready jobs locked (``ids``: an ``ARRAY`` of the ctids of the
# versions locked, in their order, so that the planner cannot update more rows than the LIMIT),
# and those rows claimed by those ctids (a TID scan: it reads them only); the first ``started``
# of them start now, the rest are prefetched.
_CLAIM = (
    f"WITH n AS (SELECT {NOW} AS now),"
    " ids AS (SELECT ARRAY(SELECT ctid FROM jobq_jobs WHERE queue = %(q)s AND ready"
    f" AND NOT held AND {limits.NO_LIMITS}"
    " ORDER BY priority DESC, seq LIMIT %(n)s FOR UPDATE SKIP LOCKED) AS t)"
    " UPDATE jobq_jobs j SET status = 'running', ready = false, attempts = j.attempts + 1,"
    " token = j.token + 1, owner = %(owner)s, lease_expires = n.now + %(lease)s,"
    " started_at = n.now, updated_at = n.now,"
    " prefetched = NOT (j.ctid = ANY((SELECT t[1:%(started)s::int] FROM ids)::tid[]))"
    " FROM n WHERE j.ctid = ANY((SELECT t FROM ids)::tid[])"
    f" RETURNING {STATE}, j.token, j.priority, j.seq, {_CLAIMED_BLOB},"
    " (SELECT p.frame FROM jobq_payloads p WHERE p.queue = j.queue AND p.job_id = j.job_id),"
    " j.max_attempts, j.ctid::text")

# The same claim of ids picked within the queue's limits (jobq.postgres.limits.pick).
_CLAIM_PICKED = _CLAIM.replace(
    _CLAIM[_CLAIM.index(" ids AS ("):_CLAIM.index(" UPDATE jobq_jobs j SET status")],
    " ids AS (SELECT ARRAY(SELECT"
    f" {seeks.seek('jobq_jobs', '%(q)s', 'i')} FROM unnest(%(ids)s::text[]) AS i) AS t)")

# A settle's first statement: the server's time, and for the rest of its transaction
# (set_config(..., true): it ends with it) plans that read the rows of its jobs only, whatever
# the statistics say (jobq.postgres.seeks.PIN): each statement's generic plan (planned once a
# connection, by primary key and arrays of ids), never a custom one. PostgreSQL plans a prepared
# statement anew for its first five runs on a connection, again after each ANALYZE of its tables,
# and at every run while the custom plan looks cheaper, as a claim of fewer than ~50 jobs does
# (0.3-0.5 ms of the server's CPU a settle). A custom plan also sees the lengths of the arrays:
# with statistics that underestimated the queue, the write of the jobs a child's watcher gives
# back hashed all the queue's rows (a bitmap scan of the whole queue: about 80 ms of the server's
# CPU a hand-back at 100,000 queued jobs). Without sorts, the claims read ready rows in the ready
# index's order: never all of a queue's ready rows fetched and sorted, the plan statistics made
# when the queue was small (or held other queues' rows) would choose, making each claim's cost
# grow with the backlog. (Statistics always lag a queue's depth: autovacuum analyzes after the
# fact.)
_BEGIN = f"SELECT {NOW}, {seeks.PIN}"
# The claim of a queue with limits picks its jobs with statements planned for the values they
# are given (jobq.postgres.limits.pick): back to custom plans for the rest of the transaction.
_CUSTOM_PLANS = f"SELECT {NOW}, set_config('plan_cache_mode', 'auto', true)"

# The rows locked in the order of the ids (sorted: two settles never wait on each other in a
# cycle), each sought by its id (jobq.postgres.seeks) and locked there: a lock that waited on
# another writer checks the row as it committed it, as a lock of a row found by id does.
_LOCK_FINISHED = (
    f"SELECT {STATE}, j.token, j.max_attempts, {BLOB}, {NOW}, j.owner"
    " FROM unnest(%(ids)b::text[]) AS i CROSS JOIN LATERAL (SELECT * FROM jobq_jobs x"
    " WHERE x.queue = %(q)s AND x.job_id >= i AND x.job_id <= i AND x.status = 'running'"
    " ORDER BY x.job_id LIMIT 1 FOR UPDATE) j")
# The snapshots of jobs claimed by another owner, read again once their rows are locked: a
# statement that waited for a row lock sees the row as its holder committed it, but every other
# table as of its start. A reaper whose lock waited on the owner saving a checkpoint would read
# the snapshot from before the save, and write the job back to the older checkpoint. (An owner
# settling its own claims never races its own saves: it needs no second statement.)
_SNAPSHOTS = (
    "SELECT s.job_id, s.blob FROM jobq_snapshots s WHERE s.ctid = ANY(ARRAY(SELECT"
    f" {seeks.seek('jobq_snapshots', '%(q)s', 'i')} FROM unnest(%(ids)b::text[]) AS i))")

# The started prefetched claims marked (a child's watcher handing back the claims of a batch
# that overran marks the one running): the rows of those still current locked by id, in id
# order (a lock that waited on a lease's renewal checks the row as committed; a write by ctid
# would miss its new version: jobq.postgres.seeks), then written by ctid, which nothing can
# change under the lock.
_LOCK_STARTED = (
    "SELECT 1 FROM unnest(%(sj)b::text[], %(st)b::bigint[]) AS v(job_id, token)"
    " CROSS JOIN LATERAL (SELECT 1 FROM jobq_jobs x WHERE x.queue = %(q)s"
    " AND x.job_id >= v.job_id AND x.job_id <= v.job_id AND x.token = v.token"
    " ORDER BY x.job_id LIMIT 1 FOR UPDATE) j")
_STARTED = (
    "UPDATE jobq_jobs j SET prefetched = false"
    f" FROM (SELECT v.token, {seeks.seek('jobq_jobs', '%(q)s', 'v.job_id')} AS tid"
    " FROM unnest(%(sj)b::text[], %(st)b::bigint[]) AS v(job_id, token) OFFSET 0) v"
    " WHERE j.ctid = v.tid AND j.token = v.token")
# The same alone (a child's watcher marking the prefetched claim that runs long): one statement
# in its own transaction, committed without waiting for the WAL flush. The mark must outlive its
# worker (a SIGKILL of the whole worker then charges the attempt), not a crash of the server.
_STARTED_ALONE = (
    "WITH c AS (SELECT set_config('synchronous_commit', 'off', true))"
    " UPDATE jobq_jobs j SET prefetched = false"
    " FROM unnest(%b::text[], %b::bigint[]) AS v(job_id, token), c"
    " WHERE j.queue = %s AND j.job_id = v.job_id AND j.token = v.token")


def mark_started(conn: psycopg.Connection[Any], queue: str,
                 started: Sequence[tuple[str, int]]) -> None:
    """Outside a transaction: mark prefetched claims started (see _STARTED_ALONE)."""
    conn.execute(_STARTED_ALONE, ([j for j, _ in started], [t for _, t in started], queue),
                 prepare=True)


def server_now(conn: psycopg.Connection[Any]) -> float:
    row = conn.execute(f"SELECT {NOW}", prepare=True).fetchone()
    assert row is not None
    return float(row[0])


def settle(conn: psycopg.Connection[Any], codec: SnapshotCodec, queue: str,
           finished: Sequence[tuple[str, int, Change]], owner: str, limit: int, *,
           lease_seconds: float, prefetch: int, started: Sequence[tuple[str, int]],
           promote: bool = True, claimed: dict[str, Claimed] | None = None
           ) -> Settled:
    """Inside the caller's transaction: see the module docstring. ``claimed``: the rows
    of this process's claims by job id (see :data:`Claimed`), read for the finished jobs
    and added to with the new claims."""
    claiming = limit + prefetch > 0
    row = conn.execute(_BEGIN, prepare=True).fetchone()
    assert row is not None
    states, released = (finish_in(conn, codec, queue, finished, owner, claimed, float(row[0]))
                        if finished else ([], False))
    if started:
        marked = {"q": queue, "sj": [j for j, _ in sorted(started)],
                  "st": [t for _, t in sorted(started)]}
        conn.execute(_LOCK_STARTED, marked, prepare=True).fetchall()
        conn.execute(_STARTED, marked, prepare=True)
    if not claiming:
        return Settled(states, [], {}, released)
    if promote:
        conn.execute(_PROMOTE, {"q": queue}, prepare=True)
    claims: list[Claim] = []  # the started ones first, then the prefetched
    frames: dict[str, bytes] = {}
    to_start, wanted = limit, limit + prefetch
    for attempt in range(1 if promote else 2):
        if attempt:  # too few ready ones without promoting: due ones may be waiting
            conn.execute(_PROMOTE, {"q": queue}, prepare=True)
        got, found = _claim(conn, codec, queue, owner, wanted, to_start, lease_seconds, claimed)
        claims += got
        frames.update(found)
        to_start, wanted = max(0, to_start - len(got)), wanted - len(got)
        if wanted <= 0:
            break
    if not claims and limits.active(conn, queue):  # the plain claim takes none then
        claims, frames = _claim_limited(conn, codec, queue, owner, wanted, to_start,
                                        lease_seconds, claimed)
    return Settled(states, claims, frames, released)


def _claim_limited(conn: psycopg.Connection[Any], codec: SnapshotCodec, queue: str, owner: str,
                   n: int, to_start: int, lease_seconds: float,
                   claimed: dict[str, Claimed] | None = None
                   ) -> tuple[list[Claim], dict[str, bytes]]:
    """The claim of a queue with limits: the ids picked within them, claimed as _CLAIM does."""
    row = conn.execute(_CUSTOM_PLANS, prepare=True).fetchone()
    assert row is not None
    ids = limits.pick(conn, queue, to_start, n - to_start, float(row[0]))
    if not ids:
        return [], {}
    rows = conn.execute(_CLAIM_PICKED, {"q": queue, "ids": ids, "owner": owner,
                                        "lease": lease_seconds, "started": to_start},
                        binary=True).fetchall()
    order = {job_id: i for i, job_id in enumerate(ids)}  # the started ones first
    rows.sort(key=lambda r: order[r[0]])
    return _taken(codec, rows, claimed)


def _claim(conn: psycopg.Connection[Any], codec: SnapshotCodec, queue: str, owner: str, n: int,
           to_start: int, lease_seconds: float, claimed: dict[str, Claimed] | None = None
           ) -> tuple[list[Claim], dict[str, bytes]]:
    rows = conn.execute(_CLAIM, {"q": queue, "n": n, "owner": owner, "lease": lease_seconds,
                                 "started": to_start}, prepare=True,
                        binary=True).fetchall()  # (binary: frames not hex-decoded, see _CLAIM)
    rows.sort(key=lambda r: (-r[11], r[12]))  # priority, then arrival: the array's order
    return _taken(codec, rows, claimed)


def _taken(codec: SnapshotCodec, rows: list[Any], claimed: dict[str, Claimed] | None
           ) -> tuple[list[Claim], dict[str, bytes]]:
    """The claims of a claim's rows, in their order, and their frames (job id -> framed
    record); the rows kept in ``claimed`` by job id."""
    claims = [Claim(r[0], r[10], jobs.state_of(codec, r, r[13], writing=True)) for r in rows]
    if claimed is not None:
        claimed.update((r[0], (r, c.state)) for r, c in zip(rows, claims))
    return claims, {r[0]: bytes(r[14]) for r in rows if r[14] is not None}


def finish_in(conn: psycopg.Connection[Any], codec: SnapshotCodec, queue: str,
              finished: Sequence[tuple[str, int, Change]], owner: str,
              claimed: dict[str, Claimed] | None, now: float
              ) -> tuple[list[JobState | None], bool]:
    """Apply each change under its claim; None for a claim no longer current (or purged).
    ``owner``: who settles (its own claims' snapshots are read with their rows). ``claimed``:
    the rows of this process's claims (see :data:`Claimed`). ``now``: the server's time at the
    transaction's start (rows locked first are changed at the time they were locked). Also says
    whether other jobs were released (see :class:`jobq.postgres.dependencies.Written`)."""
    done: dict[tuple[str, int], JobState] = {}
    rest, released = (_finish_claimed(conn, codec, queue, finished, claimed, done, now)
                      if claimed else (finished, False))
    if rest:
        released = _finish_locked(conn, codec, queue, rest, owner, done) or released
    results: list[JobState | None] = []
    for job_id, token, _ in finished:
        results.append(done.pop((job_id, token), None))  # listed twice: recorded once
    return results, released


def _finish_claimed(conn: psycopg.Connection[Any], codec: SnapshotCodec, queue: str,
                    finished: Sequence[tuple[str, int, Change]], claimed: dict[str, Claimed],
                    done: dict[tuple[str, int], JobState], now: float
                    ) -> tuple[Sequence[tuple[str, int, Change]], bool]:
    """The jobs of ``finished`` this process claimed, written without a lock statement: their
    states are made from the rows their claims returned, and written under a fence (the
    claim's token, and the columns that may change while a job runs: jobq.postgres.jobs.Fence)
    in the statement that writes them; what it does not write (a row changed since, a claim
    not current) is returned for the locking path, which reads the row again, with whether
    other jobs were released."""
    mine = {}
    for job_id, token, change in finished:
        kept = claimed.get(job_id)
        if kept is not None and kept[0][10] == token and job_id not in mine:
            mine[job_id] = (token, change, kept[0], kept[1])
    if not mine:
        return finished, False
    new: list[JobState] = []
    fences: list[jobs.Fence | None] = []
    for job_id in sorted(mine):  # rows written in id order, as the locking path locks them
        token, change, row, state = mine[job_id]
        if row[13] is not None:  # its checkpoint went to the task: see Claimed
            state = jobs.state_of(codec, row, row[13], writing=True)
        new.append(change(state, now, row[15]))
        fences.append((token, row[8], row[6], row[4], row[16]))
    written, released = dependencies.write(conn, codec, queue, new, now,
                                           {job_id for job_id, (_, _, row, _) in mine.items()
                                            if row[13] is not None}, fences, pinned=True)
    ended = [state for state in new if state.job_id in written]
    for state in ended:
        done[(state.job_id, mine[state.job_id][0])] = state
    totals.add(conn, queue, tally(ended, now))
    return [entry for entry in finished if entry[0] not in written], released


def _finish_locked(conn: psycopg.Connection[Any], codec: SnapshotCodec, queue: str,
                   finished: Sequence[tuple[str, int, Change]], owner: str,
                   done: dict[tuple[str, int], JobState]) -> bool:
    """Lock the rows, then apply and write each change whose claim is current (into ``done``);
    True if other jobs were released."""
    found = conn.execute(_LOCK_FINISHED, {"q": queue, "ids": sorted(
        {job_id for job_id, _, _ in finished})}, prepare=True).fetchall()
    rows = {row[0]: row for row in found}
    blobs: dict[str, Any] = {job_id: row[12] for job_id, row in rows.items()}
    others = [job_id for job_id, row in rows.items() if row[14] != owner]
    if others:
        blobs.update(conn.execute(_SNAPSHOTS, {"q": queue, "ids": others},
                                  prepare=True).fetchall())
    now = float(found[0][13]) if found else 0.0
    new: dict[str, JobState] = {}
    for job_id, token, change in finished:
        row = rows.get(job_id)
        if row is None or row[10] != token or job_id in new:  # listed twice: recorded once
            continue
        state = jobs.state_of(codec, row, blobs.get(job_id), writing=True)
        new[job_id] = done[(job_id, token)] = change(state, now, row[11])
    released = dependencies.write(conn, codec, queue, list(new.values()), now,
                                  {job_id for job_id in new if blobs.get(job_id) is not None},
                                  pinned=True).released
    totals.add(conn, queue, tally(new.values(), now))
    return released


def save_checkpoint(conn: psycopg.Connection[Any], codec: SnapshotCodec, queue: str, job_id: str,
                    token: int, checkpoint: Any, progress: float | None) -> JobState:
    """Inside the caller's transaction: lock the job under its claim, store its checkpoint.

    The token is checked in the statement that locks the row and again in the one that writes
    it: a claim that is not current writes nothing (StaleClaim; JobNotFound if it is gone).
    """
    row = conn.execute(
        f"SELECT {STATE}, {NOW}, {BLOB} FROM jobq_jobs j WHERE j.queue = %s AND j.job_id = %s"
        " AND j.token = %s AND j.status = 'running' FOR UPDATE", (queue, job_id, token),
        prepare=True).fetchone()
    if row is None:
        raise jobs.claim_error(conn, queue, job_id, token)
    now = float(row[10])
    current = jobs.state_of(codec, row, row[11], writing=True)
    state = transitions.checkpointed(current, checkpoint, progress, now, token)
    written = conn.execute(
        "UPDATE jobq_jobs SET progress = %s, updated_at = %s WHERE queue = %s AND job_id = %s"
        " AND token = %s AND status = 'running'",
        (float(state.progress), now, queue, job_id, token), prepare=True).rowcount
    if not written:  # cannot happen under the row lock; never write a snapshot unfenced
        raise jobs.claim_error(conn, queue, job_id, token)
    conn.execute("INSERT INTO jobq_snapshots (queue, job_id, blob) VALUES (%s, %s, %s)"
                 " ON CONFLICT (queue, job_id) DO UPDATE SET blob = EXCLUDED.blob",
                 (queue, job_id, codec.encode(job_id, state)), prepare=True)
    return state
