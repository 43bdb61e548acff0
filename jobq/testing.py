"""Helpers for tests, ours and our users': a throwaway queue and an in-process burst runner.

``run_burst`` runs jobs in the calling process through the same code path as a worker child
(:func:`jobq.execution.run_claim`), so a task's checkpoints, retries and results behave as in
production, without processes to manage.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .execution import RetryDelay, run_claim
from ._logging import get_logger
from .queue import Queue

# A test's output is not a worker's log: job events are written only where the application
# configured structlog (structlog.testing.capture_logs sees them); warnings always are.
log = get_logger(__name__, unconfigured_level=logging.WARNING)


@contextmanager
def temporary_queue(**options: Any) -> Iterator[Queue]:
    """A queue in a fresh temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="jobq-") as tmp:
        with Queue(f"{tmp}/queue", **options) as queue:
            yield queue


def run_burst(queue: Queue, *, max_jobs: int | None = None, owner: str = "burst",
              retry_delay: RetryDelay = lambda attempt: 0.0) -> int:
    """Run ready jobs in this process until none is ready; return how many attempts ran.

    Retries are due at once by default (``retry_delay``), so a failing job runs until it is dead.
    Its job events are not written to stderr unless structlog is configured (see ``log``).
    """
    ran = 0
    while max_jobs is None or ran < max_jobs:
        _, claims = queue.engine.settle([], owner, 1)
        if not claims:
            return ran
        run_claim(queue.engine, claims[0], queue.config.rules, retry_delay=retry_delay,
                  logger=log)
        ran += 1
    return ran
