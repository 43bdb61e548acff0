"""The SqliteHuey instance its consumer loads (``huey_consumer peers.huey_app.huey``).

Huey keeps no record of a finished job that returns ``None``, so a completion signal appends one
byte per job to ``$PEERS_DONE_FILE``; the driver watches that file's size (a few microseconds per
job, against Huey's hundreds).
"""

from __future__ import annotations

import os
from typing import Any

from huey import SqliteHuey, signals

from peers.tasks import noop as _noop

# Huey's defaults (WAL; no synchronous pragma, so SQLite's compiled-in default), on purpose.
huey = SqliteHuey("bench", filename=os.environ["PEERS_HUEY_DB"])
noop = huey.task()(_noop)

_done_fd: int | None = None


@huey.signal(signals.SIGNAL_COMPLETE)
def _completed(signal: str, task: Any, *args: Any, **kwargs: Any) -> None:
    global _done_fd
    if _done_fd is None:  # opened in the worker process that runs the job
        _done_fd = os.open(os.environ["PEERS_DONE_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                           0o600)
    os.write(_done_fd, b".")
