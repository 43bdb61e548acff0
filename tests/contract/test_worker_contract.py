"""What the workers promise, on every engine: each job runs, once, in real worker processes; a
worker or child killed mid-job hands its job on, and it resumes from its checkpoint."""

from __future__ import annotations

import collections
import os
import signal
import time
from pathlib import Path

import pytest
from conftest import wait_until

import jobtasks
from jobq import Queue, Status, WorkerState
from jobq.worker_info import WorkerInfo
from workers import Worker


def _step(pid_path: str) -> int:
    """The last step the job saved (it writes ``<pid> <step>`` after each save)."""
    try:
        with open(pid_path) as f:
            return int(f.read().split()[1])
    except FileNotFoundError:
        return 0


def test_a_burst_worker_with_two_children_runs_every_job_once(q: Queue, tmp_path):
    log = str(tmp_path / "ran")
    ids = [q.enqueue(jobtasks.note_run, log, i) for i in range(300)]
    assert Worker(q, concurrency=2).run(burst=True) == 300
    with open(log) as f:
        ran = sorted(int(tag) for tag in f.read().split())
    assert ran == list(range(300))  # each once
    assert q.counts()["succeeded"] == 300 and all(q.result(j) == i for i, j in enumerate(ids))


def test_a_killed_worker_s_job_resumes_on_a_live_worker_from_its_checkpoint(
        location: str, tmp_path, workers):
    pid_path = str(tmp_path / "pid")
    with Queue(location) as q:
        jid = q.enqueue(jobtasks.sum_steps, 40, 0.05, pid_path)
        doomed = workers(location, "--concurrency", "1")
        wait_until(lambda: _step(pid_path) >= 5, timeout=30)
        doomed.kill_all()  # supervisor and child at once
        saved = q.state(jid).checkpoint[0]
        assert q.state(jid).status is Status.RUNNING  # held by a worker that no longer lives
        killed_at = time.monotonic()
        survivor = workers(location, "--concurrency", "1")
        state = q.wait(jid, timeout=60)
        assert survivor.events("worker.found_dead") or survivor.events("job.claimed")
        assert state.status is Status.SUCCEEDED, state.error
        assert state.result["sum"] == sum(range(41))
        assert state.result["resumed_from"] >= saved  # never from before its last checkpoint
        assert time.monotonic() - killed_at < 30
        survivor.proc.send_signal(signal.SIGTERM)
        survivor.wait(30)


def _running(q: Queue, jid: str, attempt: int) -> bool:
    state = q.state(jid)
    return state.status is Status.RUNNING and state.attempts == attempt


def _running_again(q: Queue, jid: str) -> bool:
    """Claimed again after an interrupted attempt (which saved, so it kept its attempt number)."""
    state = q.state(jid)
    return state.status is Status.RUNNING and bool(state.errors)


def _checkpoint_at_least(q: Queue, jid: str, step: int) -> bool:
    return (q.state(jid).checkpoint or 0) >= step


def test_burst_runs_everything_and_returns(q: Queue):
    """An in-process burst worker runs every job (results, failures, retries) and returns."""
    ok = q.enqueue_many("jobtasks:add", [(i, i) for i in range(30)])
    bad = q.enqueue_call("jobtasks:boom", max_attempts=2)
    processed = Worker(q, concurrency=2, retry_base=0.01).run(burst=True)
    assert processed == 32
    assert [q.result(j) for j in ok] == [2 * i for i in range(30)]
    assert q.state(bad).status is Status.DEAD and len(q.state(bad).errors) == 2


def test_killed_worker_job_resumes_from_checkpoint_in_a_fresh_worker(
        q: Queue, location: str, workers, tmp_path):
    """SIGKILL of a worker and its children mid-job: a new worker resumes from the checkpoint
    soon after starting (long before the lease runs out), and the progress never goes back."""
    markers = tmp_path / "markers"
    markers.mkdir()
    jid = q.enqueue("jobtasks:slow_steps", 40, 0.05, str(markers))
    first = workers(location)
    wait_until(lambda: _checkpoint_at_least(q, jid, 5))
    first.kill_all()
    saved = q.state(jid)
    assert saved.status is Status.RUNNING and saved.attempts == 1

    started = time.monotonic()
    workers(location)
    wait_until(lambda: _running_again(q, jid), timeout=30)
    # Well under the 60 s lease (its start-up included, on a loaded machine): found dead by
    # its lock, not by the lease running out.
    assert time.monotonic() - started < 20.0
    state = q.wait(jid, timeout=30)
    result = q.result(jid)
    # The killed attempt had saved checkpoints: not charged, so the resumed one is attempt 1 too.
    assert state.status is Status.SUCCEEDED and result == {"resumed_from": saved.checkpoint,
                                                           "attempt": 1}
    assert state.crashes == 0 and "interrupted" in state.errors[0] and "died" in state.errors[0]
    # resumed_from says nothing before the checkpoint was redone; every step after it was done.
    steps = {int(p.name.split("-")[2]) for p in markers.glob("step-1-*")}
    assert steps >= set(range(saved.checkpoint + 1, 41))


def test_killed_child_is_replaced_and_the_job_retried_by_the_same_worker(
        q: Queue, location: str, workers, tmp_path):
    """A child killed by a signal is recorded as a crash with its cause; the job runs again."""
    pidfile = tmp_path / "pid"
    jid = q.enqueue("jobtasks:pid_then_sleep", str(pidfile), 0.5)
    workers(location, "-c", "2")
    wait_until(pidfile.exists)
    first_pid = int(pidfile.read_text())
    pidfile.unlink()
    os.kill(first_pid, signal.SIGKILL)
    state = q.wait(jid, timeout=30)
    # The attempt saved a checkpoint before it was killed: the crash is recorded, not charged.
    assert state.status is Status.SUCCEEDED and state.attempts == 1 and state.crashes == 0
    assert "killed by SIGKILL" in state.errors[0]
    assert q.result(jid) != first_pid


def test_supervisor_killed_with_children_then_new_worker_resumes_every_job(
        q: Queue, location: str, workers, tmp_path):
    """All jobs running when a whole worker was SIGKILLed are resumed by the next worker."""
    markers = tmp_path / "m"
    markers.mkdir()
    ids = [q.enqueue("jobtasks:slow_steps", 30, 0.05, str(markers)) for _ in range(3)]
    first = workers(location, "-c", "3")
    wait_until(lambda: all(_checkpoint_at_least(q, j, 3) for j in ids))
    first.kill_all()
    checkpoints = {j: q.state(j).checkpoint for j in ids}
    workers(location, "-c", "3")
    for jid in ids:
        assert q.wait(jid, timeout=30).status is Status.SUCCEEDED
        assert q.result(jid)["resumed_from"] >= checkpoints[jid] > 0


def test_live_worker_takes_over_a_dead_workers_job_long_before_its_lease_ends(
        q: Queue, location: str, workers, tmp_path):
    """A worker already running notices another one died (its lock came free) and takes its job."""
    markers = tmp_path / "m"
    markers.mkdir()
    doomed = workers(location)
    jid = q.enqueue("jobtasks:slow_steps", 30, 0.05, str(markers))
    wait_until(lambda: _checkpoint_at_least(q, jid, 2))
    survivor = workers(location)
    wait_until(lambda: survivor.events("worker.started"))
    doomed.kill_all()
    killed_at = time.monotonic()
    wait_until(lambda: _running_again(q, jid), timeout=30)
    assert time.monotonic() - killed_at < 20.0  # well under the 60 s lease: by its free lock
    assert q.wait(jid, timeout=30).status is Status.SUCCEEDED
    reaped = [e for e in survivor.events("job.failed") if e["job_id"] == jid]
    assert reaped and "died" in reaped[0]["cause"]


def test_a_started_prefetched_job_is_charged_when_its_whole_worker_is_killed(
        q: Queue, location: str, workers, tmp_path):
    """A job its child prefetched, then started, counts as started: a SIGKILL of the whole
    worker during it charges the attempt (a crash), as for the first job of a batch. Given back
    uncharged instead, a job that kills its worker would kill every next one, without end."""
    # All enqueued before the worker starts: enqueued while it ran, `before` could be claimed
    # alone by an idle child before `jid` was stored (it failed so on a loaded machine).
    first = q.enqueue("jobtasks:add", 0, 1)
    mark = tmp_path / "mark"
    before, jid, after = q.enqueue_many("jobtasks:add", [(1, 1)]) + q.enqueue_many(
        "jobtasks:mark_then_sleep", [(str(mark), 60)]) + q.enqueue_many("jobtasks:add", [(2, 1)])
    # One child. Its first claim is `first` alone (no durations known yet); once it has run,
    # the next claim is a batch.
    w = workers(location)
    assert q.wait(first, timeout=60).status is Status.SUCCEEDED
    wait_until(mark.exists, timeout=60)
    # One claim took `before` (started) and `jid` behind it, prefetched: the same claim time.
    assert q.state(jid).started_at == q.state(before).started_at, "not claimed in one batch"
    assert q.state(jid).attempts == 1 and q.state(jid).crashes == 0
    # Marked started by the child's watcher once it runs past the batch's window (~20 ms; a
    # job that kills its worker sooner still goes uncharged that once: see workers/child.py).
    wait_until(lambda: any(h.job_id == jid and h.started for h in q.engine.held()), timeout=30)
    w.kill_all()  # supervisor and child at once
    w.wait()
    survivor = workers(location)
    state = q.wait(jid, timeout=60)
    assert state.status is Status.SUCCEEDED and q.result(jid) == "again"
    assert (state.attempts, state.crashes) == (2, 1), state.errors  # the killed one was charged
    assert "interrupted" in state.errors[0] and "died" in state.errors[0]
    assert q.wait(after, timeout=60).status is Status.SUCCEEDED
    survivor.proc.send_signal(signal.SIGTERM)
    survivor.wait(30)


def test_orphaned_child_dies_with_its_supervisor(q: Queue, location: str, workers, tmp_path):
    """Killing only the supervisor takes its children down too, so its lock is seen free."""
    pidfile = tmp_path / "pid"
    jid = q.enqueue("jobtasks:pid_then_sleep", str(pidfile), 30)
    first = workers(location)
    wait_until(pidfile.exists)
    child_pid = int(pidfile.read_text())
    os.kill(first.pid, signal.SIGKILL)  # the supervisor alone, not its process group
    first.wait()
    wait_until(lambda: not _alive(child_pid), timeout=5)
    pidfile.unlink()
    workers(location)
    wait_until(lambda: _running_again(q, jid), timeout=10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers signal 0; it is dead for our purposes.
    status = Path(f"/proc/{pid}/stat")
    return not status.exists() or status.read_text().split()[2] != "Z"


def test_three_workers_two_children_each_run_every_job_exactly_once(
        q: Queue, location: str, workers, tmp_path):
    """3 workers x 2 children on 3,000 jobs: each job succeeds, with exactly one success record.

    Six barrier jobs come first, and one ends only when all six run at once: every child of
    every worker holds one, so all three drain the rest together, however late one started
    (a worker started first on a loaded machine could otherwise drain them all alone)."""
    gate = q.enqueue_many("jobtasks:barrier", [(str(tmp_path / "gate"), 6)] * 6)
    ids = q.enqueue_many("jobtasks:add", [(i, 1) for i in range(3000)])
    procs = [workers(location, "-c", "2", "--burst") for _ in range(3)]
    for w in procs:
        assert w.wait(timeout=120) == 0
    assert q.counts()["succeeded"] == 3006
    successes = collections.Counter(e["job_id"] for w in procs for e in w.events("job.succeeded"))
    assert set(successes) == {*gate, *ids} and set(successes.values()) == {1}
    gated = [sum(e["job_id"] in gate for e in w.events("job.succeeded")) for w in procs]
    assert gated == [2, 2, 2], "every worker took a share: each child ran one barrier job"
    assert [q.result(j) for j in ids[:5]] == [1, 2, 3, 4, 5]


def test_unpicklable_result_in_a_child_fails_the_attempt_clearly(q: Queue):
    """A return value that cannot be pickled into the snapshot fails the attempt with the reason."""
    jid = q.enqueue_call("jobtasks:unpicklable_result", max_attempts=1)
    after = q.enqueue("jobtasks:add", 1, 2)
    Worker(q).run(burst=True)
    state = q.state(jid)
    assert state.status is Status.DEAD and "return value cannot be stored" in state.error
    assert q.result(after) == 3  # the child is still healthy


def test_a_task_s_own_processes_take_sigint_and_sigterm_as_usual(q: Queue):
    """A worker's child does nothing on either (its supervisor decides when it stops); a process
    its task forks, or a program it runs, takes them as any program does, or a Pool's
    terminate(), which sends SIGTERM, would wait for ever."""
    jid = q.enqueue_call(jobtasks.signals_of_started_processes, max_attempts=1)
    Worker(q).run(burst=True)
    state = q.state(jid)
    assert state.status is Status.SUCCEEDED, state.error
    assert state.result == ["_nothing", "_nothing", "default_int_handler", "SIG_DFL",
                            "default_int_handler", "SIG_DFL"]


@pytest.mark.parametrize("start_method", ["fork", "spawn", "forkserver"])
def test_a_task_may_run_a_multiprocessing_pool(q: Queue, start_method: str):
    """Its workers end when the Pool's exit sends them SIGTERM: a forked one takes it even when
    it comes before its at-fork hooks ran, and an exec'd one does not inherit it ignored. (With
    the child ignoring it, the fork rounds hung in a run on the directory, spawn on PostgreSQL.)"""
    rounds = 10 if start_method == "fork" else 1
    jid = q.enqueue_call(jobtasks.pool_map, (start_method, rounds), max_attempts=1,
                         timeout=60)
    Worker(q).run(burst=True)
    state = q.state(jid)
    assert state.status is Status.SUCCEEDED, state.error
    assert state.result == [1, 2, 3]


def test_a_live_worker_buries_a_dead_one_that_held_no_job(q: Queue, location: str, workers):
    """A worker that died idle is found by the next worker's look at the workers, and kept in
    the history of dead workers with who found it."""
    idle = workers(location)
    idle_id = wait_until(lambda: idle.events("worker.started"))[0]["worker"]
    wait_until(lambda: idle_id in _by_id(q))  # its record is published
    idle.kill_all()
    # On PostgreSQL its lock is free once the server has seen its session end (a few ms).
    wait_until(lambda: _by_id(q)[idle_id].state is WorkerState.DEAD)
    worker = Worker(q)
    worker.run(burst=True)
    gone = _by_id(q)[idle_id]
    assert (gone.state, gone.reaped_by, gone.held, gone.pid) == (
        WorkerState.REAPED, worker.id, (), idle.pid)
    assert gone.reaped_at is not None and not gone.alive
    assert worker.id not in _by_id(q)  # it exited cleanly: its record is gone


def _by_id(q: Queue) -> dict[str, WorkerInfo]:
    return {w.id: w for w in q.workers()}
