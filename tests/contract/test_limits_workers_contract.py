"""Limits per key against real worker processes on every engine: a concurrency limit holds
across workers and their children, and a SIGKILLed worker's slot comes back."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import wait_until

from jobq import Queue, Status

import limits_tasks


def test_a_limit_of_3_is_never_exceeded_by_4_workers_of_2_children(
        q: Queue, location: str, workers, tmp_path: Path):
    counter = str(tmp_path / "inside")
    q.set_limit("api", concurrency=3)
    keyed = [q.enqueue_call("limits_tasks:inside_for", (counter, 0.05), concurrency_key="api")
             for _ in range(40)]
    plain = [q.enqueue_call("jobtasks:add", (i, i)) for i in range(20)]
    procs = [workers(location, "--burst", "-c", "2") for _ in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    states = [q.state(i) for i in keyed + plain]
    assert all(s.status is Status.SUCCEEDED and s.attempts == 1 for s in states)
    # Sampled by every job as it came in, under a file lock: never more than the limit.
    assert 1 <= limits_tasks.highest(counter) <= 3
    assert max(q.state(i).result for i in keyed) <= 3


def test_a_sigkilled_worker_holding_the_only_slot_gives_it_back(
        q: Queue, location: str, workers, tmp_path: Path):
    marker, release = str(tmp_path / "started"), str(tmp_path / "release")
    q.set_limit("api", concurrency=1)
    holder = q.enqueue_call("limits_tasks:hold_until", (marker, release),
                            concurrency_key="api")
    first = workers(location)
    wait_until(lambda: os.path.exists(marker))
    waiting = q.enqueue_call("jobtasks:add", (2, 3), concurrency_key="api")
    first.kill_all()  # SIGKILL: supervisor and children, holding the slot
    os.unlink(marker)
    assert q.state(waiting).status is Status.QUEUED
    workers(location)  # its reaper finds the first one dead and ends its claim
    # The slot is free again: the waiting job runs (the holder waits for its retry's backoff),
    # or the holder runs again first; either needs the dead worker's slot.
    wait_until(lambda: os.path.exists(marker)
               or q.state(waiting).status is Status.SUCCEEDED, timeout=60)
    Path(release).touch()
    assert q.result(waiting, timeout=60) == 5
    assert q.wait(holder, timeout=60).status is Status.SUCCEEDED
    assert q.state(holder).attempts == 2
