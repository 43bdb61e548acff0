"""The jobq console script, run for real in subprocesses (and under a pseudo-terminal)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import child_env, jobq_command

from jobq import Queue, Status
from workers import Worker


def jobq(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    base = child_env()
    base.pop("JOBQ_HOME", None)
    return subprocess.run([*jobq_command(), *args], cwd=cwd, env={**base, **(env or {})},
                          text=True, capture_output=True, timeout=timeout)


def ok(*args: str, **kw) -> str:  # type: ignore[no-untyped-def]
    done = jobq(*args, **kw)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def test_demo_kills_a_worker_and_the_job_resumes(tmp_path):
    """`jobq demo` in an empty directory uses ./.jobq, kills a worker mid-job, and every job ends."""
    done = jobq("demo", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Killed worker A and its children with SIGKILL" in done.stdout
    assert "instead of starting over" in done.stdout
    assert "Every job finished with the right sum (210)" in done.stdout
    assert (tmp_path / ".jobq" / "jobq.json").exists()


def test_enqueue_parses_json_args_and_options(qpath):
    """ARGs are JSON when they parse, else strings; --kwargs, --priority, --id and the rest apply."""
    jid = ok("enqueue", "--dir", str(qpath), "jobtasks:echo", "1", "[2, 3]", "plain", '"4"',
             "--kwargs", '{"k": null}', "--priority", "7", "--max-attempts", "2",
             "--timeout", "9", "--delay", "0", "--id", "job-1").strip()
    assert jid == "job-1"
    with Queue(qpath) as q:
        p = q.payload(jid)
        assert (p.args, p.kwargs, p.priority, p.max_attempts, p.timeout) == (
            (1, [2, 3], "plain", "4"), {"k": None}, 7, 2, 9.0)
    assert ok("enqueue", "--dir", str(qpath), "jobtasks:echo", "--id", "job-1").strip() == "job-1"


def test_enqueue_with_arguments_the_task_does_not_take_is_one_line_and_exit_1(qpath):
    """The task's source is read, not run: a call that does not fit it writes nothing."""
    for args in (["jobtasks:add", "1"], ["jobtasks:add", "1", "2", "--kwargs", '{"c": 3}'],
                 ["nowhere_q:f"]):
        done = jobq("enqueue", "--dir", str(qpath), *args)
        assert done.returncode == 1 and done.stdout == "", (args, done.stderr)
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("jobq: error: "), done.stderr
    assert "cannot be called with 1 positional argument" in jobq(
        "enqueue", "--dir", str(qpath), "jobtasks:add", "1").stderr
    with Queue(qpath) as q:
        assert sum(q.counts().values()) == 0


def test_status_list_show_wait_on_a_real_run(qpath):
    """The read commands describe what a worker did, in tables and in JSON."""
    with Queue(qpath) as q:
        good = q.enqueue("jobtasks:add", 2, 3)
        bad = q.enqueue_call("jobtasks:boom", args=("broken input",), max_attempts=1)
        waiting = q.enqueue_call("jobtasks:add", args=(0, 0), delay=3600)
        Worker(q).run(burst=True)
    status = ok("status", "--dir", str(qpath))
    shown_counts = {line.split()[0]: int(line.split()[1]) for line in status.splitlines()[1:7]}
    assert shown_counts == {"queued": 1, "running": 0, "failed": 0, "succeeded": 1, "dead": 1,
                            "cancelled": 0}
    assert "next due in 59m" in status  # delayed an hour: not waiting for a worker
    counts = json.loads(ok("status", "--dir", str(qpath), "--json"))["counts"]
    assert counts == {"queued": 1, "running": 0, "failed": 0, "succeeded": 1, "dead": 1,
                      "cancelled": 0}
    listing = ok("list", "--dir", str(qpath)).splitlines()
    assert listing[0].split() == ["JOB", "ID", "STATUS", "TASK", "ATTEMPTS", "PROGRESS",
                                  "ENQUEUED", "UPDATED"]
    assert [line.split()[0] for line in listing[1:]] == [waiting, bad, good]  # newest first
    assert [r["job_id"] for r in json.loads(ok("list", "--dir", str(qpath), "--status", "dead",
                                               "--json"))] == [bad]
    shown = ok("show", "--dir", str(qpath), bad)
    assert "status       dead (attempt 1, 0 crashes)" in shown
    assert "ValueError: broken input" in shown and "Traceback" in shown
    assert json.loads(ok("show", "--dir", str(qpath), good, "--json"))["state"]["result"] == 5
    assert ok("wait", "--dir", str(qpath), good).strip() == f"{good} succeeded: result 5"
    failed_wait = jobq("wait", "--dir", str(qpath), bad)
    assert failed_wait.returncode == 1 and "ValueError: broken input" in failed_wait.stdout
    timed_out = jobq("wait", "--dir", str(qpath), waiting, "--timeout", "0.2")
    assert timed_out.returncode == 124 and "did not finish within 0.2 s" in timed_out.stderr


def test_retry_and_cancel(qpath):
    """retry re-queues dead jobs (one or all); cancel stops waiting jobs; mistakes are errors."""
    with Queue(qpath) as q:
        dead = [q.enqueue_call("jobtasks:boom", max_attempts=1) for _ in range(2)]
        Worker(q).run(burst=True)
        waiting = q.enqueue_call("jobtasks:add", args=(1, 1), delay=3600)
    assert ok("retry", "--dir", str(qpath), dead[0]).strip() == f"requeued {dead[0]}"
    assert ok("retry", "--dir", str(qpath), "--all-dead").strip() == "requeued 1 dead job"
    again = jobq("retry", "--dir", str(qpath), dead[0])
    assert again.returncode == 1 and "only dead or cancelled" in again.stderr
    assert ok("cancel", "--dir", str(qpath), waiting).strip() == f"cancelled {waiting}"
    twice = jobq("cancel", "--dir", str(qpath), waiting)
    assert twice.returncode == 1 and "already finished: it was cancelled" in twice.stderr
    with Queue(qpath) as q:
        assert q.state(waiting).status is Status.CANCELLED
        assert [q.state(j).status for j in dead] == [Status.QUEUED, Status.QUEUED]


def test_wait_draws_a_live_progress_bar_on_a_terminal(qpath, tmp_path):
    """Under a pseudo-terminal, wait redraws a bar fed by ctx.save(progress=...)."""
    markers = tmp_path / "m"
    markers.mkdir()
    with Queue(qpath) as q:
        jid = q.enqueue("jobtasks:slow_steps", 10, 0.1, str(markers))
    master, slave = pty.openpty()
    waiter = subprocess.Popen([*jobq_command(), "wait", "--dir", str(qpath), jid],
                              stdout=slave, stderr=subprocess.DEVNULL, env=child_env())
    os.close(slave)
    worker = subprocess.Popen([*jobq_command(), "worker", "--dir", str(qpath), "--burst"],
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


def test_verify_reports_records_that_no_longer_load(qpath, tmp_path, monkeypatch):
    """verify exits 1 and names the cause when a job's argument class can no longer be imported."""
    (tmp_path / "gone_models.py").write_text(textwrap.dedent("""
        class Order:
            def __init__(self, n): self.n = n
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import gone_models
    with Queue(qpath) as q:
        q.enqueue("jobtasks:echo", gone_models.Order(1))
        q.enqueue("jobtasks:add", 1, 2)
        q.counts()
    (tmp_path / "gone_models.py").unlink()
    done = jobq("verify", "--dir", str(qpath))
    assert done.returncode == 1
    assert "log records         1 ok       1 failed" in done.stdout
    assert "No module named 'gone_models'" in done.stdout and "verify: FAILED" in done.stdout
    report = json.loads(jobq("verify", "--dir", str(qpath), "--json").stdout)
    assert (report["ok"], report["records_failed"], report["snapshots_ok"]) == (False, 1, 2)
    (tmp_path / "gone_models.py").write_text("class Order:\n    pass\n")  # the fix is deployed
    assert ok("verify", "--dir", str(qpath), env={"PYTHONPATH": f"{tmp_path}{os.pathsep}"
                                                  f"{child_env()['PYTHONPATH']}"}).endswith(
        "verify: OK\n")


def test_purge_and_compact_reclaim_space(qpath):
    """purge removes old finished jobs; compact then gives their log space back."""
    with Queue(qpath, segment_size=4096) as q:
        q.enqueue_many("jobtasks:add", [(i, i) for i in range(300)])
        Worker(q, concurrency=2).run(burst=True)
        keep = q.enqueue_call("jobtasks:add", args=(1, 1), delay=3600)
    assert ok("purge", "--dir", str(qpath), "--status", "succeeded",
              "--older-than", "0s").strip() == \
        "purged 300 jobs (succeeded) that finished more than 0s ago"
    out = ok("compact", "--dir", str(qpath))
    assert out.startswith("reclaimed ") and "segments rewritten" in out
    assert int(out.split()[1].replace(",", "")) > 0
    with Queue(qpath) as q:
        assert q.counts()["succeeded"] == 0 and q.state(keep).status is Status.QUEUED
        assert q.payload(keep).args == (1, 1)


@pytest.mark.parametrize("args,code,message", [
    (("status", "--dir", "/nonexistent/queue"), 1, "jobq: error: no queue at /nonexistent/queue"),
    (("--dir", "/etc/passwd", "enqueue", "jobtasks:add", "1", "2"), 1, "exists and is not a directory"),
    (("show", "no-such-job"), 1, "jobq: error: no job with id 'no-such-job'"),
    (("enqueue", "jobtasks:add", "--kwargs", "{bad"), 1, "--kwargs is not valid JSON"),
    (("enqueue", "jobtasks:add", "--kwargs", "[1]"), 1, "--kwargs must be a JSON object"),
    (("enqueue", "no_such_module_q:f"), 1, "cannot find module 'no_such_module_q'"),
    (("enqueue", "jobtasks:add", "--delay", "-5"), 1, "delay must be"),
    (("purge", "--status", "succeeded", "--older-than", "soon"), 1, "not a duration"),
    (("purge", "--older-than", "1"), 1, "duration '1' has no unit: write 1s, 1m, 1h or 1d"),
    (("purge",), 2, "the following arguments are required: --older-than"),
    (("purge", "--status", "queued", "--older-than", "1d"), 2, "invalid choice"),
    (("worker", "-c", "0"), 1, "concurrency must be an integer >= 1"),
    (("worker", "--import", "no_such_module_q"), 1, "cannot import no_such_module_q"),
    (("worker", "--compact-threshold", "lots"), 2, "not a number of bytes: 'lots'"),
    (("list", "--status", "bogus"), 2, "invalid choice"),
    (("demo", "--bogus"), 2, "unrecognized arguments"),
    ((), 2, "required"),
], ids=["missing-dir", "file-as-dir", "unknown-job", "bad-json", "kwargs-not-object",
        "unimportable-task", "negative-delay", "bad-duration", "duration-without-unit",
        "purge-without-age", "purge-unfinished", "zero-workers",
        "bad-import", "bad-compact-threshold", "bad-status", "unknown-flag", "no-command"])
def test_mistakes_are_one_line_and_non_zero(tmp_path, args, code, message):
    """User mistakes print one clear line on stderr, no traceback, and exit non-zero."""
    (tmp_path / ".jobq").mkdir()
    Queue(tmp_path / ".jobq").close()
    done = jobq(*args, cwd=tmp_path)
    assert done.returncode == code, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    if code == 1:
        assert len(done.stderr.strip().splitlines()) == 1


def test_mistakes_leave_stored_data_untouched(qpath):
    """A refused command changes nothing on disk."""
    with Queue(qpath) as q:
        q.enqueue("jobtasks:add", 1, 1)
        q.counts()
    before = {p: p.read_bytes() for p in qpath.rglob("*") if p.is_file() and "lock" not in p.name}
    for args in (("enqueue", "jobtasks:add", "--kwargs", "{bad"), ("cancel", "nope"),
                 ("retry", "nope"), ("enqueue", "jobtasks:add", "--max-attempts", "0")):
        assert jobq("--dir", str(qpath), *args).returncode == 1
    after = {p: p.read_bytes() for p in qpath.rglob("*") if p.is_file() and "lock" not in p.name}
    assert {p for p in after if p.suffix == ".log"} == {p for p in before if p.suffix == ".log"}
    assert all(after[p] == before[p] for p in before if p.suffix == ".log")


def test_status_warns_about_quarantined_log_ranges(qpath):
    """status says when damaged log bytes were skipped, and where they were copied."""
    with Queue(qpath) as q:
        q.enqueue_many("jobtasks:add", [(1, 1), (2, 2), (3, 3)])
    segment = next((qpath / "log").glob("*.log"))
    data = bytearray(segment.read_bytes())
    data[40] ^= 0xFF  # inside the first record's body
    segment.write_bytes(bytes(data))
    out = ok("status", "--dir", str(qpath))
    assert "warning: 1 damaged log range(s) were skipped" in out
    assert str(qpath / "quarantine") in out and "checksum" in out
    assert len(json.loads(ok("status", "--dir", str(qpath), "--json"))["quarantined"]) == 1
    healthy = qpath.parent / "healthy"
    Queue(healthy).close()
    assert "warning" not in ok("status", "--dir", str(healthy))


@pytest.mark.parametrize("text,size", [("0", 0), ("off", 0), ("OFF", 0), ("4096", 4096),
                                       ("64M", 64 << 20), ("64MiB", 64 << 20), ("1g", 1 << 30),
                                       ("2K", 2048)])
def test_worker_compact_threshold_takes_bytes_with_a_unit_or_off(text, size):
    """``--compact-threshold`` reads a byte count (K, M, G are binary) or ``off``."""
    from jobq.cli import _parser
    assert _parser().parse_args(["worker", "--compact-threshold", text]).compact_threshold == size


def test_status_does_not_count_a_retry_wait_as_waiting(qpath):
    """A job waiting for its retry's backoff is not a backlog: status says when it is due."""
    from jobq.testing import run_burst
    with Queue(qpath) as q:
        q.enqueue_call("jobtasks:boom", max_attempts=2)
        run_burst(q, retry_delay=lambda attempt: 3600)
    lines = {line.split()[0]: line for line in ok("status", "--dir", str(qpath)).splitlines()[1:7]}
    assert lines["queued"].split() == ["queued", "0"]
    assert lines["failed"].split()[:2] == ["failed", "1"] and "next retry in 59m" in lines["failed"]
    report = json.loads(ok("status", "--dir", str(qpath), "--json"))
    assert report["oldest_waiting_age"] is None and 3500 < report["next_retry_in"] <= 3600


def test_purge_defaults_to_every_finished_status(qpath):
    """Without --status, purge takes succeeded, dead and cancelled jobs, and says so."""
    from jobq.testing import run_burst
    with Queue(qpath) as q:
        q.enqueue("jobtasks:add", 1, 1)
        q.enqueue_call("jobtasks:boom", max_attempts=1)
        q.cancel(q.enqueue("jobtasks:add", 2, 2))
        waiting = q.enqueue_call("jobtasks:add", args=(3, 3), delay=3600)
        run_burst(q)
    out = ok("purge", "--dir", str(qpath), "--older-than", "0s")
    assert out.strip() == ("purged 3 jobs (succeeded, dead, cancelled) that finished more than"
                           " 0s ago")
    with Queue(qpath) as q:
        assert [s.job_id for s in q.jobs()] == [waiting]


def test_a_job_is_named_by_a_unique_prefix_of_its_id(qpath):
    """show, wait, cancel and retry take a prefix of one id; an ambiguous one is refused, with
    some of the ids it starts."""
    with Queue(qpath) as q:
        ids = [q.enqueue_call("jobtasks:add", args=(1, 1), job_id=f"csv-{n}", delay=3600)
               for n in (1, 2, 30)]
        other = q.enqueue_call("jobtasks:add", args=(1, 1), job_id="report-7", delay=3600)
    assert ok("show", "--dir", str(qpath), "rep").splitlines()[0].split() == ["job", other]
    assert ok("cancel", "--dir", str(qpath), "csv-3").strip() == "cancelled csv-30"
    assert ok("retry", "--dir", str(qpath), "csv-3").strip() == "requeued csv-30"
    assert ok("show", "--dir", str(qpath), "csv-1").splitlines()[0].split() == ["job", ids[0]]
    ambiguous = jobq("show", "--dir", str(qpath), "csv")
    assert ambiguous.returncode == 1
    assert ambiguous.stderr.strip() == ("jobq: error: 'csv' starts several job ids (csv-1, csv-2,"
                                        " csv-30): give more of it")
    unknown = jobq("wait", "--dir", str(qpath), "csx")
    assert unknown.returncode == 1 and "no job with id 'csx'" in unknown.stderr


def test_retry_of_a_job_that_succeeded_reads_as_english(qpath):
    from jobq.testing import run_burst
    with Queue(qpath) as q:
        q.enqueue_call("jobtasks:add", args=(1, 1), job_id="csv-1")
        run_burst(q)
    done = jobq("retry", "--dir", str(qpath), "csv-1")
    assert done.returncode == 1
    assert done.stderr.strip() == ("jobq: error: job csv-1 has succeeded; only dead or cancelled"
                                   " jobs can be retried")


def test_wait_json_on_a_success_has_no_error(qpath, tmp_path):
    """A job that succeeded after a failed attempt: its result, not the earlier attempt's error."""
    from jobq.testing import run_burst
    with Queue(qpath) as q:
        jid = q.enqueue("jobtasks:fail_until", 2)
        run_burst(q)
        assert q.state(jid).error  # the first attempt's
    done = json.loads(ok("wait", "--dir", str(qpath), jid, "--json"))
    assert done == {"job_id": jid, "status": "succeeded", "result": 2}


@pytest.mark.parametrize("args", [
    ("enqueue", "no_such_module_q:f"),
    ("enqueue", "jobtasks:add", "1", "--delay", "-5"),
    ("enqueue", "jobtasks:add", "--kwargs", "{bad"),
    ("worker", "--burst", "--import", "no_such_module_q"),
    ("worker", "--burst", "-c", "0"),
], ids=["unimportable-task", "negative-delay", "bad-kwargs", "bad-import", "zero-workers"])
def test_a_refused_command_creates_no_queue(tmp_path, args):
    """A mistake at a mistyped --dir leaves nothing behind (nor its parent directories)."""
    done = jobq(*args, "--dir", str(tmp_path / "typo" / "queue"), cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "typo").exists()


READS = [("status",), ("list",), ("show", "x"), ("wait", "x"), ("cancel", "x"), ("retry", "x"),
         ("purge", "--older-than", "1d"), ("verify",), ("compact",), ("backup", "dest")]


@pytest.mark.parametrize("args", READS, ids=[a[0] for a in READS])
def test_a_command_on_a_missing_queue_says_so_and_creates_nothing(tmp_path, args):
    done = jobq(*args, "--dir", str(tmp_path / "typo"), cwd=tmp_path)
    assert done.returncode in (1, 2)
    assert done.stderr.strip() == (f"jobq: error: no queue at {tmp_path / 'typo'}: give its"
                                   " directory with --dir or $JOBQ_HOME (jobq enqueue or jobq"
                                   " worker creates one)")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_jobq_home_with_a_tilde_is_expanded_and_named_in_messages(tmp_path):
    """JOBQ_HOME='~/q' (quoted: the shell leaves the ~) is the home directory's q, not ./~/q."""
    env = {"JOBQ_HOME": "~/q", "HOME": str(tmp_path / "home")}
    missing = jobq("status", cwd=tmp_path, env=env)
    assert missing.returncode == 1
    assert f"no queue at {tmp_path / 'home' / 'q'} (from $JOBQ_HOME)" in missing.stderr
    created = jobq("enqueue", "jobtasks:add", "1", "2", cwd=tmp_path, env=env)
    assert created.returncode == 0 and len(created.stdout.split()) == 1  # the job id alone
    assert created.stderr == f"jobq: created a new queue at {tmp_path / 'home' / 'q'} (from" \
                             " $JOBQ_HOME)\n"
    assert jobq("enqueue", "jobtasks:add", "1", "2", cwd=tmp_path, env=env).stderr == ""
    assert (tmp_path / "home" / "q" / "jobq.json").exists()
    assert not (tmp_path / "~").exists()
    assert ok("status", cwd=tmp_path, env=env).splitlines()[0] == f"queue {tmp_path / 'home' / 'q'}"


def _worker_events(*args: str, **kw) -> list[dict]:  # type: ignore[no-untyped-def]
    done = jobq("--log-format", "json", "worker", "--burst", *args, **kw)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stderr.splitlines()]


def test_a_worker_names_its_queue_and_warns_when_it_created_it(tmp_path):
    """worker.started says which queue; a worker that made a new queue says so, loudly."""
    events = _worker_events(cwd=tmp_path, env={"JOBQ_HOME": str(tmp_path / "q")})
    created = [e for e in events if e["event"] == "worker.queue_created"]
    assert len(created) == 1 and created[0]["level"] == "warning"
    assert created[0]["queue"] == str(tmp_path / "q") and created[0]["queue_from"] == "$JOBQ_HOME"
    assert "created a new, empty queue" in created[0]["message"]
    assert "(from $JOBQ_HOME)" in created[0]["message"]
    started = [e for e in events if e["event"] == "worker.started"]
    assert (started[0]["queue"], started[0]["queue_from"]) == (str(tmp_path / "q"), "$JOBQ_HOME")
    again = _worker_events("--dir", str(tmp_path / "q"), cwd=tmp_path)
    assert "worker.queue_created" not in [e["event"] for e in again]
    assert [(e["queue"], e["queue_from"]) for e in again if e["event"] == "worker.started"] == \
        [(str(tmp_path / "q"), "given")]
