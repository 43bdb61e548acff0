"""jobq: a persistent job queue and worker system that needs no server.

Producers append pickled, versioned :class:`JobPayload` records to an append-only log; workers keep
:class:`JobState` snapshots in ``shelve`` on SQLite; a job resumes from its last checkpoint after a
crash.
"""

from __future__ import annotations

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
           "PermanentFailure", "periodic", "Group", "GroupStatus", "WorkerInfo", "WorkerState", "ChildInfo", "errors",
           "__version__"]
