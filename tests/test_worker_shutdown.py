"""A stuck worker's expired lease, on the directory engine: the test stops the worker while it
holds the state database's lock, so that it cannot be frozen mid-write (how a worker stops on
every engine: tests/contract/test_shutdown_contract.py, which imports the helpers here).

Every worker here is a real process. Signals are real signals.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until

from jobq.state import Status

LINUX_ONLY = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc and Linux pipe sizes")

# A worker whose lease is short: stopped with SIGSTOP, it stops renewing and the lease runs out.
# Its events go to a file as JSON lines (argv[2]), so the test can read them while it runs.
SHORT_LEASE_WORKER = """
import sys
sys.stderr = open(sys.argv[2], "a", buffering=1)
from jobq import Queue
from jobq.cli import configure_logging
from workers import Worker
configure_logging(fmt="json", level=10)  # debug: claims too
with Queue(sys.argv[1]) as q:
    Worker(q, lease_seconds=1, reap_interval=0.1).run()
"""

def _events(path: Path, name: str, job_id: str | None = None) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]
    return [e for e in events
            if e["event"] == name and (job_id is None or e.get("job_id") == job_id)]


def _for_job(events: list[dict[str, Any]], job_id: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("job_id") == job_id]


def _when(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def _process_state(pid: int) -> str:
    """The state letter of ``pid`` in /proc (``T`` once it is stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


@LINUX_ONLY
def test_stuck_worker_loses_its_job_at_lease_expiry_and_its_late_result_is_refused(
        queue, qpath, workers, children, tmp_path):
    """A stopped worker's job is reclaimed when its lease expires; its late result is stale."""
    pid_file, a_log = tmp_path / "pid", tmp_path / "worker-a.log"
    jid = queue.enqueue_call("jobtasks:pid_then_sleep", args=(str(pid_file), 3.0), max_attempts=3)
    a = children.start(SHORT_LEASE_WORKER, str(qpath), str(a_log))
    wait_until(lambda: pid_file.exists())
    a_child = int(pid_file.read_text())
    # The supervisor logs its start once its children run: a job may start before that.
    wait_until(lambda: _events(a_log, "worker.started"))
    a_id = _events(a_log, "worker.started")[0]["worker"]

    # Stop A's supervisor (not its child) outside any write transaction: holding the state lock
    # while it stops, A cannot be frozen with the lock in hand, which would wedge every worker.
    lock = queue.store._db.lock
    with lock:
        os.kill(a.pid, signal.SIGSTOP)
        wait_until(lambda: _process_state(a.pid) == "T")
    try:
        b = workers(str(qpath))
        state = queue.wait(jid, timeout=30)
        assert state.status is Status.SUCCEEDED
        assert state.result == int(pid_file.read_text()) != a_child  # B's own child ran it
    finally:
        os.kill(a.pid, signal.SIGCONT)

    reclaimed = _for_job(b.events("job.failed"), jid)
    assert [e["reaped_from"] for e in reclaimed] == [a_id]
    assert reclaimed[0]["cause"] == f"lease expired: worker {a_id} stopped renewing it"
    wait_until(lambda: _events(a_log, "job.stale_result", jid))
    a.send_signal(signal.SIGTERM)
    _, err = a.communicate(timeout=30)
    assert a.returncode == 0, err

    after = queue.state(jid)
    # The reclaimed attempt had saved a checkpoint before A stopped: it was not charged.
    assert (after.status, after.result, after.attempts) == (state.status, state.result, 1)
    succeeded = _events(a_log, "job.succeeded", jid) + _for_job(b.events("job.succeeded"), jid)
    assert len(succeeded) == 1


