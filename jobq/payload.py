"""``JobPayload``: what a producer asks to run, as written (pickled) to the log."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from .versioning import Migration, Versioned


def _v1_to_v2(state: dict[str, Any]) -> dict[str, Any]:
    # Version 1 had no priorities: every job ran in arrival order, which is priority 0 today.
    state["priority"] = 0
    return state


@dataclass(frozen=True, kw_only=True)
class JobPayload(Versioned):
    """One job as enqueued: the task reference, its arguments and how it should be run.

    Version history: 1 = no ``priority``; 2 = ``priority`` (higher runs first).
    """

    SCHEMA_VERSION: ClassVar[int] = 2
    MIGRATIONS: ClassVar[dict[int, Migration]] = {1: _v1_to_v2}

    job_id: str
    task: str  # "package.module:function"
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    max_attempts: int = 3
    timeout: float | None = None  # seconds one attempt may run
    run_at: float = 0.0  # epoch seconds; not before
    created_at: float = 0.0  # epoch seconds
