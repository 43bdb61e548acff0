"""``Queue``: the producer's API. Enqueue is one durable append; everything else asks the engine."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import EllipsisType, MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any

from . import config as config_mod
from . import engines, job_options, job_record, record, retention, signatures, tasks
from .job_ids import check_job_id, job_ids
from .job_options import Options
from .errors import InvalidArgument, InvalidJob, JobCancelled, JobFailed, WaitTimeout
from .payload import JobPayload
from .state import JobState, Status, last_line

if TYPE_CHECKING:  # imported where used: their dataclasses would cost a worker's start
    from . import groups
    from . import limits as job_limits
    from .worker_info import WorkerInfo

class Queue:
    """A persistent job queue in a directory: ``Queue(path)``; default ``$JOBQ_HOME``, else ``./.jobq``.

    ``result_ttl``/``failure_ttl``: seconds the jobs this Queue enqueues are kept once they
    ended succeeded or cancelled / dead, before workers purge them (None: for ever, the
    default); each enqueue may give its own (:mod:`jobq.retention`).

    ``fsync=False`` makes enqueue faster by not waiting for stable storage: a crash of the machine
    (not of the process) may then lose the jobs enqueued in its last seconds.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, fsync: bool = True,
                 secret_key: str | bytes | None = None,
                 old_secret_keys: Iterable[str | bytes] | None = None,
                 allowed_modules: Iterable[str] | None = None,
                 remap: Mapping[str, str] | None = None, segment_size: int | None = None,
                 max_record_size: int | None = None, default_max_attempts: int | None = None,
                 result_ttl: float | None = retention.DEFAULT_RESULT_TTL,
                 failure_ttl: float | None = retention.DEFAULT_FAILURE_TTL,
                 clock: Callable[[], float] = time.time) -> None:
        options = {k: v for k, v in {"segment_size": segment_size, "max_record_size": max_record_size,
                                     "default_max_attempts": default_max_attempts,
                                     "result_ttl": result_ttl, "failure_ttl": failure_ttl}.items()
                   if v is not None}
        self._open(config_mod.build(path, secret_key=secret_key, old_secret_keys=old_secret_keys,
                                    allowed_modules=allowed_modules,
                                    remap=remap, fsync=fsync, **options), clock, given=options)

    @classmethod
    def _for_worker(cls, path: str | os.PathLike[str] | None) -> Queue:
        """Open without indexing the backlog first: a worker's children take it in one batch at
        a time while they run the jobs already indexed, so the first job starts at once however
        many records were appended since the index was last read."""
        queue = cls.__new__(cls)
        queue._open(config_mod.build(path), time.time, catch_up=False)
        return queue

    def _open(self, cfg: config_mod.QueueConfig, clock: Callable[[], float], *,
              given: Mapping[str, object] = MappingProxyType({}), catch_up: bool = True) -> None:
        self.engine = engines.open_engine(cfg, clock, given, catch_up)
        # With the settings the queue keeps for life, as it was created with them.
        kept = {name: getattr(self.engine.config, name) for name in engines.FIXED
                if getattr(self.engine.config, name, 0)}  # (0: a setting the engine has not)
        self.config = cfg = replace(cfg, **kept)
        self.created = self.engine.created  # this Queue made the queue: a new, empty one
        self.shared_group = self.engine.shared_group  # the group it is shared with, if it is
        self._clock = clock
        self._key = cfg.secret_key
        self._default_options: Options | None = None  # the usual options, once validated
        self._default_keep = retention.Retention(cfg.result_ttl, cfg.failure_ttl)
        try:
            self._default_options = self._options(0, None, None, None)
        except InvalidJob:
            pass  # a default_max_attempts out of range: every enqueue reports it

    def reopen(self, *, catch_up: bool = True) -> Queue:
        """A new Queue on the same queue and settings, with its own files and connection.

        A process forked from one that holds a Queue must use its own: SQLite connections and
        locks must not be shared across a fork. ``catch_up=False``: see :meth:`_for_worker`.
        """
        fresh = Queue.__new__(Queue)
        fresh._open(self.config, self._clock, catch_up=catch_up)
        return fresh

    @property
    def shared_group_name(self) -> str | None:
        """The name of the group the queue is shared with, if it is."""
        return None if self.shared_group is None else engines.group_name(self.shared_group)

    @staticmethod
    def exists(location: str) -> bool:
        """Is there a queue at ``location``? (QueuePermissionError if this user may not look.)
        A queue in PostgreSQL is made on first use, like a Redis list: it is always there."""
        return engines.exists(location)

    def share(self, group: str | int) -> str:
        """Share the queue with the users of ``group``; return where it is, to open it again."""
        return self.engine.share(group)

    @property
    def store(self) -> Any:
        """The directory engine's state store: for tests and tools, not part of the API."""
        return self.engine.store

    @property
    def log(self) -> Any:
        """The directory engine's log: for tests and tools, not part of the API."""
        return self.engine.log

    @property
    def location(self) -> str:
        """Where the queue is, for messages: its directory, or its server's URL without the
        password."""
        return self.engine.location

    @property
    def path(self) -> str:
        return self.config.path

    def __repr__(self) -> str:
        return f"Queue({self.path!r})"

    # -- producing -----------------------------------------------------------------------------

    def enqueue(self, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> str:
        """Enqueue ``fn(*args, **kwargs)``; return the job id once it is durable.

        A call that does not fit ``fn``'s signature is refused (SignatureMismatch): job options
        such as ``timeout=`` go to :meth:`enqueue_call`, not here.
        """
        # args is a tuple and kwargs a fresh dict with str keys: nothing to check or copy.
        options = self._default_options or self._options(0, None, None, None)
        if isinstance(fn, str):
            ref, function = tasks.target(fn)
            if function is not None:
                signatures.check(function, ref, args, kwargs)
        else:  # tasks.target without its call: this is the hot path
            ref = tasks.reference(fn)
            signatures.check(fn, ref, args, kwargs)
        return self._enqueue_one(ref, args, kwargs, None, options, self._default_keep)

    def enqueue_call(self, fn: Callable[..., Any] | str, args: Iterable[Any] = (),
                     kwargs: Mapping[str, Any] | None = None, *, job_id: str | None = None,
                     priority: int = 0, delay: float | None = None,
                     max_attempts: int | None = None, timeout: float | None = None,
                     depends_on: Iterable[str] | None = None,
                     on_dependency_failure: str = "cancel",
                     concurrency_key: str | None = None, unique_key: str | None = None,
                     result_ttl: float | None | EllipsisType = ...,
                     failure_ttl: float | None | EllipsisType = ...) -> str:
        """Enqueue with options. A ``job_id`` that already exists is returned without a new job.

        ``depends_on``: ids of jobs that must succeed first; the job is ``waiting`` until then
        and due as soon as the last one succeeds. If one ends dead or cancelled, the job ends
        cancelled (``on_dependency_failure="cancel"``) or runs once every parent has ended
        (``"run"``). UnknownParent, and nothing stored, if a parent does not exist.

        ``concurrency_key``: the job runs within that key's limits (:meth:`set_limit`).
        ``unique_key``: if a job of that key has not ended, its id is returned and nothing is
        stored (:mod:`jobq.limits`).
        ``result_ttl``/``failure_ttl``: seconds the job is kept once it ended (succeeded or
        cancelled / dead) before workers purge it; None: for ever; not given: the Queue's.
        """
        task, function = tasks.target(fn)
        options = self._options(priority, delay, max_attempts, timeout)
        keep = retention.resolve(result_ttl, failure_ttl, self._default_keep)
        args, kwargs = job_options.args_tuple(args), job_options.kwargs_dict(kwargs)
        # jobq.dependencies and jobq.limits are imported by the calls that use them, not with
        # this module: a worker opens a Queue but needs neither to start (their dataclass and
        # named tuples), and the usual call pays no import statement.
        parents: tuple[str, ...] = ()
        policy = on_dependency_failure
        if depends_on is not None or policy != "cancel":
            from . import dependencies
            parents, policy = dependencies.validate(depends_on, on_dependency_failure)
        keys: tuple[str | None, str | None] = (None, None)
        if concurrency_key is not None or unique_key is not None:
            from . import limits as job_limits
            keys = job_limits.job_keys(concurrency_key, unique_key)
        if function is not None:
            signatures.check(function, task, args, kwargs)
        if job_id is not None:
            check_job_id(job_id)
            if self.engine.exists(job_id):
                return job_id
        if keys != (None, None):
            job_id = job_id or job_ids.next()
            self._keep([job_id], keep)  # unused (and harmless) if the unique key finds a job
            from . import limits as job_limits
            return job_limits.enqueue_keyed(self.engine.limits, self._frame, task, args, kwargs,
                                            job_id, options, keys, parents)
        if parents:
            job_id = job_id or job_ids.next()
            frame = self._frame(task, args, kwargs, job_id, options)
            self._keep([job_id], keep)
            self.engine.append_dependent(frame, job_id, parents, policy)
            return job_id
        return self._enqueue_one(task, args, kwargs, job_id, options, keep)

    def _enqueue_one(self, task: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                     job_id: str | None, options: Options, keep: retention.Retention) -> str:
        """Append one job whose every input is validated; return its id once it is durable."""
        if job_id is None:
            job_id = job_ids.next()
        frame = self._frame(task, args, kwargs, job_id, options)
        self._keep([job_id], keep)
        self.engine.append([frame])
        return job_id

    def _keep(self, ids: list[str], keep: retention.Retention) -> None:
        """Record the ttls of jobs about to be stored (nothing for jobs kept for ever)."""
        if not keep.forever and ids:
            self.engine.keep_for(ids, keep.result_ttl, keep.failure_ttl)

    def enqueue_many(self, fn: Callable[..., Any] | str, args_list: Iterable[Iterable[Any]], *,
                     priority: int = 0, delay: float | None = None,
                     max_attempts: int | None = None, timeout: float | None = None,
                     result_ttl: float | None | EllipsisType = ...,
                     failure_ttl: float | None | EllipsisType = ...) -> list[str]:
        """Enqueue ``fn(*args)`` for each tuple of ``args_list`` in one durable write and fsync.

        ``result_ttl``/``failure_ttl`` as for :meth:`enqueue_call`, for every job of the call.
        """
        if isinstance(args_list, (str, bytes)) or not isinstance(args_list, Iterable):
            raise InvalidJob("args_list must be an iterable of argument tuples")
        from . import batches  # not with this module: a worker's start needs none of it

        task, function = tasks.target(fn)
        options = self._options(priority, delay, max_attempts, timeout)
        keep = retention.resolve(result_ttl, failure_ttl, self._default_keep)
        ids: list[str] = []  # filled as the engine takes the batches (an error: none stored)
        self.engine.append_batches(batches.records(
            task, function, args_list, options, ids, now=self._clock(), key=self._key,
            limit=self.config.max_record_size))
        # After the records (their ids are made as they are stored): a job that ended
        # meanwhile gets its expiry from its end time (Engine.keep_for); a crash in between
        # keeps the jobs for ever, never loses one early.
        self._keep(ids, keep)
        return ids

    def map(self, fn: Callable[..., Any] | str, items: Iterable[Any], *, chunk_size: int = 1,
            then: Any = None, **options: Any) -> groups.Group:
        """One job per item (or per ``chunk_size`` items) calling ``fn(item)``, in one group;
        ``then=fn`` or ``(fn, args)`` runs once every member ended, with the group id first.
        ``options``: ``priority``, ``delay``, ``max_attempts``, ``timeout`` (see jobq.groups)."""
        from . import groups

        return groups.map_items(self, fn, items, chunk_size=chunk_size, then=then, **options)

    def group(self, group_id: str) -> groups.GroupStatus:
        """The group's members by status, progress, final job; GroupNotFound if none."""
        from . import groups

        return groups.status(self, group_id)

    def gather(self, group_id: str, timeout: float | None = None,
               return_exceptions: bool = False) -> list[Any]:
        """Wait for every member; the results in item order. JobFailed for the first member
        that failed (in item order), or with ``return_exceptions`` the errors in place."""
        from . import groups

        return groups.gather(self, group_id, timeout, return_exceptions)

    def _options(self, priority: int, delay: float | None, max_attempts: int | None,
                 timeout: float | None) -> Options:
        """Validate the per-job options once per call."""
        if type(priority) is int and priority == 0 and delay is None and max_attempts is None \
                and timeout is None and self._default_options is not None:
            return self._default_options  # the usual call: validated when the queue opened
        return job_options.validate(priority, delay, max_attempts, timeout,
                                    default_max_attempts=self.config.default_max_attempts)

    def _frame(self, task: str, args: tuple[Any, ...], kwargs: dict[str, Any], job_id: str,
               options: Options) -> bytes:
        """Build one job's record; raises before anything is written."""
        now = self._clock()
        body = job_record.encode_fields(job_id, task, args, kwargs, options.priority,
                                        options.max_attempts, options.timeout,
                                        now + options.delay, now)
        if len(body) > self.config.max_record_size:
            from .batches import too_large

            raise too_large(job_id, len(body), self.config.max_record_size)
        return record.encode(record.KIND_JOB, body, self._key)

    # -- observing -----------------------------------------------------------------------------

    def state(self, job_id: str) -> JobState:
        """The job's current snapshot; JobNotFound if no such job was enqueued."""
        check_job_id(job_id)
        return self.engine.get(job_id)

    def payload(self, job_id: str) -> JobPayload:
        """The job as it was enqueued, read back from its stored record."""
        check_job_id(job_id)
        return job_record.load_payload(self.engine.payload_body(job_id), self.config.rules,
                                       job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> JobState:
        """Block until the job succeeded, died or was cancelled; WaitTimeout after ``timeout`` s."""
        check_job_id(job_id)
        if timeout is not None and (not job_options.is_number(timeout) or timeout < 0):
            raise InvalidArgument(f"timeout must be a number of seconds >= 0, not {timeout!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.002
        while True:
            if self.engine.status(job_id).finished:
                return self.engine.get(job_id)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeout(f"job {job_id} did not finish within {timeout} s",
                                      job_id=job_id, timeout=timeout)
                pause = min(pause, left)
            time.sleep(pause)
            pause = min(pause * 1.5, 0.1)

    def result(self, job_id: str, timeout: float | None = None) -> Any:
        """Wait for the job and return its result; JobFailed (or JobCancelled) if it has none."""
        state = self.wait(job_id, timeout)
        if state.status is Status.SUCCEEDED:
            return state.result
        if state.status is Status.CANCELLED:
            raise JobCancelled(f"job {job_id} was cancelled", job_id=job_id, error=state.error)
        raise JobFailed(f"job {job_id} failed after {state.attempts} attempt(s): "
                        f"{last_line(state.error)}", job_id=job_id, error=state.error)

    def counts(self) -> dict[str, int]:
        """Number of jobs in each status (every status is present, zero or not)."""
        return self.engine.counts()

    def jobs(self, status: Status | str | None = None) -> Iterator[JobState]:
        """Every job's state in enqueue order, optionally of one status; read lazily."""
        wanted = _parse_status(status)
        for job_id in self.engine.job_ids(wanted):
            yield self.engine.get(job_id)

    def workers(self) -> list[WorkerInfo]:
        """Workers of this queue: alive ones (live or stuck), dead ones not yet reaped, then
        those found dead in the last day, newest first. Reading never takes a worker's lock
        in a way that could make it look dead, and needs no write permission."""
        from .worker_info import workers_of

        return workers_of(self.engine, self.engine.now())

    # -- acting --------------------------------------------------------------------------------

    def cancel(self, job_id: str) -> bool:
        """Cancel a waiting job, or ask a running one to stop. False if it had already finished."""
        check_job_id(job_id)
        return self.engine.cancel(job_id)

    def retry(self, job_id: str) -> bool:
        """Re-queue a dead (or cancelled) job with a fresh budget of attempts."""
        check_job_id(job_id)
        return self.engine.requeue(job_id)

    def set_limit(self, key: str, *, concurrency: int | None = None, rate: int | None = None,
                  per: float | None = None) -> job_limits.Limit | None:
        """Limit the jobs of ``concurrency_key=key``: ``concurrency`` running at once, ``rate``
        starts per ``per`` seconds; replaces the key's limits, both None removes them."""
        from . import limits as job_limits

        return job_limits.set_limit(self.engine.limits, key, concurrency=concurrency, rate=rate,
                                    per=per)

    def remove_limit(self, key: str) -> bool:
        """Forget ``key``'s limits (its jobs run unlimited); False if it had none."""
        from . import limits as job_limits

        return job_limits.remove_limit(self.engine.limits, key)

    def limits(self) -> list[job_limits.Limit]:
        """Every key's limits, by key."""
        return self.engine.limits.all()

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _parse_status(status: Status | str | None) -> Status | None:
    if status is None:
        return None
    try:
        return Status(status)
    except ValueError:
        choices = ", ".join(s.value for s in Status)
        raise InvalidArgument(f"unknown status {status!r}; choose one of {choices}") from None
