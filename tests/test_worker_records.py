"""Worker records: published next to the liveness lock, read without disturbing it, buried
when their worker is found dead, and forgotten after a day."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time

import pytest
from conftest import wait_until
from test_cli import ok

from jobq import WorkerState, worker_info
from jobq.local import worker_records
from jobq.errors import ConfigError
from jobq.local import workers as liveness
from workers import WorkerConfig

# Holds a worker's lock and publishes its record with a heartbeat ``age`` seconds old.
HOLD = """
import sys, time
from jobq.local import worker_records
from jobq.local.workers import LivenessLock
root, wid, age = sys.argv[1], sys.argv[2], float(sys.argv[3])
lock = LivenessLock(root, wid)
worker_records.publish(root, {"id": wid, "host": "h", "pid": 1, "started": time.time() - 99,
                              "heartbeat": time.time() - age, "heartbeat_interval": 2.0,
                              "children": [{"n": 1, "pid": 2, "job_id": None, "since": None}]})
print("held", flush=True)
time.sleep(120)
"""


def _hold(children, root, wid: str, age: float = 0.0):  # type: ignore[no-untyped-def]
    proc = children.start(HOLD, str(root), wid, str(age))
    assert proc.stdout.readline().strip() == "held"
    return proc


def _by_id(queue) -> dict[str, worker_info.WorkerInfo]:  # type: ignore[no-untyped-def]
    return {w.id: w for w in queue.workers()}


def test_an_old_heartbeat_under_a_held_lock_is_stuck_not_dead(queue, qpath, children):
    """The lock decides liveness; the heartbeat only tells a stuck worker from a live one."""
    _hold(children, qpath, "fresh-1-aa")
    stuck = _hold(children, qpath, "stuck-2-bb", age=600)
    found = _by_id(queue)
    assert found["fresh-1-aa"].state is WorkerState.LIVE
    assert found["stuck-2-bb"].state is WorkerState.STUCK and found["stuck-2-bb"].alive
    assert found["stuck-2-bb"].children == (worker_info.ChildInfo(1, 2, None, None),)
    queue.enqueue("jobtasks:add", 1, 2)
    assert "workers: 2 alive (1 stuck)" in ok("status", "--dir", str(qpath))
    os.kill(stuck.pid, signal.SIGKILL)
    stuck.wait(timeout=10)
    assert _by_id(queue)["stuck-2-bb"].state is WorkerState.DEAD


def test_status_warns_when_every_worker_alive_is_stuck(queue, qpath, children):
    """A held lock with a heartbeat stopped for minutes runs nothing: jobs waiting are said to."""
    _hold(children, qpath, "stuck-2-bb", age=600)
    queue.enqueue("jobtasks:add", 1, 2)
    status = ok("status", "--dir", str(qpath))
    assert "warning: every worker alive is stuck" in status


def test_reading_never_removes_and_needs_no_exclusive_lock(queue, children):
    """holds_lock on a dead worker's lock leaves the file; on a live one it says alive, and
    the live worker's lock stays its own (a reaper still finds it alive)."""
    live = _hold(children, queue.path, "live-4-dd")
    for _ in range(200):
        assert worker_records.holds_lock(queue.path, "live-4-dd")
    assert liveness.is_dead(queue.path, "live-4-dd") is False
    os.kill(live.pid, signal.SIGKILL)
    live.wait(timeout=10)
    wait_until(lambda: not worker_records.holds_lock(queue.path, "live-4-dd"), timeout=5)
    assert os.path.exists(worker_records.lock_path(queue.path, "live-4-dd"))


def test_taking_a_lock_waits_out_a_reader_probing_it(tmp_path, children):
    """A reader's shared probe at the instant a worker (re)takes its lock delays it, not fails it."""
    path = worker_records.lock_path(str(tmp_path), "w-5-ee")
    os.makedirs(os.path.dirname(path))
    probe = children.start(
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY | os.O_CREAT);"
        "fcntl.flock(fd, fcntl.LOCK_SH); print('probing', flush=True); time.sleep(0.3)", path)
    assert probe.stdout.readline().strip() == "probing"
    lock = liveness.LivenessLock(str(tmp_path), "w-5-ee")
    assert worker_records.holds_lock(str(tmp_path), "w-5-ee")
    lock.close()


def test_a_claim_owner_without_a_record_is_listed_from_its_id_and_lock(queue, tmp_path):
    """A worker of an older jobq (no record) that holds a running job still shows, alive."""
    lock = liveness.LivenessLock(queue.path, "oldhost-77-ff")
    try:
        queue.enqueue("jobtasks:add", 1, 2)
        [claim] = queue.store.claim("oldhost-77-ff/1")
        old = _by_id(queue)["oldhost-77-ff"]
        assert (old.state, old.host, old.pid, old.held) == (
            WorkerState.LIVE, "oldhost", 77, (claim.job_id,))
    finally:
        lock.close()
    assert _by_id(queue)["oldhost-77-ff"].state is WorkerState.DEAD


def test_only_one_reaper_buries_a_record(tmp_path):
    """Making the entry decides: the second bury finds nothing left to bury; the first also
    removes a heartbeat the dead worker left half written."""
    root = str(tmp_path)
    os.makedirs(os.path.join(root, "workers"))
    worker_records.publish(root, {"id": "x-1-aa", "host": "h", "pid": 1})
    torn = os.path.join(root, "workers", "x-1-aa.json.tmp.77.88")  # it died mid-heartbeat
    open(torn, "w").close()
    assert worker_records.bury(root, "x-1-aa", by="me", jobs=["b", "a"], now=5.0) is True
    assert worker_records.bury(root, "x-1-aa", by="other", jobs=[], now=6.0) is False
    with open(os.path.join(root, "workers", "dead", "x-1-aa.json")) as f:
        entry = json.load(f)
    assert (entry["reaped_by"], entry["jobs"], entry["reaped_at"], entry["host"]) == (
        "me", ["a", "b"], 5.0, "h")
    assert not os.path.exists(torn)


def test_a_worker_that_came_back_and_died_again_is_buried_again(tmp_path):
    """Buried by mistake (its lock file removed by hand), it beat again, then died: the next
    reaper replaces the old entry; a reaper racing that one finds its entry and does nothing."""
    root = str(tmp_path)
    os.makedirs(os.path.join(root, "workers"))
    worker_records.publish(root, {"id": "x-1-aa", "heartbeat": 10.0})
    assert worker_records.bury(root, "x-1-aa", by="first", jobs=[], now=20.0) is True
    worker_records.publish(root, {"id": "x-1-aa", "heartbeat": 30.0})  # it came back
    assert worker_records.bury(root, "x-1-aa", by="second", jobs=["j"], now=40.0) is True
    worker_records.publish(root, {"id": "x-1-aa", "heartbeat": 35.0})  # as a racing reaper saw it
    assert worker_records.bury(root, "x-1-aa", by="third", jobs=[], now=41.0) is False
    with open(os.path.join(root, "workers", "dead", "x-1-aa.json")) as f:
        entry = json.load(f)
    assert (entry["reaped_by"], entry["jobs"], entry["reaped_at"]) == ("second", ["j"], 40.0)


def test_dead_workers_are_forgotten_after_a_day_and_past_the_limit(tmp_path):
    """prune keeps the MAX_DEAD newest entries of the last day."""
    dead = tmp_path / "dead"
    dead.mkdir()
    now = time.time()
    for i in range(worker_records.MAX_DEAD + 5):
        entry = dead / f"w{i}.json"
        entry.write_text("{}")
        os.utime(entry, (now - i, now - i))
    for name in ("old.json", "old.json.tmp.12.34"):  # a reaper died writing the second
        old = dead / name
        old.write_text("{}")
        os.utime(old, (now - 2 * 86400,) * 2)
    assert worker_records.prune(str(dead), now) == 7
    assert sorted(p.name for p in dead.iterdir()) == sorted(
        f"w{i}.json" for i in range(worker_records.MAX_DEAD))


def test_a_record_that_is_not_json_is_shown_by_its_id(queue):
    """A damaged record hides nothing: the worker is listed by id, its lock deciding its state."""
    lock = liveness.LivenessLock(queue.path, "bad-6-ab")
    try:
        with open(worker_records.record_path(queue.path, "bad-6-ab"), "w") as f:
            f.write("{not json")
        bad = _by_id(queue)["bad-6-ab"]
        assert (bad.state, bad.host, bad.pid, bad.children) == (WorkerState.LIVE, None, None, ())
    finally:
        lock.close()


def test_worker_info_is_frozen():
    """What q.workers() returns cannot be changed by its reader."""
    info = worker_info.WorkerInfo(id="a", state=WorkerState.LIVE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.pid = 3  # type: ignore[misc]


@pytest.mark.parametrize("interval", [0, -1, "2"], ids=["zero", "negative", "text"])
def test_heartbeat_interval_must_be_positive(interval):
    """heartbeat_interval is a number of seconds > 0, like the worker's other intervals."""
    with pytest.raises(ConfigError, match="heartbeat_interval"):
        WorkerConfig(heartbeat_interval=interval)


def test_stuck_is_judged_from_the_interval_with_a_floor():
    """A heartbeat is old past five intervals, and never under MIN_STUCK seconds."""
    assert not worker_info.stuck(100.0, 2.0, 100.0 + worker_info.MIN_STUCK)
    assert worker_info.stuck(100.0, 2.0, 100.1 + worker_info.MIN_STUCK)
    assert not worker_info.stuck(100.0, 60.0, 399.0)
    assert worker_info.stuck(100.0, 60.0, 401.0)
    assert not worker_info.stuck(None, 2.0, 1e12)


def test_a_live_worker_buried_by_mistake_shows_live_once_it_beats_again(queue):
    """A lock file removed by hand makes a live worker look dead and get buried; its next
    heartbeat republishes its record, and the listing believes the lock it holds again."""
    lock = liveness.LivenessLock(queue.path, "back-7-ac")
    try:
        worker_records.publish(queue.path, {"id": "back-7-ac", "heartbeat": time.time()})
        os.unlink(lock.path)
        assert worker_records.bury(queue.path, "back-7-ac", by="other", jobs=[], now=time.time())
        assert _by_id(queue)["back-7-ac"].state is WorkerState.REAPED
        lock.check()
        worker_records.publish(queue.path, {"id": "back-7-ac", "heartbeat": time.time()})
        assert _by_id(queue)["back-7-ac"].state is WorkerState.LIVE
    finally:
        lock.close()
