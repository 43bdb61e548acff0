"""``JobPayload``: what a producer asks to run, as written (pickled) to the log."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any, ClassVar

from . import pickling
from .errors import NotPicklable
from .versioning import SCHEMA_KEY, Migration, Versioned


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


# The pickle of a JobPayload is its class, an empty instance, then BUILD from the state dict. The
# enqueue path writes that directly: the state dict pickled on its own between the constant parts,
# instead of building a frozen dataclass and letting pickle call __getstate__ and look the class up
# again for every job (4.3 µs -> 1 µs a job). The opcodes are the ones pickle.dumps(payload) writes,
# except that the class's strings are not memoised and the state's frame does not include them.
_CLASS_AND_INSTANCE = b"".join((
    pickle.PROTO, bytes([pickling.PROTOCOL]),
    pickle.SHORT_BINUNICODE, bytes([len(JobPayload.__module__)]), JobPayload.__module__.encode(),
    pickle.SHORT_BINUNICODE, bytes([len(JobPayload.__qualname__)]),
    JobPayload.__qualname__.encode(),
    pickle.STACK_GLOBAL, pickle.EMPTY_TUPLE, pickle.NEWOBJ,
))
_BUILD_AND_STOP = pickle.BUILD + pickle.STOP
_PROTO_SIZE = 2  # PROTO and its argument, at the start of every protocol 2+ pickle


def dumps_fields(job_id: str, task: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                 priority: int, max_attempts: int, timeout: float | None, run_at: float,
                 created_at: float) -> bytes:
    """Pickle a JobPayload of these (already validated) fields without building it first.

    Loads exactly as ``pickling.dumps(JobPayload(...))`` does: the enqueue path's pickler.
    """
    # The keys and their order are JobPayload's fields, as Versioned.__getstate__ writes them;
    # tests/test_payload.py checks that the two agree.
    state = {"job_id": job_id, "task": task, "args": args, "kwargs": kwargs,
             "priority": priority, "max_attempts": max_attempts, "timeout": timeout,
             "run_at": run_at, "created_at": created_at, SCHEMA_KEY: JobPayload.SCHEMA_VERSION}
    try:
        data = pickle.dumps(state, protocol=pickling.PROTOCOL)
    except Exception as exc:  # pickle raises PicklingError, TypeError, AttributeError, ...
        raise NotPicklable(f"cannot pickle JobPayload: {exc}") from exc
    # Without its PROTO and STOP, the state's pickle puts the state dict on the stack.
    return b"".join((_CLASS_AND_INSTANCE, data[_PROTO_SIZE:-1], _BUILD_AND_STOP))
