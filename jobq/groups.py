"""Map over items, and a final step: ``q.map``, ``q.group`` and ``q.gather``.

``q.map(fn, items)`` makes one job per item (or per chunk of ``chunk_size`` items), all members
of one group whose id the returned :class:`Group` holds. The jobs are streamed to the engine in
batches, as ``enqueue_many`` does, and their ids are made from the group's id and their position
(:mod:`jobq.group_ids`), so nothing per item is kept in memory: a generator of a million items
costs the memory of a few batches. The members are stored in several durable commits, not one:
the directory engine writes and fsyncs every 10,000 jobs, PostgreSQL commits every 20,000 (one
transaction for all would hold every record in memory until it commits). Workers may start on
the first members while the rest are written; the group is closed (its number of members
stored) after the last, and only then can it complete. An error while the items are read (or
a producer killed) leaves the members already stored in a group that never completes: its
final job stays ``waiting`` (cancel it, or the members, by hand).

``then=`` is an ordinary job stored with the group and ``waiting`` until every member has ended,
whatever each ended as: the engines count members' ends in the transaction that records each
end (a counter per group, no scan), and the one that completes the group makes the final job
due. It is called with the group's id first, so it can :meth:`Queue.gather`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import batches, group_ids, job_options, job_record, record, signatures, tasks
from .errors import (GroupNotFound, InvalidArgument, InvalidJob, JobCancelled, JobFailed,
                     SignatureMismatch, WaitTimeout)
from .state import FINISHED, Status, last_line

if TYPE_CHECKING:
    from .queue import Queue

BATCH = 1_000  # jobs handed to the engine at a time (as enqueue_many)
CHUNK_TASK = "jobq.groups:run_chunk"


@dataclass(frozen=True)
class Group:
    """A group made by ``q.map``: its ``id``, and how many jobs and items it has."""

    id: str
    jobs: int
    items: int
    _queue: Queue | None = field(default=None, repr=False, compare=False)

    def status(self) -> GroupStatus:
        assert self._queue is not None
        return self._queue.group(self.id)

    def gather(self, timeout: float | None = None, return_exceptions: bool = False) -> list[Any]:
        assert self._queue is not None
        return self._queue.gather(self.id, timeout=timeout, return_exceptions=return_exceptions)


@dataclass(frozen=True)
class GroupStatus:
    """What ``q.group(gid)`` tells: members by status, and whether the group is done (every
    member ended once, which let its final job go). ``jobs`` is None while ``q.map`` is still
    storing the members."""

    id: str
    jobs: int | None
    items: int | None
    chunk_size: int
    counts: dict[str, int]
    ended: int  # the fan-in counter: members' moves into a finished status (retries undone)
    done: bool
    then_job: str | None
    created_at: float
    done_at: float | None

    @property
    def finished(self) -> int:
        """Members that have ended (succeeded, dead or cancelled), as they are now."""
        return sum(self.counts.get(s.value, 0) for s in FINISHED)

    @property
    def progress(self) -> float:
        """The share of members that have ended, 0.0 to 1.0 (1.0 for a group of none)."""
        if not self.jobs:
            return 1.0 if self.jobs == 0 else 0.0
        return min(1.0, self.finished / self.jobs)


def run_chunk(task: str, items: tuple[Any, ...]) -> list[Any]:
    """The task of a chunk's job: ``task(item)`` for each item, the results in item order."""
    fn = tasks.resolve(task)
    return [fn(item) for item in items]


def map_items(q: Queue, fn: Callable[..., Any] | str, items: Iterable[Any], *,
              chunk_size: int = 1, then: Any = None, priority: int = 0,
              delay: float | None = None, max_attempts: int | None = None,
              timeout: float | None = None) -> Group:
    """See :meth:`jobq.queue.Queue.map`."""
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise InvalidArgument(f"chunk_size must be an integer >= 1, not {chunk_size!r}")
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise InvalidJob(f"items must be an iterable of items, not {type(items).__name__}")
    task, function = tasks.target(fn)
    if function is not None:
        signatures.check(function, task, (None,), {})  # fn(item)
    options = q._options(priority, delay, max_attempts, timeout)
    group_id = group_ids.new_group_id()
    final = None
    if then is not None:
        then_task, then_args = _then(then, group_id)
        then_options = q._options(priority, None, max_attempts, None)
        final = (group_ids.then_id(group_id),
                 q._frame(then_task, then_args, {}, group_ids.then_id(group_id), then_options))
    q.engine.open_group(group_id, chunk_size, final)
    made = [0, 0]  # jobs, items: counted as the engine takes the batches
    q.engine.append_members(_batches(q, group_id, task, chunk_size, iter(items), options,
                                     made))
    q.engine.close_group(group_id, made[0], made[1])
    return Group(group_id, made[0], made[1], q)


def _then(then: Any, group_id: str) -> tuple[str, tuple[Any, ...]]:
    """The final job's task and arguments (the group's id first); InvalidJob if malformed."""
    if isinstance(then, tuple):
        if len(then) != 2:
            raise InvalidJob("then must be a task or a (task, args) pair, not a tuple of"
                             f" {len(then)}")
        fn, args = then[0], job_options.args_tuple(then[1])
    else:
        fn, args = then, ()
    if not (callable(fn) or isinstance(fn, str)):
        raise InvalidJob(f"then must be a task or a (task, args) pair, not {then!r}")
    task, function = tasks.target(fn)
    args = (group_id, *args)
    if function is not None:
        try:
            signatures.check(function, task, args, {})
        except SignatureMismatch as exc:
            raise SignatureMismatch(f"then: {exc} (its first argument is the group id)",
                                    task=task) from exc
    return task, args


def _batches(q: Queue, group_id: str, task: str, chunk_size: int, items: Iterator[Any],
             options: job_options.Options, made: list[int]
             ) -> Iterator[tuple[batches.Made, int]]:
    """The members' records, BATCH jobs at a time (Made pieces, size of the last one)."""
    prio, delay_s, attempts, timeout_s = options
    now = q._clock()
    run_at, limit, key = now + delay_s, q.config.max_record_size, q._key
    header, kind = record.header, record.KIND_JOB
    chunked = chunk_size > 1
    job_task = CHUNK_TASK if chunked else task
    body_of = job_record.Bodies(job_task, prio, attempts, timeout_s, run_at, now).body
    shared = batches.Shared(prio, run_at, now, attempts, job_task)
    parts: list[bytes] = []
    ids: list[str] = []
    pos = 0
    while True:
        if chunked:
            chunk = tuple(itertools.islice(items, chunk_size))
            if not chunk:
                break
            args: tuple[Any, ...] = (task, chunk)
            count = len(chunk)
        else:
            item = next(items, _END)
            if item is _END:
                break
            args, count = (item,), 1
        job_id = f"{group_id}.{pos}"
        body = body_of(job_id, args)
        if len(body) > limit:
            raise batches.too_large(job_id, len(body), limit)
        parts += (header(kind, body, key), body)
        ids.append(job_id)
        pos += 1
        made[0], made[1] = pos, made[1] + count
        if len(parts) == 2 * BATCH:
            yield batches.Made(parts, ids, shared), len(parts[-2]) + len(parts[-1])
            parts, ids = [], []
    if parts:
        yield batches.Made(parts, ids, shared), len(parts[-2]) + len(parts[-1])


_END = object()


def status(q: Queue, group_id: str) -> GroupStatus:
    """See :meth:`jobq.queue.Queue.group`."""
    if not isinstance(group_id, str) or not group_id.startswith(group_ids.PREFIX):
        raise GroupNotFound(f"no group with id {group_id!r}", group_id=group_id)
    row = q.engine.group(group_id)
    return GroupStatus(id=group_id, jobs=row["jobs"], items=row["items"],
                       chunk_size=row["chunk_size"], counts=row["counts"], ended=row["ended"],
                       done=row["done_at"] is not None, then_job=row["then_job"],
                       created_at=row["created_at"], done_at=row["done_at"])


def gather(q: Queue, group_id: str, timeout: float | None = None,
           return_exceptions: bool = False) -> list[Any]:
    """See :meth:`jobq.queue.Queue.gather`."""
    if timeout is not None and (not job_options.is_number(timeout) or timeout < 0):
        raise InvalidArgument(f"timeout must be a number of seconds >= 0, not {timeout!r}")
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = 0.005
    while True:
        st = status(q, group_id)
        if st.jobs is not None and st.finished >= st.jobs:
            break
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(f"group {group_id}: {st.finished} of {st.jobs} jobs ended"
                                  f" within {timeout} s", group_id=group_id, timeout=timeout)
            pause = min(pause, left)
        time.sleep(pause)
        pause = min(pause * 1.5, 0.25)
    assert st.jobs is not None and st.items is not None
    results: list[Any] = []
    chunk = st.chunk_size
    for pos in range(st.jobs):
        state = q.engine.get(group_ids.member_id(group_id, pos))
        if state.status is Status.SUCCEEDED:
            if chunk > 1:
                results += state.result
            else:
                results.append(state.result)
            continue
        error = _error(group_id, pos, state)
        if not return_exceptions:
            raise error
        results += [error] * min(chunk, st.items - pos * chunk)
    return results


def _error(group_id: str, pos: int, state: Any) -> JobFailed:
    job_id = state.job_id
    if state.status is Status.CANCELLED:
        return JobCancelled(f"group {group_id}: job {job_id} (member {pos}) was cancelled",
                            job_id=job_id, error=state.error)
    return JobFailed(f"group {group_id}: job {job_id} (member {pos}) failed after"
                     f" {state.attempts} attempt(s): {last_line(state.error)}",
                     job_id=job_id, error=state.error)
