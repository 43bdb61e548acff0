"""The body of a job record (kind 1): routing fields in the clear, then the pickled JobPayload.

The index needs a job's id, task, priority and times, but must not unpickle to get them: an
indexing process (a monitoring CLI, a producer) may not be able to import the classes in a job's
arguments, and should never run code from the log. So those fields are repeated in front of the
pickle, in a fixed layout (little-endian)::

    offset  size  field
         0     8  priority      i64
         8     8  run_at        f64, epoch seconds
        16     8  created_at    f64, epoch seconds
        24     4  max_attempts  i32
        28     2  job id length n
        30     2  task length   m
        32     n  job id        UTF-8
      32+n     m  task          UTF-8
    32+n+m     .  pickled JobPayload (protocol 5); its own fields must match the ones above
"""

from __future__ import annotations

import struct
from typing import Any, Final, NamedTuple

from . import pickling
from .errors import CorruptRecord
from .payload import JobPayload, Template, dumps_fields

_META = struct.Struct("<qddiHH")
assert _META.size == 32
_LENGTHS = struct.Struct("<HH")  # its last two fields: the job id's and the task's lengths
_LENGTHS_AT = _META.size - _LENGTHS.size
MAX_TEXT: Final = 0xFFFF  # longest job id or task reference, in UTF-8 bytes


class JobMeta(NamedTuple):
    """The fields of a job that the index needs, read without unpickling (a named tuple: the
    index makes one per record)."""

    job_id: str
    task: str
    priority: int
    run_at: float
    created_at: float
    max_attempts: int


def encode(payload: JobPayload, pickled: bytes) -> bytes:
    job_id = payload.job_id.encode()
    task = payload.task.encode()
    head = _META.pack(payload.priority, payload.run_at, payload.created_at, payload.max_attempts,
                      len(job_id), len(task))
    return b"".join((head, job_id, task, pickled))


def encode_fields(job_id: str, task: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                  priority: int, max_attempts: int, timeout: float | None, run_at: float,
                  created_at: float) -> bytes:
    """The body of the record of a JobPayload of these fields, built without the JobPayload.

    The same bytes as ``encode(payload, ...)`` up to the pickle, which loads to the same payload:
    the enqueue path's encoder.
    """
    job_id_utf8 = job_id.encode()
    task_utf8 = task.encode()
    head = _META.pack(priority, run_at, created_at, max_attempts, len(job_id_utf8),
                      len(task_utf8))
    return b"".join((head, job_id_utf8, task_utf8,
                     dumps_fields(job_id, task, args, kwargs, priority, max_attempts, timeout,
                                  run_at, created_at)))


class Bodies:
    """The bodies of jobs that share every field but their id and ``args`` and have no
    ``kwargs`` (one ``enqueue_many``'s, one group's members): the same bytes as
    :func:`encode_fields` up to the pickle, which loads to the same payload
    (:class:`jobq.payload.Template`'s); the routing head is packed once per id length."""

    def __init__(self, task: str, priority: int, max_attempts: int, timeout: float | None,
                 run_at: float, created_at: float) -> None:
        self._task = task.encode()
        self._fixed = (priority, run_at, created_at, max_attempts)
        self._heads: dict[int, bytes] = {}
        self._pickle = Template(task, priority, max_attempts, timeout, run_at, created_at).pieces

    def body(self, job_id: str, args: tuple[Any, ...]) -> bytes:
        job_id_utf8 = job_id.encode()
        head = self._heads.get(len(job_id_utf8))
        if head is None:
            head = self._heads[len(job_id_utf8)] = _META.pack(
                *self._fixed, len(job_id_utf8), len(self._task))
        return b"".join((head, job_id_utf8, self._task, *self._pickle(job_id_utf8, args)))


def decode_meta(body: bytes) -> tuple[JobMeta, int]:
    """Return the routing fields and the offset at which the pickle starts."""
    try:
        priority, run_at, created_at, max_attempts, id_len, task_len = _META.unpack_from(body, 0)
        start = _META.size
        job_id = body[start:start + id_len].decode()
        task = body[start + id_len:start + id_len + task_len].decode()
    except (struct.error, UnicodeDecodeError) as exc:
        raise CorruptRecord(f"malformed job record: {exc}") from exc
    end = start + id_len + task_len
    if end > len(body):  # a slice past the end is only shorter: the lengths tell
        raise CorruptRecord("malformed job record: truncated job id or task")
    return JobMeta(job_id, task, priority, run_at, created_at, max_attempts), end


def meta_at(buf: bytes, start: int, end: int) -> tuple[str, str, int, float, float, int]:
    """The fields of :class:`JobMeta` (in its order, as a plain tuple) of the body at
    ``buf[start:end]``, read in place: the index reads them from a window of the log, a few
    thousand at a time. Raises what :func:`decode_meta` raises for the same body."""
    at = start + _META.size
    if at <= end:
        priority, run_at, created_at, max_attempts, id_len, task_len = _META.unpack_from(
            buf, start)
        task_at = at + id_len
        if task_at + task_len <= end:
            try:
                return (buf[at:task_at].decode(), buf[task_at:task_at + task_len].decode(),
                        priority, run_at, created_at, max_attempts)
            except UnicodeDecodeError as exc:
                raise CorruptRecord(f"malformed job record: {exc}") from exc
    decode_meta(buf[start:end])  # raises what is wrong
    raise CorruptRecord("malformed job record")  # (decode_meta raises for any body above)


def is_record_of(body: bytes, job_id: str) -> bool:
    """Does ``body`` hold ``job_id``'s record, with routing fields :func:`decode_meta` accepts?
    Read in place by :func:`routing`, without making them: a worker asks once per job it
    starts, to tell a record that moved (see jobq.local.payloads)."""
    try:
        return routing(body, 0, len(body))[4] == job_id.encode()
    except CorruptRecord:
        return False


def routing(buf: bytes, start: int, end: int) -> tuple[int, float, float, int, bytes, bytes]:
    """The routing fields of the body at ``buf[start:end]`` without copying it: priority,
    run_at, created_at, max_attempts, then the job id and task as UTF-8 (checked) bytes."""
    at = start + _META.size
    if at > end:
        raise CorruptRecord(f"malformed job record: {end - start} bytes, shorter than its"
                            " fixed fields")
    priority, run_at, created_at, max_attempts, id_len, task_len = _META.unpack_from(buf, start)
    fields_end = at + id_len + task_len
    if fields_end > end:
        raise CorruptRecord("malformed job record: truncated job id or task")
    job_id, task = buf[at:at + id_len], buf[at + id_len:fields_end]
    try:
        job_id.decode()
        task.decode()
    except UnicodeDecodeError as exc:
        raise CorruptRecord(f"malformed job record: {exc}") from exc
    return priority, run_at, created_at, max_attempts, job_id, task


def load_payload(body: bytes, rules: pickling.PickleRules, job_id: str | None = None) -> JobPayload:
    """Unpickle the JobPayload of a verified record and check it against the routing fields.

    With ``job_id``, also check that the record is that job's: a position read from the index
    just before compaction moved the record would otherwise find another job there.
    """
    found, start = _job_id_and_pickle(body)
    if job_id is not None and found != job_id:
        raise CorruptRecord(f"the record indexed for job {job_id!r} holds job {found!r}"
                            " (it moved, or the index is stale)", job_id=job_id)
    payload = pickling.loads(body[start:], rules)
    if not isinstance(payload, JobPayload) or payload.job_id != found:
        raise CorruptRecord(f"job record {found!r} does not hold its own JobPayload",
                            job_id=found)
    return payload


def _job_id_and_pickle(body: bytes) -> tuple[str, int]:
    """The job id of a record's body and where its pickle starts, as :func:`decode_meta` reads
    them (the task checked too) without making a JobMeta: a worker loads a payload a job, and
    decode_meta cost it some 8,800 instructions (issue 19). Raises what decode_meta raises."""
    if len(body) >= _META.size:
        id_len, task_len = _LENGTHS.unpack_from(body, _LENGTHS_AT)
        task_at = _META.size + id_len
        end = task_at + task_len
        if end <= len(body):
            try:
                job_id = body[_META.size:task_at].decode()
                body[task_at:end].decode()
                return job_id, end
            except UnicodeDecodeError:
                pass
    decode_meta(body)  # raises what is wrong
    raise CorruptRecord("malformed job record")  # (decode_meta raises for any body above)
