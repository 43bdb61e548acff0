"""Claims: how a job is handed to a worker, how its attempt's end is recorded, and what the
reaper sees of a running job. A claim's fencing ``token`` must accompany every later write."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from ..state import JobState, Status
from .workers import worker_of

__all__ = ["Change", "Claim", "Finished", "Held", "holders_of"]


Change = Callable[[JobState, float, int], JobState]
"""An end-of-attempt transition: ``(state, the engine's now, max_attempts) -> new state``.
Applied by the engine inside the transaction that records it (see :mod:`jobq.transitions`)."""

Finished = tuple[str, int, Change]
"""An ended attempt to record: job id, the claim's token, its change."""


class Claim(NamedTuple):
    """One job handed to a worker: its fencing ``token`` must accompany every later write.

    ``ref`` tells the engine where the job's record is (for the directory engine, its log
    position), so that loading the payload costs no lookup; an engine that needs none gives
    None. It must be small and picklable: claims are sent between processes by the thousand.
    A named tuple, made faster than a frozen dataclass, whose class costs some 3.5 M
    instructions to build at every worker's start.
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


class Held(NamedTuple):
    """A running job's claim, as the reaper sees it. ``lease_expired`` is judged on the
    engine's clock, so workers on different hosts never compare their clocks."""

    job_id: str
    token: int
    owner: str
    started: bool  # False: prefetched and not yet started (given back uncharged if its owner died)
    lease_expired: bool


def holders_of(held: Iterable[Held], besides: str) -> dict[str, bool]:
    """:meth:`jobq.engine.Engine.holders` from every running claim: each owner but worker
    ``besides`` (and its children), with whether a lease of its ran out."""
    found: dict[str, bool] = {}
    for claim in held:
        if worker_of(claim.owner) != besides:
            found[claim.owner] = found.get(claim.owner, False) or claim.lease_expired
    return found
