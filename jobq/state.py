"""``JobState``: the mutable snapshot of one job, kept in the state store and updated by workers."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any, ClassVar

from .versioning import Migration, Versioned


class Status(str, enum.Enum):
    """Where a job is in its life. ``str`` so it compares equal to, and prints as, its value."""

    QUEUED = "queued"  # waiting to run (possibly delayed until ``run_at``)
    RUNNING = "running"  # claimed by a worker
    FAILED = "failed"  # an attempt failed; a retry is scheduled for ``run_at``
    SUCCEEDED = "succeeded"
    DEAD = "dead"  # attempts exhausted; ``q.retry`` brings it back
    CANCELLED = "cancelled"
    WAITING = "waiting"  # for its parents (``depends_on``) to end; then queued, or cancelled

    def __str__(self) -> str:
        return self.value

    @property
    def finished(self) -> bool:
        return self in FINISHED


_BY_VALUE = {status.value: status for status in Status}


def status_of(value: str) -> Status:
    """``Status(value)`` with a dict lookup first: Enum's call costs a microsecond, and loading
    a job's state makes it once or twice (a worker loads thousands a second)."""
    found = _BY_VALUE.get(value) if isinstance(value, str) else None
    return found if found is not None else Status(value)  # Status() raises for a bad value


FINISHED = frozenset({Status.SUCCEEDED, Status.DEAD, Status.CANCELLED})
WAITING = frozenset({Status.QUEUED, Status.FAILED})


def _v1_to_v2(state: dict[str, Any]) -> dict[str, Any]:
    # Version 1 kept only the last error, had no progress, crash count, run-at time or cancel flag.
    error = state.get("error")
    state["errors"] = [error] if error else []
    state["progress"] = 1.0 if state.get("status") == Status.SUCCEEDED.value else 0.0
    state["crashes"] = 0
    state["run_at"] = state.get("enqueued_at") or 0.0
    state["cancel_requested"] = False
    return state


def _v2_to_v3(state: dict[str, Any]) -> dict[str, Any]:
    # Version 2 did not say which attempt saved the checkpoint: none counts as this attempt's.
    state["checkpoint_token"] = None
    return state


@dataclass(kw_only=True)
class JobState(Versioned):
    """A job's status, attempts, progress, checkpoint, result and errors.

    ``attempts`` counts the attempts charged to the job; ``crashes`` counts those that ended
    because the process running them died before saving a checkpoint. An attempt given back (a
    worker shutting down) or interrupted after saving a new checkpoint is not charged to either
    (see :func:`jobq.transitions.interrupted`). ``errors`` keeps one text per failed or
    interrupted attempt.

    ``checkpoint_token`` is the claim token of the attempt that saved ``checkpoint``: claim tokens
    only grow, so it equals the running claim's token exactly when that attempt saved it.

    Version history: 1 = single ``error``, no progress; 2 = adds ``progress``, ``errors``,
    ``crashes``, ``run_at`` and ``cancel_requested``; 3 = adds ``checkpoint_token``.
    """

    SCHEMA_VERSION: ClassVar[int] = 3
    MIGRATIONS: ClassVar[dict[int, Migration]] = {1: _v1_to_v2, 2: _v2_to_v3}

    job_id: str
    task: str
    status: Status = Status.QUEUED
    attempts: int = 0
    crashes: int = 0
    progress: float = 0.0  # 0..1, never goes backwards
    checkpoint: Any = None  # the last object the task saved with ctx.save()
    result: Any = None
    error: str | None = None  # the last error text
    errors: list[str] = field(default_factory=list)
    enqueued_at: float = 0.0
    run_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float = 0.0
    cancel_requested: bool = False
    checkpoint_token: int | None = None  # the claim token of the attempt that saved checkpoint

    def _pack(self, state: dict[str, Any]) -> dict[str, Any]:
        # Store the status as its string so a pickle names no enum class and survives its renames.
        state["status"] = status_of(state["status"]).value
        state["errors"] = list(state["errors"])
        return state

    @classmethod
    def _unpack(cls, state: dict[str, Any]) -> dict[str, Any]:
        state["status"] = status_of(state["status"])
        return state


def overlay(row: Sequence[Any], snapshot: JobState | None) -> JobState:
    """The job's state: its row's scalars over its snapshot (or over a fresh state).

    Every engine keeps these scalars in the row that claims update and the rest in the snapshot:
    ``row`` is (job_id, task, status, attempts, progress, run_at, cancel_requested,
    enqueued_at, updated_at, started_at, has_snapshot)."""
    (job_id, task, status, attempts, progress, run_at, cancel_requested, enqueued_at, updated_at,
     started_at, _snap) = row
    if snapshot is None:  # a job's first attempt: a worker makes one of these a job
        # What JobState(job_id=..., task=...) sets, in its order, then the row's: item by item
        # (a call with ten keywords costs 3,500 instructions more).
        fields = _DEFAULTS.copy()
        fields["job_id"] = job_id
        fields["task"] = task
        fields["status"] = status_of(status)
        fields["attempts"] = attempts
        fields["progress"] = progress
        fields["run_at"] = run_at
        fields["cancel_requested"] = bool(cancel_requested)
        fields["enqueued_at"] = enqueued_at
        fields["updated_at"] = updated_at
        fields["errors"] = []
        if started_at is not None:
            fields["started_at"] = started_at
        state = object.__new__(JobState)
        state.__dict__ = fields
        return state
    state = snapshot
    state.status = status_of(status)
    state.attempts = attempts
    state.progress = progress
    state.run_at = run_at
    state.cancel_requested = bool(cancel_requested)
    state.enqueued_at = enqueued_at
    state.updated_at = updated_at
    if started_at is not None:  # None in rows written by store schema 1: the snapshot has it
        state.started_at = started_at
    return state


# A fresh state's fields, in their order: overlay fills a new state from them and its row
# instead of calling the dataclass's __init__ (some 2,500 instructions less a state, issue 19).
_DEFAULTS = dict(JobState(job_id="", task="").__dict__)

_SUCCEEDED = Status.SUCCEEDED  # an enum member looked up on its class costs ~0.1 us each time


def row_only(state: JobState) -> bool:
    """Is unfinished ``state`` its row's columns over a fresh state (no errors, crashes,
    checkpoint or result)? A job's row then says all of it, as a new job's does: a claim given
    back before it started (:func:`jobq.transitions.released`) needs no snapshot written, nor
    read and unpickled by its next claim."""
    return (not state.errors and state.error is None and not state.crashes
            and state.checkpoint is None and state.checkpoint_token is None
            and state.result is None and state.finished_at is None)


def plain_success(state: JobState, now: float) -> bool:
    """Is ``state``, finished at ``now``, a plain success: one its engine's row says all of? A
    success without a result, errors, crashes or checkpoint, finished when its row was last
    updated, is its row's columns over a fresh state with ``finished_at`` its ``updated_at``;
    both engines then store no snapshot of it (PostgreSQL schema 11: a NULL ``jobq_done.blob``;
    directory store schema 7: a compact marker, :mod:`jobq.local.snapshots`). Pickling and
    storing the whole state cost a drain of no-op jobs about a tenth of its CPU (issue 19)."""
    return (state.status is _SUCCEEDED and state.result is None and state.finished_at == now
            and state.updated_at == now and not state.errors and state.error is None
            and not state.crashes and state.checkpoint is None
            and state.checkpoint_token is None and state.started_at is not None)


def last_line(text: str | None) -> str:
    """The last line of an error text (the exception's type and message)."""
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else "no error text"
