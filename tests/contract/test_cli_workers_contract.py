"""`jobq workers`, and what `status` and `show` say of workers, on every engine, with real
worker processes."""

from __future__ import annotations

import json

from conftest import wait_until
from test_cli import ok

from jobq import Queue, Status


def _workers(location: str) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    return {w["id"]: w for w in json.loads(ok("workers", "--dir", location, "--json"))}


def _running(worker: dict) -> list[str]:
    return [c["job_id"] for c in worker["children"] if c["job_id"]]


def test_a_killed_worker_shows_dead_until_another_reaps_it(q: Queue, location: str, workers):
    """Live with its pid and job; SIGKILLed: dead, its job marked in status, a warning that no
    worker is alive; a new worker reclaims the job and the dead one shows as reaped by it."""
    slow = q.enqueue_call("jobtasks:sleep_for", args=(120,), max_attempts=5)
    first = workers(location)
    first_id = wait_until(lambda: first.events("worker.started"))[0]["worker"]
    seen = wait_until(lambda: (w := _workers(location).get(first_id)) and _running(w) and w)
    assert (seen["state"], seen["pid"], seen["alive"]) == ("live", first.pid, True)
    assert _running(seen) == [slow] and seen["children"][0]["task"] == "jobtasks:sleep_for"
    assert seen["held"] == [slow] and seen["concurrency"] == 1 and seen["queue"] == location
    text = ok("workers", "--dir", location)
    assert text.splitlines()[1].split()[:4] == ["live", first_id, seen["host"], str(first.pid)]
    assert f"1: {slow} jobtasks:sleep_for for " in text
    assert "workers: 1 alive" in ok("status", "--dir", location)
    shown = ok("show", "--dir", location, slow)
    assert f"worker       {first_id}/1 (live, pid {first.pid} on {seen['host']})" in shown

    waiting = q.enqueue_call("jobtasks:sleep_for", args=(0,))  # the only child is busy
    first.kill_all()

    # On PostgreSQL its lock is free once the server has seen its session end (milliseconds;
    # more on a loaded machine).
    dead = wait_until(lambda: (w := _workers(location)[first_id])["state"] == "dead" and w,
                      timeout=30)
    assert (dead["state"], dead["alive"], dead["held"]) == ("dead", False, [slow])
    line = next(l for l in ok("workers", "--dir", location).splitlines() if first_id in l)
    assert line.startswith("dead ") and f"held 1 job ({slow}): reclaimed when a worker starts" \
        in line
    status = ok("status", "--dir", location)
    assert (f"running           1  (1 held by dead worker {first_id}: reclaimed when a worker"
            " starts)") in status
    assert "workers: none alive, 1 dead" in status
    assert f"warning: no worker is alive, and jobs wait to run: start one with 'jobq worker" \
           f" --dir {location}'" in status
    assert f"{first_id}/1 (dead)" in status
    report = json.loads(ok("status", "--dir", location, "--json"))
    assert report["workers"]["alive"] == 0 and report["workers"]["held_by_dead"] == {
        first_id: [slow]}
    assert [r["worker_state"] for r in report["running"]] == ["dead"] and report["warnings"]
    assert "(dead: the job is reclaimed when a worker starts)" in ok(
        "show", "--dir", location, slow)
    assert json.loads(ok("show", "--dir", location, slow, "--json"))["worker"] == {
        "owner": f"{first_id}/1", "state": "dead"}
    # Reading took nothing away: the dead worker is still listed as it was, not reaped.
    again = _workers(location)[first_id]
    assert (again["state"], again["held"], again["pid"]) == ("dead", [slow], first.pid)

    second = workers(location)
    second_id = wait_until(lambda: second.events("worker.started"))[0]["worker"]
    reaped = wait_until(lambda: (w := _workers(location)[first_id])["state"] == "reaped" and w)
    assert (reaped["reaped_by"], reaped["held"], reaped["pid"]) == (second_id, [slow], first.pid)
    q.wait(waiting, timeout=60)
    assert [e["reaped_from"] for e in second.events("job.failed") if e["job_id"] == slow] == [
        first_id]
    listing = _workers(location)
    assert listing[second_id]["state"] == "live" and list(listing) == [second_id, first_id]
    line = next(l for l in ok("workers", "--dir", location).splitlines() if first_id in l)
    assert line.startswith("reaped ") and f"by {second_id}: its 1 job ({slow}) reclaimed" in line
    status = ok("status", "--dir", location)
    assert "workers: 1 alive" in status and "warning" not in status
    assert "held by dead" not in status


def test_a_worker_that_stops_cleanly_leaves_no_record(location: str, q: Queue):
    """A burst worker that exits removes its record: nothing shows it afterwards."""
    jid = q.enqueue("jobtasks:add", 1, 2)
    ok("worker", "--dir", location, "--burst")
    assert q.state(jid).status is Status.SUCCEEDED
    assert ok("workers", "--dir", location) == "(no workers)\n"
    assert json.loads(ok("workers", "--dir", location, "--json")) == []
    assert "workers: none alive" in ok("status", "--dir", location)


def test_status_warns_only_when_jobs_wait_and_no_worker_is_alive(location: str, q: Queue):
    """No worker and nothing to do: no warning; a job waiting: a warning naming the queue."""
    assert "warning" not in ok("status", "--dir", location)
    q.enqueue_call("jobtasks:add", args=(1, 2), delay=3600)  # not due: no one is missed
    assert "warning" not in ok("status", "--dir", location)
    q.enqueue("jobtasks:add", 1, 2)
    assert "warning: no worker is alive" in ok("status", "--dir", location)

