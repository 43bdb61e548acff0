"""The PostgreSQL engine: one named queue in a database, behind :class:`jobq.engine.Engine`.

Many processes on many hosts share it; each has one connection (:mod:`jobq.postgres.db`), and a
worker's supervisor two more: one holds its liveness lock (:mod:`jobq.postgres.liveness`), one
listens for new jobs (:mod:`jobq.postgres.wakeups`, unless the URL says ``wakeups=poll``).
Every time the engine stores is read from the server's clock, so hosts never compare clocks.
Records are the directory engine's frames, stored as they are and verified when read back;
snapshots are signed the same way (:class:`jobq.codec.SnapshotCodec`). The key can be rotated
(:mod:`jobq.postgres.keys`, :mod:`jobq.postgres.rekey`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .. import record
from ..engine import Change, Claim, Finished, Held, NoWakeups
from ..codec import SnapshotCodec
from ..errors import DamagedRecord, InvalidArgument
from ..pickling import PickleRules
from ..retention import Expiry
from ..state import FINISHED, JobState, Status
from ..verify_report import VerifyReport
from . import append, claims, jobs, keys, operating, purge_jobs, retention, settle
from .db import Db
from .dead_rows import DeadRowsWatch
from .dependencies import DependentJobs
from .groups import GroupedJobs
from .job_reads import JobReads
from .jobs import NOW, not_found
from .liveness import PgWorkers
from . import limits as pg_limits
from .limits import PgLimits
from .schedules import PgSchedules
from .url import PgLocation
from .verify import Checker
from .wakeups import Listener, Notifier, channel

# A busy worker makes due delayed and retrying jobs ready this often (and a claim that finds
# too few ready ones does it before claiming the rest).
PROMOTE_EVERY = 0.5
FRAMES_KEPT = 2_000  # frames of claims not yet finished kept for payload_body, at most


@dataclass(frozen=True)
class PgSettings:
    """The settings a queue in PostgreSQL was opened with (:class:`jobq.engine.Settings`)."""

    path: str  # the queue's URL, without its password
    secret_key: bytes | None
    rules: PickleRules
    max_record_size: int  # as recorded when the queue was made
    fsync: bool = True  # every commit is durable (synchronous_commit as the server has it)
    old_secret_keys: tuple[bytes, ...] = ()
    segment_size: int = 0  # no segments: the directory engine's setting


class PgEngine(JobReads, DependentJobs, GroupedJobs):
    """One named queue in a PostgreSQL database."""

    shared_group = None  # shared through the database's roles and grants, not a Unix group
    # Claims a worker child takes at once by default (Engine.prefetch). A settle costs 1.6 to
    # 3 ms of CPU (client and server, measured at load 8 to 11) whatever its size: its
    # statements, their round trips, the claim's walk from the head of the ready index. Batches
    # of 100 no-op jobs paid 16 to 30 µs a job for it; of 250, 6 to 12 (a batch stays within
    # about 20 ms of its jobs' work all the same: workers.child).
    prefetch = 250

    def __init__(self, loc: PgLocation, *, secret_key: bytes | None, rules: PickleRules,
                 max_record_size: int, created: bool = False,
                 old_secret_keys: tuple[bytes, ...] = ()) -> None:
        self._loc = loc
        self._queue = loc.queue
        self._key = secret_key
        self._old_keys = old_secret_keys  # verify only (jobq.postgres.keys)
        self._rules = rules
        self._max_body = max_record_size
        self._db = Db(loc)
        self._codec: SnapshotCodec = keys.codec(self._db, rules, secret_key, old_secret_keys)
        self._workers = PgWorkers(self._db)
        self._schedules = PgSchedules(self._db, loc.queue)
        self._appender = append.Appender(loc.queue, secret_key, max_record_size)
        self._limits = PgLimits(self._db, loc.queue, self._appender, secret_key,
                                max_record_size, stored=self._jobs_ready)
        self._generation = claims.CancelGeneration(self._db, loc.queue)
        # The frames of this process's claims not yet run, read by the claims themselves: a
        # worker that claimed a batch loads each job's payload without a round trip.
        self._frames: dict[str, bytes] = {}
        # The rows those claims returned, until they are settled: a settle of this process's own
        # claims makes their states from them, without locking the rows to read them again.
        self._claimed: dict[str, settle.Claimed] = {}
        self._promoted_at: float | None = None  # monotonic time of the last promotion asked
        self._listening = loc.wakeups == "listen"
        self._notifier = Notifier(self._db, loc.queue) if self._listening else None
        # From the last has_ready: (monotonic time, seconds until the next waiting job is due).
        self._next_due: tuple[float, float | None] = (0.0, None)
        self.location = loc.location
        self.created = created
        self.config = PgSettings(loc.location, secret_key, rules, max_record_size,
                                 old_secret_keys=old_secret_keys)

    # -- lifecycle ----------------------------------------------------------------------------

    def reopen(self, *, catch_up: bool = True) -> PgEngine:
        """The same queue with a connection of its own (nothing to catch up on here)."""
        return PgEngine(self._loc, secret_key=self._key, rules=self._rules,
                        max_record_size=self._max_body, old_secret_keys=self._old_keys)

    def close(self) -> None:
        if self._notifier is not None:
            self._notifier.flush()
        self._db.close()

    # -- producing ----------------------------------------------------------------------------

    def append(self, frames: Sequence[bytes], last: int | None = None) -> None:
        """Store framed records in one transaction, one commit; an id already stored keeps its
        first record (so a producer may retry a commit whose outcome it did not learn)."""
        self.append_batches([(frames, last or 0)])

    def append_batches(self, batches: Iterable[tuple[Sequence[bytes], int]]) -> None:
        """Store the batches' records in one transaction, COPYing each batch while the next
        is made (jobq.postgres.batch); an error raised making one stores nothing."""
        found = iter(batches)
        first = next(found, None)  # a first batch that cannot be made: nothing to connect for
        if first is None:
            return
        with self._db.errors("store jobs (nothing was stored)"):
            self._appender.append(self._db.conn, itertools.chain([first], found))
        self._jobs_ready()  # after the commit (see jobq.postgres.wakeups)

    # -- reading ------------------------------------------------------------------------------

    def payload_body(self, job_id: str, ref: Any = None) -> bytes:
        """The job's record body, its checksum and signature verified, not unpickled.

        A job this process claimed has its frame here already (a record never changes).
        """
        data = self._frames.pop(job_id, None)
        if data is None:
            found = self._db.execute("SELECT frame FROM jobq_payloads WHERE queue = %s"
                                     " AND job_id = %s", (self._queue, job_id))
            if not found:
                raise not_found(job_id)
            data = bytes(found[0][0])
        try:
            return record.decode(data, 0, key=self._key, old_keys=self._old_keys,
                                 max_body=self._max_body).body
        except (record.Damaged, record.Incomplete) as exc:
            raise DamagedRecord(f"the record of job {job_id!r} in {self.location} is damaged:"
                                f" {exc}", job_id=job_id, path=f"{self.location} jobq_payloads",
                                offset=job_id, reason=str(exc)) from exc

    def set_aside(self, job_id: str, ref: Any, cause: Exception) -> str:
        """A damaged record stays where it is (its row is the copy): say where.

        WrongSecretKey if its signature failed because the queue's key was rotated since this
        process opened it (:func:`jobq.postgres.keys.still_current`): no damage then."""
        keys.check_damage(self._db, self._key, cause)
        return f"{self.location}, table jobq_payloads, job {job_id!r}"

    # -- running ------------------------------------------------------------------------------

    def settle(self, finished: Sequence[Finished], owner: str, limit: int, *,
               lease_seconds: float = 60.0, prefetch: int = 0,
               started: Sequence[tuple[str, int]] = ()
               ) -> tuple[list[JobState | None], list[Claim]]:
        # A child marks a prefetched job started.
        if started and not finished and limit + prefetch <= 0:
            with self._db.errors("mark a prefetched job started"):
                settle.mark_started(self._db.conn, self._queue, started)
            return [], []
        clock = time.monotonic()
        promote = self._promoted_at is None or clock - self._promoted_at > PROMOTE_EVERY
        with self._db.errors("record finished jobs and claim others"):
            conn = self._db.conn
            with conn.transaction():
                states, claims, frames, released = settle.settle(
                    conn, self._codec, self._queue, finished, owner, limit,
                    lease_seconds=lease_seconds, prefetch=prefetch, started=started,
                    promote=promote, claimed=self._claimed)
        if promote:
            self._promoted_at = clock
        # Given back, to retry at once, or dependents released: more than this claim took.
        if released or any(_claimable(state) for state in states):
            self._jobs_ready()
        for job_id, _, _ in finished:
            self._frames.pop(job_id, None)
            self._claimed.pop(job_id, None)
        self._frames.update(frames)  # prefetched ones may run after the next settle
        if len(self._frames) > FRAMES_KEPT:  # claims abandoned (reaped, given back): forget
            self._frames = frames
        if len(self._claimed) > FRAMES_KEPT:
            self._claimed = {claim.job_id: self._claimed[claim.job_id] for claim in claims}
        return states, claims

    def finish(self, job_id: str, token: int, change: Change) -> JobState:
        """Apply ``change`` under claim ``token``: StaleClaim if it is not current."""
        with self._db.transaction("record a finished job") as conn:
            settled = settle.settle(conn, self._codec, self._queue, [(job_id, token, change)],
                                    "", 0, lease_seconds=0.0, prefetch=0, started=())
            state = settled.states[0]
            if state is None:
                raise jobs.claim_error(conn, self._queue, job_id, token)
        self._frames.pop(job_id, None)
        if settled.released or _claimable(state):
            self._jobs_ready()
        return state

    def save_checkpoint(self, job_id: str, token: int, checkpoint: Any,
                        progress: float | None) -> JobState:
        with self._db.transaction("save a checkpoint") as conn:
            return settle.save_checkpoint(conn, self._codec, self._queue, job_id, token,
                                          checkpoint, progress)

    def has_ready(self) -> bool:
        """Is a job claimable now (ready, or due)? Index probes; the one of due jobs also says
        when the next waiting job is due, which ``idle_wait`` uses."""
        found = self._db.execute(
            f"SELECT {pg_limits.ANY_READY},"
            " (SELECT min(run_at) FROM jobq_jobs WHERE queue = %(q)s AND NOT ready AND status IN"
            f" ('queued', 'failed')) - {NOW},"
            " EXISTS (SELECT 1 FROM jobq_limits WHERE queue = %(q)s)", {"q": self._queue})
        ready, due, limited = found[0]
        self._next_due = (time.monotonic(), due)
        if ready and limited:  # are they all of keys at their limits?
            ready = pg_limits.claimable(self._db, self._queue)
        return bool(ready) or (due is not None and due <= 0)

    def idle_wait(self, poll_interval: float, fallback: float) -> float:
        """Up to ``fallback`` while a worker's supervisor listens (it wakes idle children when
        jobs are enqueued), and no later than the next waiting job is due as the last has_ready
        saw it; ``poll_interval`` in poll-only mode."""
        if not self._listening:
            return poll_interval
        read_at, due = self._next_due
        if due is not None:
            fallback = min(fallback, due - (time.monotonic() - read_at))
        return max(poll_interval, fallback)

    def wakeups(self, *, logger: Any) -> Listener | NoWakeups:
        """A LISTEN connection of the supervisor's own; nothing in poll-only mode."""
        return Listener(self._loc, logger) if self._listening else NoWakeups()

    def cancel_requested(self, job_id: str) -> bool:
        return claims.cancel_requested(self._db, self._queue, job_id)

    def cancel_generation(self) -> int:
        return self._generation.read()

    def cancelling(self, owner: str) -> set[tuple[str, int]]:
        return claims.cancelling(self._db, self._queue, owner)

    def renew(self, owner: str, lease_seconds: float) -> int:
        return claims.renew(self._db, self._queue, owner, lease_seconds)

    def held(self, owner: str | None = None) -> list[Held]:
        """Running claims (of one owner, or all), their leases judged on the server's clock."""
        return claims.held(self._db, self._queue, owner)

    def holders(self, besides: str) -> dict[str, bool]:
        return claims.holders(self._db, self._queue, besides)

    def upkeep(self, *, compact_threshold: int, logger: Any) -> PgUpkeep:
        """Jobs past their retention purged a batch at a time; the server vacuums (see the
        table settings in jobq.postgres.schema), and a warning if it does not."""
        return PgUpkeep(Expiry(self, logger), DeadRowsWatch(self._db, logger))

    @property
    def workers(self) -> PgWorkers:
        return self._workers

    @property
    def schedules(self) -> PgSchedules:
        return self._schedules

    @property
    def limits(self) -> PgLimits:
        return self._limits

    # -- operating ----------------------------------------------------------------------------

    def cancel(self, job_id: str) -> bool:
        with self._db.transaction("cancel a job") as conn:
            return operating.cancel(conn, self._codec, self._queue, job_id,
                                    channel(self._queue) if self._listening else None)

    def requeue(self, job_id: str) -> bool:
        with self._db.transaction("retry a job") as conn:
            requeued = operating.requeue(conn, self._codec, self._queue, job_id)
        if requeued:
            self._jobs_ready()
        return requeued

    def keep_for(self, job_ids: Sequence[str], result_ttl: float | None,
                 failure_ttl: float | None) -> None:
        with self._db.transaction("record how long jobs are kept") as conn:
            retention.keep(conn, self._queue, job_ids, result_ttl, failure_ttl)

    def expire(self, limit: int) -> int:
        with self._db.transaction("purge expired jobs") as conn:
            return retention.expire(conn, self._queue, limit)

    def purge(self, statuses: frozenset[Status], updated_before: float) -> int:
        """Delete finished jobs of ``statuses`` last updated before then, a batch per
        transaction (no long transaction holds back vacuum); how many."""
        wanted = sorted(s.value for s in statuses if s in FINISHED)
        total = 0
        while wanted:
            with self._db.transaction("purge finished jobs") as conn:
                gone = operating.purge_batch(conn, self._queue, wanted, updated_before)
            total += gone
            if gone < operating.PURGE_BATCH:
                break
        return total

    def purge_jobs(self, ids: Sequence[str], statuses: frozenset[Status]) -> int:
        wanted = sorted(s.value for s in statuses if s in FINISHED)
        total = 0
        for start in range(0, len(ids) if wanted else 0, operating.PURGE_BATCH):
            with self._db.transaction("purge finished jobs") as conn:
                total += purge_jobs.purge_jobs(conn, self._queue,
                                               ids[start:start + operating.PURGE_BATCH], wanted)
        return total

    def damage(self) -> list[dict[str, Any]]:
        """None: the server checks its own pages; records are verified whenever read."""
        return []

    def compact(self) -> Any:
        raise InvalidArgument(
            f"{self.location}: nothing to compact: purge deletes finished jobs' rows, and the"
            " server's autovacuum makes their space reusable (VACUUM FULL, or pg_repack, gives"
            " it back to the operating system)")

    def verify(self) -> VerifyReport:
        """Check the schema, then every record, row and snapshot (jobq.postgres.verify)."""
        with self._db.errors("verify the queue"):
            return Checker(self._db, self._loc, self._codec, self._key, self._max_body,
                           self._rules).run()

    def backup(self, dest: str) -> Any:
        raise InvalidArgument(f"{self.location}: back up the database with PostgreSQL's own"
                              " tools (pg_dump, or pg_basebackup with WAL archiving)")

    def old_keys_pending(self) -> int:
        """How many old keys the queue lists as pending (retired by an open without them)."""
        return len(keys.pending(self._db))

    def rekey(self) -> Any:
        """Re-sign what old keys signed with the current key (jobq rekey)."""
        from . import rekey
        signers = None if self._key is None else rekey.Signers(
            self._codec, self._key, self._old_keys, self._max_body)
        return rekey.rekey(self._db, signers)

    def share(self, group: str | int) -> str:
        raise InvalidArgument(f"{self.location} is shared through the database's roles: GRANT"
                              " another role SELECT, INSERT, UPDATE, DELETE on the jobq_ tables")

    def _jobs_ready(self) -> None:
        """A commit made jobs claimable: wake the workers (debounced; see Notifier)."""
        if self._notifier is not None:
            self._notifier.jobs_ready()


class PgUpkeep:
    """:class:`jobq.engine.Upkeep` of a queue whose server does its own: the deletion of jobs
    past their retention (:mod:`jobq.retention`), and a look at its vacuuming
    (:mod:`.dead_rows`)."""

    busy = False

    def __init__(self, expiry: Expiry, dead_rows: DeadRowsWatch) -> None:
        self._expiry, self._dead_rows = expiry, dead_rows

    def step(self, *, children_busy: bool) -> None:
        self._expiry.step()
        self._dead_rows.step()

    def close(self) -> None:
        pass


def _claimable(state: JobState | None) -> bool:
    """Can the job be claimed now (given back, or failed with a retry due at once)?"""
    return state is not None and state.status in (Status.QUEUED, Status.FAILED) \
        and state.run_at <= state.updated_at
