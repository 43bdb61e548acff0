"""A worker child's batch held up by a long job, on every engine: the jobs finished before it
are recorded while it runs, the claims behind it are given back and run on an idle child, and a
child killed after that loses nothing (issue 15)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from conftest import child_env, jobq_command, wait_until
from test_worker_watcher import LONG, _note_all, _runs, _teach

from jobq import Queue, Status

from jobtasks import sleep_for


def test_jobs_behind_a_long_one_run_on_the_idle_child_long_before_it_ends(q: Queue,
                                                                          location: str):
    """The issue's reproduction: 6 quick jobs, one long, 3 quick, ``-c 2 --burst``."""
    ids = q.enqueue_many(sleep_for, [(0,)] * 6 + [(LONG,)] + [(0,)] * 3)
    subprocess.run([*jobq_command(), "worker", "--dir", location, "-c", "2", "--burst"],
                   env=child_env(), check=True, timeout=60, capture_output=True)
    states = [q.state(j) for j in ids]
    assert all(s.status is Status.SUCCEEDED for s in states)
    long_job = states[6]
    for behind in states[7:]:  # on main they waited for the long job: they ended with it
        assert behind.finished_at < long_job.finished_at - LONG / 2
        assert (behind.attempts, behind.errors) == (1, [])


def test_a_job_finished_before_a_long_one_of_its_batch_is_recorded_while_it_runs(
        q: Queue, location: str, workers, tmp_path: Path):
    """``succeeded`` in ``Queue.state`` and ``jobq show`` while the long job still runs; the
    claim behind the long job is given back, uncharged, and waits in the queue."""
    worker = workers(location, "-c", "1")
    done = _teach(q, tmp_path)
    runs, release = tmp_path / "runs", tmp_path / "release"
    quick1, quick2, long_job, behind = _note_all(q, runs, ["q1", "q2", "long", "behind"],
                                                 {"*": done, "long": release})
    wait_until(lambda: runs.exists() and "long" in _runs(runs))
    wait_until(lambda: q.state(quick2).status is Status.SUCCEEDED, timeout=10)
    assert q.state(quick1).status is Status.SUCCEEDED
    assert q.state(long_job).status is Status.RUNNING
    shown = subprocess.run([*jobq_command(), "show", "--dir", location, quick1],
                           env=child_env(), capture_output=True, text=True, timeout=60)
    assert "succeeded (attempt 1" in shown.stdout, shown.stdout + shown.stderr
    given_back = wait_until(lambda: q.state(behind).status is Status.QUEUED
                            and q.state(behind), timeout=10)
    assert (given_back.attempts, given_back.errors) == (0, [])
    assert "behind" not in _runs(runs)
    released = wait_until(lambda: worker.events("job.released"))
    assert [e["job_id"] for e in released] == [behind] and "handed back" in released[0]["cause"]
    release.touch()
    for job_id in (long_job, behind):
        assert q.wait(job_id, timeout=30).status is Status.SUCCEEDED
    assert {tag: len(pids) for tag, pids in _runs(runs).items()} == \
        {"q1": 1, "q2": 1, "long": 1, "behind": 1}


def test_a_child_killed_after_its_watcher_handed_back_loses_nothing(q: Queue, location: str,
                                                                    workers,
                                                                    tmp_path: Path):
    """SIGKILL during the long job, after the hand-back: what was recorded stays recorded and
    never runs again, what was given back is not charged, only the long job counts a crash."""
    workers(location, "-c", "1")
    done = _teach(q, tmp_path)
    runs, release = tmp_path / "runs", tmp_path / "release"
    tags = ["a0", "a1", "a2", "long", "b0", "b1", "b2"]
    ids = dict(zip(tags, _note_all(q, runs, tags, {"*": done, "long": release})))
    wait_until(lambda: runs.exists() and "long" in _runs(runs))
    wait_until(lambda: all(q.state(ids[t]).status is Status.SUCCEEDED
                           for t in ("a0", "a1", "a2")), timeout=10)
    wait_until(lambda: all(q.state(ids[t]).status is Status.QUEUED
                           for t in ("b0", "b1", "b2")), timeout=10)
    os.kill(_runs(runs)["long"][0], signal.SIGKILL)
    wait_until(lambda: len(_runs(runs).get("long", [])) == 2)  # its retry, in a new child
    release.touch()
    for job_id in ids.values():
        assert q.wait(job_id, timeout=30).status is Status.SUCCEEDED
    assert {tag: len(pids) for tag, pids in _runs(runs).items()} == \
        {"a0": 1, "a1": 1, "a2": 1, "long": 2, "b0": 1, "b1": 1, "b2": 1}
    for tag in ("a0", "a1", "a2", "b0", "b1", "b2"):
        state = q.state(ids[tag])
        assert (state.attempts, state.crashes, state.errors) == (1, 0, []), tag
    crashed = q.state(ids["long"])
    assert (crashed.attempts, crashed.crashes, len(crashed.errors)) == (2, 1, 1)
    assert "interrupted" in crashed.errors[0]

