"""Tasks with schedules declared by ``@jobq.periodic``, for workers started with
``--import periodic_tasks``. Each run appends its job id to the file $JOBQ_TEST_RUNS names, so a
test counts runs across processes."""

from __future__ import annotations

import os
import time

import jobq

RUNS = os.environ.get("JOBQ_TEST_RUNS", os.devnull)


def _note() -> str:
    job_id = jobq.current_job().job_id
    fd = os.open(RUNS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{job_id}\n".encode())
    finally:
        os.close(fd)
    return job_id


@jobq.periodic("* * * * *", misfire="all", overlap="allow", name="minutely")
def minutely() -> str:
    return _note()


def noted(seconds: float = 0.0) -> str:
    """Sleeps ``seconds``, then notes its run: the task of schedules the tests add."""
    time.sleep(seconds)
    return _note()
