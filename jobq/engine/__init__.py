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

The protocol is drawn by concern: :class:`Engine` holds the job lifecycle (producing, reading,
running), and takes the rest from the protocols of this package's modules: :mod:`.workflows`
(dependencies, groups), :mod:`.retention`, :mod:`.monitoring` (bounded figures, totals) and
:mod:`.operating` (by hand, purging, maintenance). Every name is importable from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

from ..pickling import PickleRules
from ..state import JobState, Status
from .claims import Change, Claim, Finished, Held
from .limits import Limits
from .monitoring import Monitoring
from .operating import Operating, Upkeep
from .retention import Retention
from .schedules import Schedules
from .wakeups import CancelWatch, NoWakeups, Wakeups
from .workers import Liveness, Workers, owner_of, worker_of
from .workflows import Workflows

__all__ = ["CancelWatch", "Change", "Claim", "Engine", "Finished", "Held", "Limits",
           "Liveness", "Monitoring", "NoWakeups", "Operating", "Retention",
           "Schedules", "Settings", "Upkeep", "Wakeups", "Workers", "Workflows",
           "owner_of", "worker_of"]


class Settings(Protocol):
    """What an engine opens a queue with (``jobq.config.QueueConfig`` is one)."""

    path: str
    fsync: bool
    secret_key: bytes | None
    old_secret_keys: tuple[bytes, ...]
    rules: PickleRules
    segment_size: int
    max_record_size: int


class Engine(Workflows, Retention, Monitoring, Operating, Protocol):
    """One queue's storage. Reads see every append that returned before them."""

    location: str  # a directory, or a server's URL: for messages
    created: bool  # this engine made the queue when it opened it: it is new and empty
    config: Settings  # the settings, as the queue was created with those it keeps for life
    shared_group: int | None  # the group a queue shared between users is shared with
    # Most jobs a worker child claims in one settle unless its ``prefetch`` option says: the
    # more, the fewer commits and statements a job pays for (a batch is also bounded by about
    # 20 ms of its jobs' work: workers.child).
    prefetch: int

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
        parts takes them all first): an error raised while one is made stores nothing. Pieces
        that are a :class:`jobq.batches.Made` carry the routing fields their frames were made
        from, which an engine may use instead of reading (and verifying) the frames here."""

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
    def holders(self, besides: str) -> dict[str, bool]:
        """The owners of running claims but worker ``besides`` and its children, each with
        whether a lease of its ran out: what a reaper looks at every turn, far fewer rows than
        :meth:`held` when there is nothing to reap."""

    def upkeep(self, *, compact_threshold: int, logger: Any) -> Upkeep:
        """The storage upkeep a worker's supervisor does while its children run jobs."""

    @property
    def workers(self) -> Workers: ...

    @property
    def schedules(self) -> Schedules: ...

    @property
    def limits(self) -> Limits: ...
