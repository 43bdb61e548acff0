"""The jobq commands on every engine, run for real in subprocesses (and under a
pseudo-terminal): enqueue, status, list, show, wait, retry, cancel, purge."""

from __future__ import annotations

import json
import os
import pty
import subprocess

from conftest import child_env, jobq_command
from test_cli import jobq, ok

from jobq import Queue, Status
from jobq.testing import run_burst
from workers import Worker


def test_enqueue_parses_json_args_and_options(location: str):
    """ARGs are JSON when they parse, else strings; --kwargs, --priority, --id and the rest
    apply."""
    jid = ok("enqueue", "--dir", location, "jobtasks:echo", "1", "[2, 3]", "plain", '"4"',
             "--kwargs", '{"k": null}', "--priority", "7", "--max-attempts", "2",
             "--timeout", "9", "--delay", "0", "--id", "job-1").strip()
    assert jid == "job-1"
    with Queue(location) as q:
        p = q.payload(jid)
        assert (p.args, p.kwargs, p.priority, p.max_attempts, p.timeout) == (
            (1, [2, 3], "plain", "4"), {"k": None}, 7, 2, 9.0)
    assert ok("enqueue", "--dir", location, "jobtasks:echo", "--id", "job-1").strip() == "job-1"


def test_enqueue_with_arguments_the_task_does_not_take_is_one_line_and_exit_1(location: str):
    """The task's source is read, not run: a call that does not fit it writes nothing."""
    for args in (["jobtasks:add", "1"], ["jobtasks:add", "1", "2", "--kwargs", '{"c": 3}'],
                 ["nowhere_q:f"]):
        done = jobq("enqueue", "--dir", location, *args)
        assert done.returncode == 1 and done.stdout == "", (args, done.stderr)
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("jobq: error: "), done.stderr
    assert "cannot be called with 1 positional argument" in jobq(
        "enqueue", "--dir", location, "jobtasks:add", "1").stderr
    with Queue(location) as q:
        assert sum(q.counts().values()) == 0


def test_status_list_show_wait_on_a_real_run(location: str):
    """The read commands describe what a worker did, in tables and in JSON."""
    with Queue(location) as q:
        good = q.enqueue("jobtasks:add", 2, 3)
        bad = q.enqueue_call("jobtasks:boom", args=("broken input",), max_attempts=1)
        waiting = q.enqueue_call("jobtasks:add", args=(0, 0), delay=3600)
        Worker(q).run(burst=True)
    status = ok("status", "--dir", location)
    shown_counts = {line.split()[0]: int(line.split()[1]) for line in status.splitlines()[1:7]}
    assert shown_counts == {"queued": 1, "running": 0, "failed": 0, "succeeded": 1, "dead": 1,
                            "cancelled": 0}
    assert "next due in 59m" in status  # delayed an hour: not waiting for a worker
    counts = json.loads(ok("status", "--dir", location, "--json"))["counts"]
    assert counts == {"queued": 1, "running": 0, "failed": 0, "succeeded": 1, "dead": 1,
                      "cancelled": 0}
    listing = ok("list", "--dir", location).splitlines()
    assert listing[0].split() == ["JOB", "ID", "STATUS", "TASK", "ATTEMPTS", "PROGRESS",
                                  "ENQUEUED", "UPDATED"]
    assert [line.split()[0] for line in listing[1:]] == [waiting, bad, good]  # newest first
    assert [r["job_id"] for r in json.loads(ok("list", "--dir", location, "--status", "dead",
                                               "--json"))] == [bad]
    shown = ok("show", "--dir", location, bad)
    assert "status       dead (attempt 1, 0 crashes)" in shown
    assert "ValueError: broken input" in shown and "Traceback" in shown
    assert json.loads(ok("show", "--dir", location, good, "--json"))["state"]["result"] == 5
    assert ok("wait", "--dir", location, good).strip() == f"{good} succeeded: result 5"
    failed_wait = jobq("wait", "--dir", location, bad)
    assert failed_wait.returncode == 1 and "ValueError: broken input" in failed_wait.stdout
    timed_out = jobq("wait", "--dir", location, waiting, "--timeout", "0.2")
    assert timed_out.returncode == 124 and "did not finish within 0.2 s" in timed_out.stderr


def test_retry_and_cancel(location: str):
    """retry re-queues dead jobs (one or all); cancel stops waiting jobs; mistakes are errors."""
    with Queue(location) as q:
        dead = [q.enqueue_call("jobtasks:boom", max_attempts=1) for _ in range(2)]
        Worker(q).run(burst=True)
        waiting = q.enqueue_call("jobtasks:add", args=(1, 1), delay=3600)
    assert ok("retry", "--dir", location, dead[0]).strip() == f"requeued {dead[0]}"
    assert ok("retry", "--dir", location, "--all-dead").strip() == "requeued 1 dead job"
    again = jobq("retry", "--dir", location, dead[0])
    assert again.returncode == 1 and "only dead or cancelled" in again.stderr
    assert ok("cancel", "--dir", location, waiting).strip() == f"cancelled {waiting}"
    twice = jobq("cancel", "--dir", location, waiting)
    assert twice.returncode == 1 and "already finished: it was cancelled" in twice.stderr
    with Queue(location) as q:
        assert q.state(waiting).status is Status.CANCELLED
        assert [q.state(j).status for j in dead] == [Status.QUEUED, Status.QUEUED]


def test_wait_draws_a_live_progress_bar_on_a_terminal(location: str, tmp_path):
    """Under a pseudo-terminal, wait redraws a bar fed by ctx.save(progress=...)."""
    markers = tmp_path / "m"
    markers.mkdir()
    with Queue(location) as q:
        jid = q.enqueue("jobtasks:slow_steps", 10, 0.1, str(markers))
    master, slave = pty.openpty()
    waiter = subprocess.Popen([*jobq_command(), "wait", "--dir", location, jid],
                              stdout=slave, stderr=subprocess.DEVNULL, env=child_env())
    os.close(slave)
    worker = subprocess.Popen([*jobq_command(), "worker", "--dir", location, "--burst"],
                              stderr=subprocess.DEVNULL, env=child_env())
    try:
        screen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the waiter closed its terminal
                break
            if not chunk:
                break
            screen += chunk
        assert waiter.wait(timeout=60) == 0
    finally:
        for proc in (waiter, worker):
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
        os.close(master)
    text = screen.decode()
    frames = [f for f in text.split("\r") if f.startswith("[")]
    assert len(frames) >= 3, text  # several redraws as the job advanced
    assert any("#" in f and "running" in f for f in frames)
    assert "[" + "#" * 30 + "] 100%  succeeded" in text
    assert f"{jid} succeeded" in text


def test_mistakes_leave_the_queue_untouched(location: str):
    """A refused command changes nothing in the queue: the same jobs, as they were."""
    with Queue(location) as q:
        jid = q.enqueue("jobtasks:add", 1, 1)
        before = [(s.job_id, s.status, s.attempts, s.updated_at) for s in q.jobs()]
    for args in (("enqueue", "jobtasks:add", "--kwargs", "{bad"), ("cancel", "nope"),
                 ("retry", "nope"), ("enqueue", "jobtasks:add", "--max-attempts", "0")):
        assert jobq("--dir", location, *args).returncode == 1
    with Queue(location) as q:
        assert [(s.job_id, s.status, s.attempts, s.updated_at) for s in q.jobs()] == before
        assert q.payload(jid).args == (1, 1)


def test_status_does_not_count_a_retry_wait_as_waiting(location: str):
    """A job waiting for its retry's backoff is not a backlog: status says when it is due."""
    with Queue(location) as q:
        q.enqueue_call("jobtasks:boom", max_attempts=2)
        run_burst(q, retry_delay=lambda attempt: 3600)
    lines = {line.split()[0]: line for line in ok("status", "--dir", location).splitlines()[1:7]}
    assert lines["queued"].split() == ["queued", "0"]
    assert lines["failed"].split()[:2] == ["failed", "1"] and "next retry in 59m" in lines["failed"]
    report = json.loads(ok("status", "--dir", location, "--json"))
    assert report["oldest_waiting_age"] is None and 3500 < report["next_retry_in"] <= 3600


def test_purge_defaults_to_every_finished_status(location: str):
    """Without --status, purge takes succeeded, dead and cancelled jobs, and says so."""
    with Queue(location) as q:
        q.enqueue("jobtasks:add", 1, 1)
        q.enqueue_call("jobtasks:boom", max_attempts=1)
        q.cancel(q.enqueue("jobtasks:add", 2, 2))
        waiting = q.enqueue_call("jobtasks:add", args=(3, 3), delay=3600)
        run_burst(q)
    out = ok("purge", "--dir", location, "--older-than", "0s")
    assert out.strip() == ("purged 3 jobs (succeeded, dead, cancelled) that finished more than"
                           " 0s ago")
    with Queue(location) as q:
        assert [s.job_id for s in q.jobs()] == [waiting]


def test_a_job_is_named_by_a_unique_prefix_of_its_id(location: str):
    """show, wait, cancel and retry take a prefix of one id; an ambiguous one is refused, with
    some of the ids it starts."""
    with Queue(location) as q:
        ids = [q.enqueue_call("jobtasks:add", args=(1, 1), job_id=f"csv-{n}", delay=3600)
               for n in (1, 2, 30)]
        other = q.enqueue_call("jobtasks:add", args=(1, 1), job_id="report-7", delay=3600)
    assert ok("show", "--dir", location, "rep").splitlines()[0].split() == ["job", other]
    assert ok("cancel", "--dir", location, "csv-3").strip() == "cancelled csv-30"
    assert ok("retry", "--dir", location, "csv-3").strip() == "requeued csv-30"
    assert ok("show", "--dir", location, "csv-1").splitlines()[0].split() == ["job", ids[0]]
    ambiguous = jobq("show", "--dir", location, "csv")
    assert ambiguous.returncode == 1
    assert ambiguous.stderr.strip() == ("jobq: error: 'csv' starts several job ids (csv-1, csv-2,"
                                        " csv-30): give more of it")
    unknown = jobq("wait", "--dir", location, "csx")
    assert unknown.returncode == 1 and "no job with id 'csx'" in unknown.stderr


def test_retry_of_a_job_that_succeeded_reads_as_english(location: str):
    with Queue(location) as q:
        q.enqueue_call("jobtasks:add", args=(1, 1), job_id="csv-1")
        run_burst(q)
    done = jobq("retry", "--dir", location, "csv-1")
    assert done.returncode == 1
    assert done.stderr.strip() == ("jobq: error: job csv-1 has succeeded; only dead or cancelled"
                                   " jobs can be retried")


def test_wait_json_on_a_success_has_no_error(location: str, tmp_path):
    """A job that succeeded after a failed attempt: its result, not the earlier attempt's error."""
    with Queue(location) as q:
        jid = q.enqueue("jobtasks:fail_until", 2)
        run_burst(q)
        assert q.state(jid).error  # the first attempt's
    done = json.loads(ok("wait", "--dir", location, jid, "--json"))
    assert done == {"job_id": jid, "status": "succeeded", "result": 2}



def test_status_counts_roughly_unless_asked_for_exact_counts(location: str):
    """On a big backlog status stops counting at the cap, and says so; --exact counts all."""
    from jobq import listing
    with Queue(location) as q:
        q.enqueue_many("jobtasks:add", [(i, i) for i in range(listing.ROUGH_CAP + 5)])
        q.enqueue_call("jobtasks:add", args=(0, 0), delay=3600)
    rough = ok("status", "--dir", location).splitlines()
    assert rough[1].split()[:2] == ["queued", f"{listing.ROUGH_CAP}+"]
    assert "oldest waiting since" in rough[1]
    assert rough[7].strip() == (f"(counted up to {listing.ROUGH_CAP} each: jobq status --exact"
                                " counts them all)")
    exact = ok("status", "--dir", location, "--exact").splitlines()
    assert exact[1].split()[:2] == ["queued", str(listing.ROUGH_CAP + 6)]
    assert "oldest waiting since" in exact[1] and "counted up to" not in "\n".join(exact)
    report = json.loads(ok("status", "--dir", location, "--json"))
    assert report["counts"]["queued"] == listing.ROUGH_CAP and report["counts_capped"] == [
        "queued"]
    assert 0 <= report["oldest_waiting_age"] < 600
    report = json.loads(ok("status", "--dir", location, "--json", "--exact"))
    assert report["counts"]["queued"] == listing.ROUGH_CAP + 6
    assert report["counts_capped"] == []
