"""jobq: a persistent job queue and worker system that needs no server.

Producers append pickled, versioned :class:`JobPayload` records to an append-only log; workers keep
:class:`JobState` snapshots in ``shelve`` on SQLite; a job resumes from its last checkpoint after a
crash.

The public names are imported when first used (PEP 562): ``import jobq`` alone, as ``jobq
--version`` and a job's own modules do, then costs almost nothing (issue 19).
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing itself costs a few ms to import: a type checker reads this block
if TYPE_CHECKING:
    from . import errors
    from .context import JobContext, current_job
    from .errors import PermanentFailure
    from .groups import Group, GroupStatus
    from .payload import JobPayload
    from .periodic_jobs import periodic
    from .queue import Queue
    from .state import JobState, Status
    from .worker_info import ChildInfo, WorkerInfo, WorkerState

__version__ = "0.1.0"

__all__ = ["Queue", "current_job", "JobContext", "JobPayload", "JobState", "Status",
           "PermanentFailure", "periodic", "Group", "GroupStatus", "WorkerInfo", "WorkerState",
           "ChildInfo", "errors", "__version__"]

# Each public name, and the module (of this package) that defines it.
_HOMES = {"Queue": "queue", "current_job": "context", "JobContext": "context",
          "JobPayload": "payload", "JobState": "state", "Status": "state",
          "PermanentFailure": "errors", "periodic": "periodic_jobs", "Group": "groups",
          "GroupStatus": "groups", "WorkerInfo": "worker_info",
          "WorkerState": "worker_info", "ChildInfo": "worker_info"}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        return _submodule(name)
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def _submodule(name: str) -> object:
    """``jobq.errors``, and any submodule: ``import jobq`` used to import most of them, so code
    that reads ``jobq.periodic_jobs`` after ``import jobq`` still works."""
    if not name.startswith("_") or name == "_logging":
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":  # it exists; something it imports does not
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
