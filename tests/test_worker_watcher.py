"""The watcher of a worker child: a batch held up by a long job is handed over, the outcomes
finished before it recorded and the claims behind it given back (issue 15)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from conftest import child_env, jobq_command, wait_until

from jobq import Queue, Status
from workers.board import Board
from workers.watcher import Watcher

from jobtasks import sleep_for
from jobtasks_extra import note_then_wait

LONG = 4.0  # seconds


def test_jobs_behind_a_long_one_run_on_the_idle_child_long_before_it_ends(queue: Queue):
    """The issue's reproduction: 6 quick jobs, one long, 3 quick, ``-c 2 --burst``."""
    ids = queue.enqueue_many(sleep_for, [(0,)] * 6 + [(LONG,)] + [(0,)] * 3)
    subprocess.run([*jobq_command(), "worker", "--dir", str(queue.path), "-c", "2", "--burst"],
                   env=child_env(), check=True, timeout=60, capture_output=True)
    states = [queue.state(j) for j in ids]
    assert all(s.status is Status.SUCCEEDED for s in states)
    long_job = states[6]
    for behind in states[7:]:  # on main they waited for the long job: they ended with it
        assert behind.finished_at < long_job.finished_at - LONG / 2
        assert (behind.attempts, behind.errors) == (1, [])


def _note_all(queue: Queue, runs: Path, tags: list[str], releases: dict[str, Path]) -> list[str]:
    """One append: the idle child claims them in one batch, in this order."""
    return queue.enqueue_many(note_then_wait, [(str(runs), t, str(releases.get(t, releases["*"])))
                                               for t in tags])


def _teach(queue: Queue, tmp_path: Path) -> Path:
    """Quick jobs, so that the child learns jobs are short and claims the next ones together."""
    done = tmp_path / "done"
    done.touch()
    for job_id in queue.enqueue_many(note_then_wait, [(str(tmp_path / "teach"), str(i), str(done))
                                                      for i in range(20)]):
        assert queue.wait(job_id, timeout=30).status is Status.SUCCEEDED
    return done


def _runs(path: Path) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for line in path.read_text().splitlines():
        tag, pid = line.split()
        found.setdefault(tag, []).append(int(pid))
    return found


def test_a_job_finished_before_a_long_one_of_its_batch_is_recorded_while_it_runs(
        queue: Queue, workers, tmp_path: Path):
    """``succeeded`` in ``Queue.state`` and ``jobq show`` while the long job still runs; the
    claim behind the long job is given back, uncharged, and waits in the queue."""
    worker = workers(queue.path, "-c", "1")
    done = _teach(queue, tmp_path)
    runs, release = tmp_path / "runs", tmp_path / "release"
    quick1, quick2, long_job, behind = _note_all(queue, runs, ["q1", "q2", "long", "behind"],
                                                 {"*": done, "long": release})
    wait_until(lambda: runs.exists() and "long" in _runs(runs))
    wait_until(lambda: queue.state(quick2).status is Status.SUCCEEDED, timeout=10)
    assert queue.state(quick1).status is Status.SUCCEEDED
    assert queue.state(long_job).status is Status.RUNNING
    shown = subprocess.run([*jobq_command(), "show", "--dir", str(queue.path), quick1],
                           env=child_env(), capture_output=True, text=True, timeout=60)
    assert "succeeded (attempt 1" in shown.stdout, shown.stdout + shown.stderr
    given_back = wait_until(lambda: queue.state(behind).status is Status.QUEUED
                            and queue.state(behind), timeout=10)
    assert (given_back.attempts, given_back.errors) == (0, [])
    assert "behind" not in _runs(runs)
    released = wait_until(lambda: worker.events("job.released"))
    assert [e["job_id"] for e in released] == [behind] and "handed back" in released[0]["cause"]
    release.touch()
    for job_id in (long_job, behind):
        assert queue.wait(job_id, timeout=30).status is Status.SUCCEEDED
    assert {tag: len(pids) for tag, pids in _runs(runs).items()} == \
        {"q1": 1, "q2": 1, "long": 1, "behind": 1}


def test_a_child_killed_after_its_watcher_handed_back_loses_nothing(queue: Queue, workers,
                                                                    tmp_path: Path):
    """SIGKILL during the long job, after the hand-back: what was recorded stays recorded and
    never runs again, what was given back is not charged, only the long job counts a crash."""
    workers(queue.path, "-c", "1")
    done = _teach(queue, tmp_path)
    runs, release = tmp_path / "runs", tmp_path / "release"
    tags = ["a0", "a1", "a2", "long", "b0", "b1", "b2"]
    ids = dict(zip(tags, _note_all(queue, runs, tags, {"*": done, "long": release})))
    wait_until(lambda: runs.exists() and "long" in _runs(runs))
    wait_until(lambda: all(queue.state(ids[t]).status is Status.SUCCEEDED
                           for t in ("a0", "a1", "a2")), timeout=10)
    wait_until(lambda: all(queue.state(ids[t]).status is Status.QUEUED
                           for t in ("b0", "b1", "b2")), timeout=10)
    os.kill(_runs(runs)["long"][0], signal.SIGKILL)
    wait_until(lambda: len(_runs(runs).get("long", [])) == 2)  # its retry, in a new child
    release.touch()
    for job_id in ids.values():
        assert queue.wait(job_id, timeout=30).status is Status.SUCCEEDED
    assert {tag: len(pids) for tag, pids in _runs(runs).items()} == \
        {"a0": 1, "a1": 1, "a2": 1, "long": 2, "b0": 1, "b1": 1, "b2": 1}
    for tag in ("a0", "a1", "a2", "b0", "b1", "b2"):
        state = queue.state(ids[tag])
        assert (state.attempts, state.crashes, state.errors) == (1, 0, []), tag
    crashed = queue.state(ids["long"])
    assert (crashed.attempts, crashed.crashes, len(crashed.errors)) == (2, 1, 1)
    assert "interrupted" in crashed.errors[0]


def test_a_child_killed_while_its_hand_back_waits_to_commit_is_recovered_as_any_death(
        queue: Queue, workers, tmp_path: Path):
    """The long job holds the state database's lock, so the watcher's hand-back cannot commit;
    the child is killed: nothing was recorded, so its supervisor gives back every claim but the
    running one, uncharged (the finished ones run again: their results died with the child)."""
    workers(queue.path, "-c", "1")
    done = _teach(queue, tmp_path)
    runs, release = tmp_path / "runs", tmp_path / "release"
    tags = ["a0", "a1", "long", "b0", "b1"]
    ids = dict(zip(tags, queue.enqueue_many(note_then_wait, [
        (str(runs), t, str(release if t == "long" else done), 60.0,
         str(Path(queue.path) / "state.lock") if t == "long" else None) for t in tags])))
    wait_until(lambda: runs.exists() and "long" in _runs(runs))
    time.sleep(0.5)  # the hand-back is due after 20 ms: it waits for the lock
    assert all(queue.state(ids[t]).status is Status.RUNNING for t in tags)
    os.kill(_runs(runs)["long"][0], signal.SIGKILL)
    release.touch()
    for job_id in ids.values():
        assert queue.wait(job_id, timeout=30).status is Status.SUCCEEDED
    assert {tag: len(pids) for tag, pids in _runs(runs).items()} == \
        {"a0": 2, "a1": 2, "long": 2, "b0": 1, "b1": 1}
    for tag in ("a0", "a1", "b0", "b1"):
        state = queue.state(ids[tag])
        assert (state.attempts, state.crashes, state.errors) == (1, 0, []), tag
    crashed = queue.state(ids["long"])
    assert (crashed.attempts, crashed.crashes, len(crashed.errors)) == (2, 1, 1)


class _Calls:
    def __init__(self) -> None:
        self.batches: list[object] = []

    def __call__(self, batch: object) -> None:
        self.batches.append(batch)


def test_the_watcher_hands_back_a_batch_whose_job_runs_past_the_window_once():
    board, calls = Board(), _Calls()
    watcher = Watcher(board, calls, window=0.05)
    try:
        batch = object()
        watcher.watch(batch)
        board.running("j", 1)
        wait_until(lambda: calls.batches)
        time.sleep(0.3)
        assert calls.batches == [batch]
    finally:
        watcher.close()
        board.close()


def test_the_watcher_leaves_alone_a_batch_that_ends_in_time():
    board, calls = Board(), _Calls()
    watcher = Watcher(board, calls, window=2.0)
    try:
        for _ in range(3):
            watcher.watch(object())
            board.running("j", 1)
            board.idle()
            watcher.done()
        time.sleep(0.3)
        assert calls.batches == []
    finally:
        watcher.close()
        board.close()


def test_events_batched_in_two_threads_are_each_written_once():
    """A worker child's watcher logs the jobs it records while the main thread may be inside a
    batch of its own: neither batch may swallow or drop the other's events."""
    import io

    from jobq import _logging

    out = io.StringIO()
    writer = _logging.writer_factory(out)()
    inside, other_done = threading.Event(), threading.Event()

    def other() -> None:
        inside.wait(10)
        with _logging.batched():
            writer.msg("b1")
        other_done.set()

    thread = threading.Thread(target=other)
    thread.start()
    with _logging.batched():
        writer.msg("a1")
        inside.set()
        other_done.wait(10)
        writer.msg("a2")
    thread.join()
    assert sorted(out.getvalue().splitlines()) == ["a1", "a2", "b1"]
