"""Every error jobq raises, in one hierarchy rooted at :class:`JobqError`.

Errors keep their fields as attributes and survive pickling, so a worker child can send one to its
supervisor intact. Where a builtin reads naturally, an error also subclasses it
(``JobNotFound`` is a ``KeyError``) so generic handlers keep working.
"""

from __future__ import annotations

import pickle
from typing import Any

__all__ = [
    "JobqError",
    "ConfigError",
    "InvalidArgument",
    "InvalidJob",
    "InvalidTask",
    "TaskNotFound",
    "SignatureMismatch",
    "NotPicklable",
    "RecordTooLarge",
    "JobNotFound",
    "UnknownParent",
    "GroupNotFound",
    "JobFailed",
    "PermanentFailure",
    "JobCancelled",
    "WaitTimeout",
    "StaleClaim",
    "NoCurrentJob",
    "Released",
    "StorageError",
    "NotAQueue",
    "QueuePermissionError",
    "IncompatibleFormat",
    "WrongSecretKey",
    "OldKeyNeeded",
    "CorruptRecord",
    "DamagedRecord",
    "CorruptStore",
    "SchemaVersionError",
    "UnpicklingForbidden",
    "LoadError",
    "LivenessLost",
    "InvalidSchedule",
    "ScheduleNotFound",
    "transient",
]


def _rebuild(cls: type, message: str, fields: dict[str, Any]) -> JobqError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    _set_fields(err, fields)
    return err


def _set_fields(err: BaseException, fields: dict[str, Any]) -> None:
    # setattr, not __dict__.update: OSError keeps ``errno`` in a slot that a same-named
    # instance-dict entry cannot reach, so StorageError(errno=...) read back errno None.
    for name, value in fields.items():
        setattr(err, name, value)


class JobqError(Exception):
    """Root of every jobq error. ``str(err)`` is the message; extra keyword fields become attributes."""

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        _set_fields(self, fields)

    def __str__(self) -> str:
        # KeyError's own __str__ would quote the message; ours is always the plain sentence.
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[Any, ...]:
        fields = dict(self.__dict__)
        if isinstance(self, OSError) and self.errno is not None:
            fields["errno"] = self.errno
        return (_rebuild, (type(self), str(self), fields))


class ConfigError(JobqError, ValueError):
    """A queue or worker was configured with a value it cannot use."""


class InvalidArgument(JobqError, ValueError):
    """A public call was given an argument it cannot use; nothing was changed."""


class InvalidJob(InvalidArgument):
    """An enqueue was refused before anything was written: bad options or arguments."""


class InvalidTask(InvalidJob):
    """The task is not a module-level function that a worker can import by reference."""


class TaskNotFound(InvalidTask):
    """The task's module imports, but has no callable of the task's name. A worker sends such a
    job to ``dead`` at once (retrying cannot make the function appear); ``q.retry`` it after a
    deploy that adds the function."""


class SignatureMismatch(InvalidJob, TypeError):
    """The job's arguments do not fit its task's parameters (the call would raise TypeError).
    Refused at enqueue; a worker that finds it sends the job to ``dead`` at once."""


class NotPicklable(InvalidJob):
    """The job's arguments cannot be pickled."""


class RecordTooLarge(InvalidJob):
    """The pickled job is larger than the queue's ``max_record_size``."""


class InvalidSchedule(InvalidArgument):
    """A periodic schedule was refused before anything was stored: a bad name, cron expression,
    time zone, task, arguments or policy."""


class ScheduleNotFound(JobqError, KeyError):
    """No schedule of that name is stored."""


class JobNotFound(JobqError, KeyError):
    """No job with this id exists in the queue."""


class GroupNotFound(JobqError, KeyError):
    """No group (of ``q.map``) with this id exists in the queue."""


class UnknownParent(InvalidJob, KeyError):
    """A job was enqueued to depend on a job that does not exist; nothing was stored."""


class JobFailed(JobqError):
    """The job ended without a result; ``error`` holds the last error text."""


class PermanentFailure(JobqError):
    """Raised by a task to fail for good: the job goes to ``dead`` now, with its remaining
    attempts unspent (Celery's ``Reject(requeue=False)``, Dramatiq's ``throws``).
    ``raise PermanentFailure("no such user") from exc`` keeps the cause in the job's error."""


class JobCancelled(JobFailed):
    """The job was cancelled before it produced a result."""


class WaitTimeout(JobqError, TimeoutError):
    """``wait``/``result`` gave up before the job finished."""


class StaleClaim(JobqError):
    """A state write carried a claim token that is no longer current (another attempt owns the job)."""


class NoCurrentJob(JobqError, RuntimeError):
    """``current_job()`` was called outside a running job."""


class Released(JobqError):
    """Raised by ``ctx.release()``: the task ends its attempt early because its worker is stopping;
    the job is given back uncharged and resumes from its last checkpoint on the next worker. Let it
    propagate out of the task."""


class StorageError(JobqError, OSError):
    """The queue's storage cannot be read or written as expected.

    ``transient`` is True when the same call may succeed later (a database server unreachable,
    restarting, or that ended the session): a worker waits and retries. Otherwise it is absent
    or False, and retrying cannot help (see :func:`transient`).
    """


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a StorageError that retrying later may get past."""
    return isinstance(exc, StorageError) and bool(getattr(exc, "transient", False))


class NotAQueue(StorageError):
    """The directory exists and holds files, but is not a jobq queue."""


class QueuePermissionError(StorageError, PermissionError):
    """This user may not read or write a file of the queue; the message names the file, its
    owner and mode, and the way out (run as the owner, or share the queue with a group)."""


class IncompatibleFormat(StorageError):
    """The queue directory was written by an on-disk format this jobq does not know."""


class WrongSecretKey(StorageError):
    """The queue was opened with a secret key other than the one it was written with (or none)."""


class OldKeyNeeded(WrongSecretKey):
    """Live records or snapshots of the queue were signed with an old key that was not given.
    Nothing was read or changed: give the key among the old keys (``$JOBQ_OLD_SECRET_KEYS``) and
    open again. ``records``, ``snapshots`` and ``oldest_job`` say what needs it."""


class CorruptRecord(StorageError):
    """A log record or state snapshot failed its checksum or signature, or is malformed."""


class DamagedRecord(CorruptRecord):
    """A log record's bytes fail their checksum or signature, or stop short: no later read of
    them can succeed. ``path`` and ``offset`` say where; ``reason`` says what failed."""

    def with_copy(self, saved_to: str) -> str:
        """The error a job whose record is damaged ends with: where, what failed, where the
        copy set aside is."""
        return (f"payload record damaged at {getattr(self, 'path', None)}:"
                f"{getattr(self, 'offset', None)}: {getattr(self, 'reason', None)};"
                f" copy at {saved_to}")


class CorruptStore(StorageError):
    """The state database (``state.sqlite3``) is damaged; the message says how to recover."""


class SchemaVersionError(JobqError):
    """A pickled object carries a schema version this code cannot migrate from."""


class UnpicklingForbidden(JobqError, pickle.UnpicklingError):
    """A pickle referred to a global outside the queue's allow-list; it was not loaded."""


class LoadError(JobqError):
    """A stored object could not be unpickled (a missing module, a removed class, ...)."""


class LivenessLost(StorageError):
    """A worker lost what kept it alive to the others (on PostgreSQL: its lock session dropped).
    The others take it for dead and reclaim its jobs: it must stop claiming, and the fencing
    token refuses the results it still records."""
