"""The jobq console script, run for real in subprocesses: what it does with a queue directory
(the default engine): the demo, mistakes and missing queues, verify, compact, damaged logs (the
commands on every engine: tests/contract/test_cli_contract.py)."""

from __future__ import annotations

import json
import os
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
    from jobq.cli.parser import parser as _parser
    assert _parser().parse_args(["worker", "--compact-threshold", text]).compact_threshold == size


@pytest.mark.parametrize("args", [
    ("enqueue", "no_such_module_q:f"),
    ("enqueue", "jobtasks:add", "1", "--delay", "-5"),
    ("enqueue", "jobtasks:add", "--kwargs", "{bad"),
    ("worker", "--burst", "--import", "no_such_module_q"),
    ("worker", "--burst", "-c", "0"),
    ("limit", "set", "api"),
    ("limit", "set", "api", "--concurrency", "0"),
    ("schedule", "add", "nightly", "61 3 * * *", "jobtasks:add"),
    ("schedule", "add", "nightly", "0 3 * * *", "no_such_module_q:f"),
], ids=["unimportable-task", "negative-delay", "bad-kwargs", "bad-import", "zero-workers",
        "limit-without-limits", "zero-concurrency-limit", "bad-cron", "unimportable-schedule"])
def test_a_refused_command_creates_no_queue(tmp_path, args):
    """A mistake at a mistyped --dir leaves nothing behind (nor its parent directories), from
    every command that creates a queue where there is none."""
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


def test_workers_of_a_missing_queue_is_an_error(tmp_path):
    """Like every reading command, `workers` does not create a queue."""
    done = jobq("workers", "--dir", str(tmp_path / "none"))
    assert done.returncode == 1 and done.stderr.startswith("jobq: error: no queue at")
    assert not (tmp_path / "none").exists()
