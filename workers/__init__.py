"""The jobq worker runtime: a supervisor that runs jobs in child processes.

``Worker(queue, concurrency=2).run()`` runs until SIGTERM/SIGINT; ``run(burst=True)`` returns when
the queue is drained. A job whose worker dies is taken over by any live worker within
``reap_interval`` and resumes from its last checkpoint.
"""

from .config import WorkerConfig
from .worker import Worker, run

__all__ = ["Worker", "WorkerConfig", "run"]
