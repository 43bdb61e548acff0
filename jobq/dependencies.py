"""Jobs that wait for other jobs (``depends_on``): the options, and the pure decision of what a
waiting job becomes when its parents end.

Both engines store a job's parents beside it (in ``depends_on`` order) and ask :func:`decide`
whenever one of them ends, in the transaction that records that end: a parent's success
releases its dependents at once, and nothing polls. A job can only depend on jobs that exist
when it is enqueued, so no cycle can be built.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from .errors import InvalidJob
from .job_ids import check_job_id
from .state import Status

CANCEL = "cancel"  # a parent ended dead or cancelled: the dependent ends cancelled
RUN = "run"  # a parent ended dead or cancelled: the dependent runs once every parent ended
POLICIES = (CANCEL, RUN)

FAILED_ENDS = frozenset({Status.DEAD, Status.CANCELLED})


class Decision(NamedTuple):
    """What a waiting job becomes: ``"wait"``, ``"due"``, or ``"cancel"`` because of ``parent``."""

    action: str
    parent: str | None = None
    parent_status: Status | None = None


WAIT = Decision("wait")
DUE = Decision("due")


def validate(depends_on: Iterable[str] | None, policy: str) -> tuple[tuple[str, ...], str]:
    """The parents (each once, in order) and the policy as stored; InvalidJob if malformed."""
    if policy not in POLICIES:
        raise InvalidJob(f"on_dependency_failure must be one of {', '.join(map(repr, POLICIES))},"
                         f" not {policy!r}")
    if depends_on is None:
        return (), policy
    if isinstance(depends_on, (str, bytes)) or not isinstance(depends_on, Iterable):
        raise InvalidJob("depends_on must be a list of job ids, not"
                         f" {type(depends_on).__name__}")
    parents: dict[str, None] = {}
    for parent in depends_on:
        if not isinstance(parent, str):
            raise InvalidJob(f"depends_on must hold job ids (strings), not {parent!r}")
        check_job_id(parent)
        parents[parent] = None
    return tuple(parents), policy


def decide(parents: Sequence[tuple[str, Status | None]], policy: str) -> Decision:
    """What a job waiting for ``parents`` (id and status, in ``depends_on`` order) becomes.

    A parent no longer stored (None: purged, which only finished jobs are) counts as succeeded.
    With CANCEL, the first parent (in order) that ended dead or cancelled cancels the job at
    once, whatever the others do; otherwise the job is due once every parent has ended.
    """
    if policy == CANCEL:
        for parent, status in parents:
            if status in FAILED_ENDS:
                return Decision("cancel", parent, status)
    if all(status is None or status.finished for _, status in parents):
        return DUE
    return WAIT


def reason(parent: str, status: Status) -> str:
    """The error text of a job cancelled because its parent ended badly."""
    return (f"cancelled: parent job {parent!r} ended {status.value}"
            f" (on_dependency_failure={CANCEL!r})")
