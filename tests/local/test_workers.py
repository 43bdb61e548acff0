"""Worker liveness locks of a queue directory (jobq.local.workers): held for life, seen free the moment their holder dies."""

from __future__ import annotations

import os
import signal

from conftest import wait_until

from jobq.local import workers as liveness

HOLD = ("import sys, time; from jobq.local.workers import LivenessLock;"
        "lock = LivenessLock(sys.argv[1], sys.argv[2]); print('held', flush=True); time.sleep(60)")


def test_a_live_holder_is_alive_and_a_killed_one_is_dead(tmp_path, children):
    """is_dead is False while the holder lives and True right after it is SIGKILLed."""
    proc = children.start(HOLD, str(tmp_path), "w1")
    assert proc.stdout.readline().strip() == "held"
    assert liveness.is_dead(str(tmp_path), "w1") is False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    wait_until(lambda: liveness.is_dead(str(tmp_path), "w1"), timeout=2)
    assert not (tmp_path / "workers" / "w1.lock").exists()  # the prober cleaned it up


def test_unknown_worker_is_dead(tmp_path):
    """A worker id with no lock file is dead (it exited, or was reaped already)."""
    assert liveness.is_dead(str(tmp_path), "never-existed") is True


def test_clean_close_removes_the_file(tmp_path):
    """close() gives the lock up and removes its file."""
    lock = liveness.LivenessLock(str(tmp_path), "me")
    assert liveness.is_dead(str(tmp_path), "me") is False
    lock.close()
    assert liveness.is_dead(str(tmp_path), "me") is True


def test_check_retakes_a_lock_whose_file_was_removed(tmp_path):
    """If someone deletes a live worker's lock file, check() makes it visible again."""
    lock = liveness.LivenessLock(str(tmp_path), "me")
    os.unlink(lock.path)
    lock.check()
    assert liveness.is_dead(str(tmp_path), "me") is False
    lock.close()
