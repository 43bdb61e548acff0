"""Tasks of tests/test_logging.py: whether a worker's processes loaded structlog.

Imported by a worker's supervisor (``--import logging_tasks``) with ``LOGGING_TASKS_RECORD``
set, it writes at the supervisor's exit whether the supervisor loaded structlog; the task
writes whether its child did.
"""

from __future__ import annotations

import atexit
import os
import sys

_RECORD = os.environ.get("LOGGING_TASKS_RECORD")
_IMPORTED_BY = os.getpid()


def _record(who: str) -> None:
    with open(_RECORD or os.devnull, "a") as out:
        out.write(f"{who} {'structlog' in sys.modules}\n")


def record_structlog() -> None:
    _record("child")


@atexit.register
def _record_at_exit() -> None:
    if os.getpid() == _IMPORTED_BY:  # not in a child (a forked child exits without atexit)
        _record("supervisor")
