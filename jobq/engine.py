"""The engine seam: what the queue API, the workers and the operator commands ask of storage.

Everything above storage (``Queue``, :mod:`jobq.execution`, the worker runtime, the CLI and
maintenance) talks to an :class:`Engine` and never to its files, tables or connections, so the
same code runs on the embedded directory engine (:mod:`jobq.local`) and on a server engine.

An engine keeps every promise of the queue: an append that returned is durable and visible to
every read made after it; a claim's fencing ``token`` must accompany every later write of the
job (a write under an older token changes nothing); ``settle`` records ended attempts and makes
the next claims in one transaction and one durable commit, which is what makes draining short
jobs fast; a worker that dies is seen dead by the others (:meth:`Workers.is_dead`) as soon as
the engine can tell, and its jobs are reclaimed then, not when a lease runs out.

Records are the engine-neutral format of :mod:`jobq.record` (framed, checksummed and, with a
key, signed): an engine stores and returns them as they are, so "verify before unpickling"
holds on every engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from .limits import Limit
from .pickling import PickleRules
from .state import JobState, Status
from .worker_info import WorkerInfo, owner_of, worker_of

if TYPE_CHECKING:  # only for annotations: a worker starts without jobq.schedule (issue 19)
    from .schedule import Schedule, Stored

__all__ = ["CancelWatch", "Change", "Claim", "Engine", "Finished", "Held", "Limits",
           "Liveness", "NoWakeups",
           "Schedules", "Settings", "Upkeep", "Wakeups", "Workers", "owner_of", "worker_of"]


Change = Callable[[JobState, float, int], JobState]
"""An end-of-attempt transition: ``(state, the engine's now, max_attempts) -> new state``.
Applied by the engine inside the transaction that records it (see :mod:`jobq.transitions`)."""

Finished = tuple[str, int, Change]
"""An ended attempt to record: job id, the claim's token, its change."""


@dataclass(frozen=True)
class Claim:
    """One job handed to a worker: its fencing ``token`` must accompany every later write.

    ``ref`` tells the engine where the job's record is (for the directory engine, its log
    position), so that loading the payload costs no lookup; an engine that needs none gives
    None. It must be small and picklable: claims are sent between processes by the thousand.
    """

    job_id: str
    token: int
    state: JobState
    ref: Any = None

    def __reduce__(self) -> tuple[Any, ...]:
        # Only what running the job needs, not the whole versioned snapshot (whose
        # __setstate__ costs more than the rest of the claim).
        s = self.state
        return (_running_claim, (self.job_id, self.token, s.task, s.attempts, s.progress,
                                 s.checkpoint, self.ref))


def _running_claim(job_id: str, token: int, task: str, attempts: int, progress: float,
                   checkpoint: Any, ref: Any) -> Claim:
    state = JobState(job_id=job_id, task=task, status=Status.RUNNING, attempts=attempts,
                     progress=progress, checkpoint=checkpoint)
    return Claim(job_id, token, state, ref)


class Settings(Protocol):
    """What an engine opens a queue with (``jobq.config.QueueConfig`` is one)."""

    path: str
    fsync: bool
    secret_key: bytes | None
    old_secret_keys: tuple[bytes, ...]
    rules: PickleRules
    segment_size: int
    max_record_size: int


class Held(NamedTuple):
    """A running job's claim, as the reaper sees it. ``lease_expired`` is judged on the
    engine's clock, so workers on different hosts never compare their clocks."""

    job_id: str
    token: int
    owner: str
    started: bool  # False: prefetched and not yet started (given back uncharged if its owner died)
    lease_expired: bool


class Liveness(Protocol):
    """Held by a worker's supervisor for as long as it lives: while it is held, the worker is
    alive to every other process of the queue."""

    def check(self) -> None:
        """Re-assert the hold; a JobqError if it was lost (the worker must stop claiming)."""

    def fds_to_close_after_fork(self) -> list[int]:
        """Descriptors a forked child must close, or the worker would outlive its supervisor."""

    def close(self) -> None:
        """Let go: from now on the worker is dead to the others."""


class Workers(Protocol):
    """Who works on a queue: liveness holds, and the records ``jobq workers`` shows."""

    def hold(self, worker: str) -> Liveness: ...

    def is_dead(self, worker: str) -> bool: ...

    def publish(self, record: dict[str, Any]) -> None: ...

    def withdraw(self, worker: str) -> None: ...

    def bury(self, worker: str, *, by: str, jobs: Iterable[str], now: float) -> bool: ...

    def recorded(self) -> list[str]: ...

    def read(self, now: float, owners: Iterable[str] = ()) -> list[WorkerInfo]: ...


class Schedules(Protocol):
    """The queue's periodic schedules (:mod:`jobq.schedule`), each with its next fire time.

    ``advance`` is a compare-and-set: of workers that fire the same time at once, exactly one
    moves the schedule on, so the next fire time is durable and never taken twice.
    """

    def put(self, schedule: Schedule, next_at: float) -> None:
        """Store ``schedule``, replacing one of its name; a replaced schedule keeps its next
        fire time unless its cron expression or time zone changed."""

    def remove(self, name: str) -> bool:
        """Forget the schedule; False if there was none of that name."""

    def all(self) -> list[Stored]:
        """Every schedule, by name; one that cannot be read is skipped, with a warning."""

    def unreadable(self) -> list[tuple[str, str]]:
        """The stored schedules that cannot be read: (name, why), for ``jobq schedule list``."""

    def advance(self, name: str, expected_next: float, new_next: float,
                last_job: str | None = None) -> bool:
        """Set the next fire time to ``new_next`` (and the last firing's job, if given) only if
        it is still ``expected_next``; True if this call did."""


class Limits(Protocol):
    """Concurrency and rate limits per key, and the keys of jobs (:mod:`jobq.limits`).

    Claims honour the limits in the transaction that claims: a job whose key is full is not
    claimed (it stays queued, no attempt spent). A queue with no limit set pays nothing for
    them on the claim path beyond one cheap look.
    """

    def put(self, limit: Limit) -> None:
        """Store ``limit``, replacing the key's; it applies from the next claim on."""

    def remove(self, key: str) -> bool:
        """Forget the key's limits (its jobs run unlimited); False if it had none."""

    def all(self) -> list[Limit]:
        """Every key's limits, by key."""

    def append_keyed(self, frame: bytes, job_id: str, concurrency_key: str | None,
                     unique_key: str | None) -> str:
        """Store one framed job with its keys, durably; return the id of the job stored, or,
        nothing stored, that of the job holding ``unique_key`` that has not ended (race-safe:
        two producers at once get the same id). A ``job_id`` already stored keeps its first
        record (and is returned)."""


class Upkeep(Protocol):
    """Storage chores a worker's supervisor runs between its other duties, a bounded piece at a
    time, so that it is never long away from its children."""

    busy: bool  # a chore is under way that a burst worker should let finish

    def step(self, *, children_busy: bool) -> None:
        """One bounded piece; errors are logged, never raised (jobs come first)."""

    def close(self) -> None: ...


class Wakeups(Protocol):
    """A worker supervisor's ear for new jobs, so that its idle children need not keep asking
    storage: when it hears of some, the supervisor wakes them (one per worker, not per child)."""

    def fileno(self) -> int | None:
        """A descriptor that turns readable when something may have been heard, to wait on
        with the children's pipes; None when there is nothing to wait on now."""

    def heard(self) -> bool:
        """Take in what arrived, without blocking: True if idle children should look now."""

    def cancels(self) -> bool:
        """True if a running job may have been asked to cancel since the last call: the
        supervisor then looks at once, instead of at its next ``reap_interval``."""

    def close(self) -> None: ...


class NoWakeups:
    """:class:`Wakeups` of storage that nothing can be heard from: its idle workers poll."""

    def fileno(self) -> int | None:
        return None

    def heard(self) -> bool:
        return False

    def cancels(self) -> bool:
        return False

    def close(self) -> None:
        pass


class CancelWatch(NoWakeups):
    """:class:`Wakeups` of storage whose cancel number is cheap to read (a queue directory's
    shared memory): nothing to hear of new jobs, but a cancel is seen at the supervisor's next
    turn."""

    def __init__(self, generation: Callable[[], int]) -> None:
        self._generation = generation
        self._seen = generation()

    def cancels(self) -> bool:
        seen, self._seen = self._seen, self._generation()
        return seen != self._seen


class Engine(Protocol):
    """One queue's storage. Reads see every append that returned before them."""

    location: str  # a directory, or a server's URL: for messages
    created: bool  # this engine made the queue when it opened it: it is new and empty
    config: Settings  # the settings, as the queue was created with those it keeps for life
    shared_group: int | None  # the group a queue shared between users is shared with

    # -- lifecycle ----------------------------------------------------------------------------
    def reopen(self, *, catch_up: bool = True) -> Engine:
        """The same queue with connections of its own: a forked process must not share ours.
        ``catch_up=False``: a worker's child, which takes in the backlog a batch at a time."""

    def close(self) -> None: ...

    # -- producing ----------------------------------------------------------------------------
    def append(self, frames: Sequence[bytes], last: int | None = None) -> None:
        """Store framed job records durably, all or none. ``frames`` are whole frames or their
        pieces in order (header, body, ...); ``last`` is the size of the last frame when it is
        not the last piece. A job id already stored keeps its first record."""

    def append_batches(self, batches: Iterable[tuple[Sequence[bytes], int]]) -> None:
        """``append`` of the frames of every batch, all or none, in one durable commit.

        A batch is pieces of whole frames (as ``append`` takes them) and the size of its last
        frame. They are made while the ones before are stored (an engine that cannot store in
        parts takes them all first): an error raised while one is made stores nothing."""

    def append_dependent(self, frame: bytes, job_id: str, parents: Sequence[str],
                         policy: str) -> None:
        """Store one framed job that depends on ``parents`` (job ids, in order) with
        ``policy`` (:mod:`jobq.dependencies`), durably: ``waiting`` until they end, or at once
        due or cancelled if they have. UnknownParent, and nothing stored, if a parent does not
        exist; nothing either if ``job_id`` does (its first record wins). Every later end of a
        parent releases or cancels the job in the transaction that records that end."""

    def parents(self, job_id: str) -> list[str]:
        """The job's parents in ``depends_on`` order (none if it depends on nothing)."""

    # -- groups (q.map: jobq.groups; member ids say their group, see jobq.group_ids) ---------
    def open_group(self, group_id: str, chunk_size: int, then: tuple[str, bytes] | None) -> None:
        """Store a new group, open (its number of members unknown), durably, with its final
        job (``then``: its id and frame) waiting until the group is done."""

    def append_members(self, batches: Iterable[tuple[Sequence[bytes], int]]) -> None:
        """Store a group's members as ``append_batches`` does, in memory as flat as the
        engine allows: in one commit, or in several durable ones (say which)."""

    def close_group(self, group_id: str, jobs: int, items: int) -> None:
        """The group has ``jobs`` members, all stored: done at once if as many ended already.
        From then on, the end of the last member (counted in the transaction that records
        each end, once per move into a finished status) makes the final job due."""

    def group(self, group_id: str) -> dict[str, Any]:
        """The group's row (chunk_size, jobs, items, ended, then_job, created_at, done_at)
        and its members' ``counts`` by status; GroupNotFound if there is no such group."""

    def keep_for(self, job_ids: Sequence[str], result_ttl: float | None,
                 failure_ttl: float | None) -> None:
        """Record how long these jobs are kept once ended (:mod:`jobq.retention`), replacing
        what was recorded for them (it may become durable only with the next commit: losing it
        keeps the jobs for ever, never purges one early); a job that has already ended gets its expiry
        from its end time. Called before the jobs' records are stored, or after."""

    def expire(self, limit: int) -> int:
        """Purge up to ``limit`` jobs past their expiry on the engine's clock, by an index
        on that time, in one short transaction (a parent whose dependents have not all ended
        is kept :data:`jobq.retention.PARENT_GRACE` longer); how many."""

    # -- reading ------------------------------------------------------------------------------
    def exists(self, job_id: str) -> bool: ...
    def status(self, job_id: str) -> Status: ...                       # JobNotFound
    def get(self, job_id: str) -> JobState: ...                        # JobNotFound
    def row(self, job_id: str) -> dict[str, Any]: ...                  # no unpickling
    def rows(self, status: Status | None = None, limit: int = 100,
             newest_first: bool = True, *, after: str | None = None, task: str | None = None,
             id_contains: str | None = None, group: str | None = None,
             scan_limit: int | None = None) -> list[dict[str, Any]]:
        """A page of index columns (no unpickling), filtered, in arrival order. ``after``: the
        last job of the page before (paging by key, never by offset; JobNotFound if it is gone
        now); ``id_contains``: a substring of the job id; ``group``: the members of a group
        (``q.map``), by a range of the id index. ``scan_limit``: with ``task`` or ``id_contains``
        (which no index answers) and no ``group``, read at most that many jobs past ``after``.
        The rows are a :class:`jobq.listing.Page`, whose ``resume`` is the last job read when
        that limit ran out before the page filled (page on from it), else None.
        InvalidArgument for a bad ``limit`` or ``scan_limit``."""

    def rough_counts(self) -> dict[str, int]:
        """Jobs per status, each counted up to :data:`jobq.listing.ROUGH_CAP` only: a count
        of that is "that many or more", and a monitor never counts a million rows. Where no
        index finds a status, the engine may count it among the first rows only (PostgreSQL:
        failed jobs due for their retry, among the first ready jobs)."""

    def oldest_due(self) -> float | None:
        """Seconds the longest-waiting due job has waited (None: none waits), by index seeks:
        the oldest by arrival of each priority, so a delayed job may have waited longer."""

    def next_waiting(self, now: float) -> dict[Status, float]:
        """The earliest run-at time after ``now`` of queued jobs (delayed) and of failed jobs
        (waiting for their retry), each present only if there is one: by index seeks in run-at
        order over the jobs not yet due, never over the jobs ready to run."""

    def finish_times(self, status: Status, since: float, limit: int) -> list[float]:
        """When jobs that ended in the finished ``status`` ended, those at or after ``since``,
        newest first, ``limit`` at most (a chart of the last hour). Where no index orders
        finished jobs by that time, the engine may look among its newest ``limit`` jobs of
        the status by arrival only (the directory engine)."""

    def totals(self) -> dict[tuple[str, str], float]:
        """The running totals (:mod:`jobq.totals`): (name, task) -> count or seconds, stored
        and added to with each recorded batch, so they only grow (but see the engines' notes
        on an index rebuilt)."""

    def job_ids(self, status: Status | None = None) -> Iterator[str]: ...  # arrival order
    def ids_starting_with(self, prefix: str, limit: int) -> list[str]: ...
    def counts(self) -> dict[str, int]: ...
    def waiting(self, now: float) -> dict[tuple[Status, bool], float]: ...
    def payload_body(self, job_id: str, ref: Any = None) -> bytes:
        """The job's record body, verified (checksum, signature) but not unpickled.
        DamagedRecord when its stored bytes fail the checks."""

    def set_aside(self, job_id: str, ref: Any, cause: Exception) -> str:
        """Keep a copy of a damaged record for the operator (once); say where it is."""

    def now(self) -> float:
        """The engine's clock, which every time it stores is read from."""

    # -- running: the hot path is one call, one transaction, one durable commit ---------------
    def settle(self, finished: Sequence[Finished], owner: str, limit: int, *,
               lease_seconds: float = 60.0, prefetch: int = 0,
               started: Sequence[tuple[str, int]] = ()
               ) -> tuple[list[JobState | None], list[Claim]]:
        """Record ``finished`` (None for a claim no longer current), then claim up to ``limit``
        jobs, plus ``prefetch`` marked not started, highest priority then oldest first.
        ``started``: prefetched claims now started (charged if their owner dies). A call with
        only ``started`` commits without an fsync of its own: the mark must outlive its worker,
        not necessarily a power cut."""

    def finish(self, job_id: str, token: int, change: Change) -> JobState: ...  # StaleClaim
    def save_checkpoint(self, job_id: str, token: int, checkpoint: Any,
                        progress: float | None) -> JobState: ...             # StaleClaim
    def has_ready(self) -> bool: ...
    def idle_wait(self, poll_interval: float, fallback: float) -> float:
        """Seconds an idle worker child waits, unless woken, before it asks ``has_ready``
        again (called after it said no): ``poll_interval`` where asking is cheap or nothing
        wakes the child, else up to ``fallback``, and no later than the next job comes due."""

    def wakeups(self, *, logger: Any) -> Wakeups:
        """What a worker's supervisor listens to, to wake its idle children."""

    def cancel_requested(self, job_id: str) -> bool: ...
    def cancel_generation(self) -> int:
        """A number that changes whenever a running job is asked to cancel: cheap to poll."""

    def cancelling(self, owner: str) -> set[tuple[str, int]]: ...
    def renew(self, owner: str, lease_seconds: float) -> int: ...
    def held(self, owner: str | None = None) -> list[Held]: ...
    def upkeep(self, *, compact_threshold: int, logger: Any) -> Upkeep:
        """The storage upkeep a worker's supervisor does while its children run jobs."""

    @property
    def workers(self) -> Workers: ...

    @property
    def schedules(self) -> Schedules: ...

    @property
    def limits(self) -> Limits: ...

    # -- operating ----------------------------------------------------------------------------
    def cancel(self, job_id: str) -> bool: ...
    def requeue(self, job_id: str) -> bool: ...
    def purge(self, statuses: frozenset[Status], updated_before: float) -> int: ...
    def purge_jobs(self, ids: Sequence[str], statuses: frozenset[Status]) -> int:
        """Delete those of ``ids`` in one of the finished ``statuses`` (others are left as
        they are); how many. A batch of ids per transaction."""

    def damage(self) -> list[dict[str, Any]]:
        """Ranges of stored records found damaged and set aside (none where it cannot happen)."""

    def compact(self) -> Any:
        """Free the space purged jobs left, for good; a report of what was done."""

    def verify(self) -> Any:
        """Read every stored record and state: a report of what cannot be read (jobq verify)."""

    def backup(self, dest: str) -> Any:
        """A consistent copy at ``dest``, taken while the queue is in use; InvalidArgument
        where the engine's own tools make backups."""

    def old_keys_pending(self) -> int:
        """How many old secret keys may still have signed something stored."""

    def rekey(self) -> Any:
        """Re-sign with the current key what old keys signed (jobq rekey)."""

    def share(self, group: str | int) -> str:
        """Share the queue with a group of users; return its location, to open it again."""
