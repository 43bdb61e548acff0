"""``LocalEngine``: the embedded engine, a queue in a directory (the default).

An append-only log of job records (:mod:`jobq.local.log`) is the truth; the state store
(:mod:`jobq.local.store`: shelve snapshots and the index, in SQLite) is a cache of it that catches up
from the log when it is read. This class is the only door to both: opening runs the recovery
(the index checked against the log, an interrupted compaction finished, a lost index rebuilt),
and every read catches the index up first, so a caller never needs to know that there is one.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from .. import listing
from ..engine import CancelWatch, Change, Claim, Finished, Held, Settings
from ..engine.claims import holders_of
from ..errors import ConfigError, DamagedRecord, JobNotFound
from ..state import JobState, Status
# Compaction, purging and the worker's upkeep are imported where used: a worker's child never
# needs them, and its supervisor only once its children started (issue 19).
from . import compaction_redo, directory, keys
from .directory import FIXED_SETTINGS, open_dir
from .log import Log, Position
from .payloads import Payloads
from .store import Store
from .limits import LocalLimits
from .schedules import LocalSchedules
from .workers import LocalWorkers

if TYPE_CHECKING:
    from .compaction import CompactReport
    from .upkeep import LocalUpkeep

T = TypeVar("T")
MEMBERS_PER_WRITE = 10_000  # jobs of a q.map written (and fsynced) at a time


class LocalEngine:
    """One queue directory, opened by one process (see :meth:`reopen` after a fork)."""

    # Claims a worker child takes at once by default (Engine.prefetch), within its 20 ms batch
    # window. A settle rewrites every B-tree page its jobs' rows touch, whole, into the WAL (some
    # 90 pages for 100 jobs: strace of a 20,000-job drain counted 1.75 pwrites a job); more jobs
    # a settle share those pages. 100 -> 500: drains of 20,000 no-op jobs 20% faster with one
    # worker process and with two; of 3,000, 11% and 13% (issue 19).
    prefetch = 500

    def __init__(self, cfg: Settings, clock: Callable[[], float] = time.time, *,
                 given: Mapping[str, object] = MappingProxyType({}),
                 catch_up: bool = True) -> None:
        qdir = open_dir(cfg.path, cfg.secret_key, {k: getattr(cfg, k) for k in FIXED_SETTINGS},
                        cfg.old_secret_keys)
        for name, value in qdir.fixed.items():
            if getattr(cfg, name) != value:
                if name in given:
                    raise ConfigError(f"{cfg.path} was created with {name}={value}; every"
                                      f" process must use it (omit {name})")
                cfg = dataclasses.replace(cfg, **{name: value})
        self.config = cfg  # with the settings the directory was created with
        self.location = cfg.path
        self.created = qdir.created  # this open made the directory a queue: a new, empty one
        self.shared_group = qdir.shared_group  # the group it is shared with, if it is
        self.clock = clock
        self.log = Log(qdir.log, key=cfg.secret_key, max_body=cfg.max_record_size,
                       segment_size=cfg.segment_size, fsync=cfg.fsync,
                       quarantine_dir=qdir.quarantine, old_keys=cfg.old_secret_keys)
        try:
            self.store = Store(qdir, self.log, rules=cfg.rules, secret_key=cfg.secret_key,
                               old_keys=cfg.old_secret_keys, clock=clock)
        except BaseException:
            self.log.close()
            raise
        self.workers = LocalWorkers(cfg.path)
        self.schedules = LocalSchedules(self.store, cfg.path, clock)
        self.limits = LocalLimits(self.store, self.log)
        self.payloads = Payloads(self.log, lambda job_id: self._indexed(
            self.store.payload_position, job_id), lambda job_id: self.store.job_record(job_id).body)
        # What a worker child calls per job, bound straight to the store: no call layer on the
        # hot path (the methods below say the same for readers of the class).
        self.cancel_generation = self.store.cancel_generation  # type: ignore[method-assign]
        self.cancel_requested = self.store.cancel_requested  # type: ignore[method-assign]
        self.has_ready = self.store.has_ready  # type: ignore[method-assign]
        self.payload_body = self.payloads.body  # type: ignore[method-assign]
        self.save_checkpoint = self.store.save_checkpoint  # type: ignore[method-assign]
        try:
            # Recovery: check the index against the log, finish a compaction that died after
            # moving seqs, then rebuild a lost index and index what was appended since (only
            # the log after the covered offset is read).
            self.store.check_covered()
            self._finish_interrupted_compaction()
            if qdir.missing_keys:  # before a record is indexed: it would be taken for damage
                from . import rekey
                rekey.require(self, qdir.missing_keys)
            self.store.ensure_index()  # after the compaction's rename: seqs must match the files
            if catch_up:
                self.store.catch_up()
        except BaseException:
            self.close()
            raise

    def _finish_interrupted_compaction(self) -> bool:
        """On open: finish a compaction that died after moving seqs (see
        :mod:`jobq.local.compaction_redo`); True if there was one.

        Costs one read when there is nothing to do. A compaction that holds its lock is left
        alone: it finishes the rename itself. Called before any other thread can use this
        connection.
        """
        marker = "SELECT 1 FROM meta WHERE key = ?"
        if self.store.conn.execute(marker, (compaction_redo.MARKER,)).fetchone() is None:
            return False
        import filelock  # every open reaches this method, almost never this line

        try:
            with compaction_redo.lock(self.location, timeout=0), \
                    self.store.transaction() as conn:
                return compaction_redo.redo_interrupted(conn, self.log)
        except filelock.Timeout:
            return False

    @property
    def path(self) -> str:
        return self.location

    def reopen(self, *, catch_up: bool = True) -> LocalEngine:
        return LocalEngine(self.config, self.clock, catch_up=catch_up)

    def close(self) -> None:
        self.store.close()
        self.log.close()

    def now(self) -> float:
        return self.clock()

    # -- producing ----------------------------------------------------------------------------

    def append(self, frames: Sequence[bytes], last: int | None = None) -> None:
        self.log.append(frames if isinstance(frames, list) else list(frames), last)

    def append_batches(self, batches: Iterable[tuple[Sequence[bytes], int]]) -> None:
        """One write of every batch, made once they all are (the log writes once)."""
        parts: list[bytes] = []
        last = None
        for pieces, last in batches:
            parts += pieces
        if parts:
            self.log.append(parts, last)

    def append_dependent(self, frame: bytes, job_id: str, parents: Sequence[str],
                         policy: str) -> None:
        """Its parents into the state database first, then the record into the log (see
        :mod:`jobq.local.dependencies`); UnknownParent, and nothing stored, for a parent that
        does not exist."""
        if self.store.add_dependencies(job_id, parents, policy):
            self.log.append([frame], None)

    def parents(self, job_id: str) -> list[str]:
        return self.store.parents(job_id)

    # -- groups (jobq.local.groups) ------------------------------------------------------------

    def open_group(self, group_id: str, chunk_size: int, then: tuple[str, bytes] | None) -> None:
        """The group's row first, then its final job's record (which waits while the group
        is not done)."""
        self.store.open_group(group_id, chunk_size, None if then is None else then[0])
        if then is not None:
            self.log.append([then[1]], None)

    def append_members(self, batches: Iterable[tuple[Sequence[bytes], int]]) -> None:
        """One durable write every MEMBERS_PER_WRITE jobs or so: memory stays flat whatever the
        number of items (``append_batches`` holds them all for its one write)."""
        parts: list[bytes] = []
        last = 0
        for pieces, last in batches:
            parts += pieces
            if len(parts) >= 2 * MEMBERS_PER_WRITE:
                self.log.append(parts, last)
                parts = []
        if parts:
            self.log.append(parts, last)

    def close_group(self, group_id: str, jobs: int, items: int) -> None:
        self.store.close_group(group_id, jobs, items)

    def group(self, group_id: str) -> dict[str, Any]:
        return self.store.group(group_id)

    def keep_for(self, job_ids: Sequence[str], result_ttl: float | None,
                 failure_ttl: float | None) -> None:
        self.store.keep_for(job_ids, result_ttl, failure_ttl)

    def expire(self, limit: int) -> int:
        from . import purging

        return purging.expire(self, self.now(), limit)

    # -- reading: the index catches up with the log first -------------------------------------

    def exists(self, job_id: str) -> bool:
        if self.store.exists(job_id):
            return True
        self.store.catch_up()
        return self.store.exists(job_id)

    def status(self, job_id: str) -> Status:
        return self._indexed(self.store.status, job_id)

    def get(self, job_id: str) -> JobState:
        return self._indexed(self.store.get, job_id)

    def row(self, job_id: str) -> dict[str, Any]:
        return self._indexed(self.store.row, job_id)

    def _indexed(self, read: Callable[[str], T], job_id: str) -> T:
        """``read(job_id)``, catching the index up first only if the job is not found: a job
        once indexed never needs the log again to be read (its first record wins), so only
        one not found yet may be among the records not indexed."""
        try:
            return read(job_id)
        except JobNotFound:
            self.store.catch_up()
            return read(job_id)

    def rows(self, status: Status | None = None, limit: int = 100,
             newest_first: bool = True, *, after: str | None = None, task: str | None = None,
             id_contains: str | None = None, group: str | None = None,
             scan_limit: int | None = None) -> list[dict[str, Any]]:
        id_contains = listing.check_page(limit, id_contains, scan_limit, group)
        self.store.catch_up()
        return self.store.rows(status, limit, newest_first, after=after, task=task,
                               id_contains=id_contains, group=group, scan_limit=scan_limit)

    def rough_counts(self) -> dict[str, int]:
        self.store.catch_up()
        return self.store.rough_counts(listing.ROUGH_CAP)

    def oldest_due(self) -> float | None:
        self.store.catch_up()
        now = self.clock()
        run_at = self.store.oldest_due(now)
        return None if run_at is None else max(0.0, now - run_at)

    def finish_times(self, status: Status, since: float, limit: int) -> list[float]:
        self.store.catch_up()
        return self.store.finish_times(status, since, limit)

    def totals(self) -> dict[tuple[str, str], float]:
        self.store.catch_up()
        return self.store.totals()

    def next_waiting(self, now: float) -> dict[Status, float]:
        self.store.catch_up()
        return self.store.next_waiting(now)

    def job_ids(self, status: Status | None = None) -> Iterator[str]:
        self.store.catch_up()
        return self.store.job_ids(status)

    def ids_starting_with(self, prefix: str, limit: int) -> list[str]:
        self.store.catch_up()
        return self.store.ids_starting_with(prefix, limit)

    def counts(self) -> dict[str, int]:
        self.store.catch_up()
        return self.store.counts()

    def waiting(self, now: float) -> dict[tuple[Status, bool], float]:
        self.store.catch_up()
        return self.store.waiting(now)

    def payload_body(self, job_id: str, ref: Any = None) -> bytes:
        """The job's record body, verified (see :meth:`Payloads.body`)."""
        return self.payloads.body(job_id, ref)

    def set_aside(self, job_id: str, ref: Any, cause: DamagedRecord) -> str:
        """Copy the job's damaged record aside (once); return where the copy is. ``ref``: the
        position it was read at, if known. StorageError if it cannot be copied."""
        if ref is None:
            ref = self.store.payload_position(job_id)
        from . import damage  # a damaged record only: not at every worker's start

        return damage.set_aside(self.store, self.log, ref, cause)

    @staticmethod
    def exists_at(path: str) -> bool:
        """Is there a queue at ``path``? QueuePermissionError if this user may not look."""
        return directory.exists(path)

    def share(self, group: str | int) -> str:
        """Share the queue with ``group`` (directories 2770, files 0660); return the group."""
        return directory.share(self.location, group).root

    def damage(self) -> list[dict[str, Any]]:
        self.store.catch_up()
        return self.store.quarantined()

    # -- running ------------------------------------------------------------------------------

    def settle(self, finished: Sequence[Finished], owner: str, limit: int, *,
               lease_seconds: float = 60.0, prefetch: int = 0,
               started: Sequence[tuple[str, int]] = ()
               ) -> tuple[list[JobState | None], list[Claim]]:
        states, claims = self.store.settle(
            finished if isinstance(finished, list) else list(finished), owner, limit,
            lease_seconds=lease_seconds, prefetch=prefetch, started=started)
        self.payloads.read_ahead(claims)
        return states, claims

    def finish(self, job_id: str, token: int, change: Change) -> JobState:
        return self.store.finish(job_id, token, change)

    def save_checkpoint(self, job_id: str, token: int, checkpoint: Any,
                        progress: float | None) -> JobState:
        return self.store.save_checkpoint(job_id, token, checkpoint, progress)

    def has_ready(self) -> bool:
        return self.store.has_ready()

    def idle_wait(self, poll_interval: float, fallback: float) -> float:
        """``poll_interval``: asking has_ready is a read of local files, cheap to repeat."""
        return poll_interval

    def wakeups(self, *, logger: Any) -> CancelWatch:
        """Nothing tells of new jobs; the cancel number (shared memory) tells of cancels."""
        return CancelWatch(self.store.cancel_generation)

    def cancel_requested(self, job_id: str) -> bool:
        return self.store.cancel_requested(job_id)

    def cancel_generation(self) -> int:
        return self.store.cancel_generation()

    def cancelling(self, owner: str) -> set[tuple[str, int]]:
        return self.store.cancelling(owner)

    def renew(self, owner: str, lease_seconds: float) -> int:
        return self.store.renew(owner, lease_seconds)

    def held(self, owner: str | None = None) -> list[Held]:
        now = self.clock()
        if owner is not None:
            return [Held(job_id, token, who, True, lease is not None and lease < now)
                    for job_id, token, who, lease in self.store.running(owner)]
        return self._running(now)

    def holders(self, besides: str) -> dict[str, bool]:
        return holders_of(self._running(self.clock()), besides)

    def _running(self, now: float) -> list[Held]:
        return [Held(job_id, token, who, started, lease is not None and lease < now)
                for job_id, token, who, lease, started in self.store.running_claims()]

    def upkeep(self, *, compact_threshold: int, logger: Any) -> LocalUpkeep:
        from .upkeep import LocalUpkeep

        return LocalUpkeep(self, compact_threshold, logger)

    # -- operating ----------------------------------------------------------------------------

    def cancel(self, job_id: str) -> bool:
        return self.store.cancel(job_id)

    def requeue(self, job_id: str) -> bool:
        return self.store.requeue(job_id)

    def purge(self, statuses: frozenset[Status], updated_before: float) -> int:
        from . import purging

        return purging.purge(self, statuses, updated_before)

    def purge_jobs(self, ids: Sequence[str], statuses: frozenset[Status]) -> int:
        from . import purge_jobs

        return purge_jobs.purge_jobs(self, ids, statuses)

    def compact(self) -> CompactReport:
        from . import compaction

        return compaction.compact(self)

    def old_keys_pending(self) -> int:
        """How many old secret keys may still have signed a record or snapshot here."""
        return len(keys.pending(keys.read(self.location)))

    def rekey(self) -> Any:
        """Re-sign what old keys signed with the current key (jobq rekey)."""
        from .rekey import rekey
        return rekey(self)

    def verify(self) -> Any:
        """Read every record and snapshot; a report of what cannot be read (jobq verify)."""
        from .verify import verify
        return verify(self)

    def backup(self, dest: str) -> Any:
        """A consistent copy of the queue in the new directory ``dest``, taken while in use."""
        from .backup import backup
        return backup(self, dest)


__all__ = ["LocalEngine", "Position"]
