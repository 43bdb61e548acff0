"""The watcher of a worker child: a batch held up by a long job is handed over, the outcomes
finished before it recorded and the claims behind it given back (issue 15). What a user sees of
it, on every engine: tests/contract/test_watcher_contract.py; here, the directory engine's
state lock held across a hand-back, and the watcher itself."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from conftest import wait_until

from jobq import Queue, Status
from workers.board import Board
from workers.watcher import Watcher

from jobtasks_extra import note_then_wait

LONG = 4.0  # seconds: the long job of tests/contract/test_watcher_contract.py


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

    from jobq import _json_lines

    out = io.StringIO()
    writer = _json_lines.writer_factory(out)()
    inside, other_done = threading.Event(), threading.Event()

    def other() -> None:
        inside.wait(10)
        with _json_lines.batched():
            writer.msg("b1")
        other_done.set()

    thread = threading.Thread(target=other)
    thread.start()
    with _json_lines.batched():
        writer.msg("a1")
        inside.set()
        other_done.wait(10)
        writer.msg("a2")
    thread.join()
    assert sorted(out.getvalue().splitlines()) == ["a1", "a2", "b1"]
