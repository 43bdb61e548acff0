"""The records of ``Queue.enqueue_many``, made a batch at a time while the engine stores the
ones before, so that a million jobs never sit in memory as a million records at once."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from . import job_record, record, signatures
from .errors import InvalidJob, RecordTooLarge, SignatureMismatch
from .job_ids import job_ids
from .job_options import Options

BATCH = 1_000  # jobs of an enqueue_many handed to the engine at a time
# The first batch is smaller: a PostgreSQL queue COPYs each batch while the next is made, and
# its server has nothing to do until the first is made.
FIRST_BATCH = 100


class Shared(NamedTuple):
    """The routing fields every job of one ``enqueue_many`` has (jobq.job_record's)."""

    priority: int
    run_at: float
    created_at: float
    max_attempts: int
    task: str


class Made(list[bytes]):
    """The pieces of a batch's frames (header, body, header, body...) made in this process
    (by :func:`records`, or jobq.groups for a group's members), with the routing fields they
    were made from: the jobs' ``ids`` in order and the ``shared`` fields. An engine that needs
    those fields may take them from here instead of reading them back out of frames it would
    have to verify first (the frames are still verified where they are read)."""

    def __init__(self, pieces: list[bytes], ids: list[str], shared: Shared) -> None:
        super().__init__(pieces)
        self.ids = ids
        self.shared = shared


def records(task: str, function: Callable[..., Any] | None, args_list: Iterable[Iterable[Any]],
            options: Options, ids: list[str], *, now: float, key: bytes | None, limit: int
            ) -> Iterator[tuple[Made, int]]:
    """The records of ``args_list``, FIRST_BATCH jobs then BATCH at a time (:class:`Made`
    pieces, size of the last one), each job's id appended to ``ids`` as it is made. ``now``:
    one time for every job of the call."""
    prio, delay_s, attempts, timeout_s = options
    run_at = now + delay_s
    header, next_id, check = record.header, job_ids.next, signatures.check
    body_of = job_record.Bodies(task, prio, attempts, timeout_s, run_at, now).body
    fitting = () if function is None else signatures.positional_counts(function)
    shared = Shared(prio, run_at, now, attempts, task)
    parts: list[bytes] = []  # header, body, header, body...: joined once by the engine
    first = len(ids)  # where this batch's ids start in ``ids``
    size = 2 * FIRST_BATCH  # pieces of this batch
    for i, args in enumerate(args_list):
        if type(args) is not tuple:
            if not isinstance(args, (tuple, list)):
                raise InvalidJob(f"args_list[{i}] must be a tuple of arguments, not"
                                 f" {type(args).__name__}")
            args = tuple(args)
        if function is not None and (fitting is None or len(args) not in fitting):
            try:
                check(function, task, args, {})
            except SignatureMismatch as exc:  # say which of the batch; none is written
                raise SignatureMismatch(f"args_list[{i}]: {exc}", task=task) from exc
        job_id = next_id()
        body = body_of(job_id, args)
        if len(body) > limit:
            raise too_large(job_id, len(body), limit)
        parts += (header(record.KIND_JOB, body, key), body)
        ids.append(job_id)
        if len(parts) == size:
            yield Made(parts, ids[first:], shared), len(parts[-2]) + len(parts[-1])
            parts, first, size = [], len(ids), 2 * BATCH
    if parts:
        yield Made(parts, ids[first:], shared), len(parts[-2]) + len(parts[-1])


def too_large(job_id: str, size: int, limit: int) -> RecordTooLarge:
    return RecordTooLarge(f"job {job_id} pickles to {size} bytes, over the queue's"
                          f" max_record_size of {limit}", size=size, limit=limit)
