"""jobq's loggers import structlog only when an event is logged, configured as the CLI asked."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from conftest import child_env

SCRIPT = """
import sys
import jobq.cli, workers.worker
from jobq.execution import log
jobq.cli.configure_logging(fmt="json", level=20)
assert "structlog" not in sys.modules, "imported before any event"
assert log.bind(worker="w").is_enabled_for(20) and not log.is_enabled_for(10)
assert "structlog" not in sys.modules, "imported to answer is_enabled_for"
log.debug("not.written")
log.bind(worker="w").info("written", n=1)
assert "structlog" in sys.modules
"""


def test_structlog_is_imported_at_the_first_event_with_the_cli_configuration():
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=child_env(), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(e["event"], e["worker"], e["n"], e["level"]) for e in events] == \
        [("written", "w", 1, "info")]


def test_a_batch_of_events_is_written_in_whole_lines_of_at_most_pipe_buf_per_write():
    """Events logged inside batched() go out together, each write whole lines within PIPE_BUF
    (atomic on a pipe shared with other processes); outside, one write per event."""
    import io

    from jobq import _logging

    class Recording(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.writes: list[str] = []

        def write(self, text: str) -> int:
            self.writes.append(text)
            return super().write(text)

    out = Recording()
    writer = _logging.writer_factory(out)()
    lines = [f'{{"event": "job.succeeded", "n": {i}, "pad": "{"x" * (i % 300)}"}}'
             for i in range(100)]
    with _logging.batched():
        for line in lines:
            writer.msg(line)
        assert out.writes == []  # nothing written before the batch ends
    assert out.getvalue().splitlines() == lines
    assert 1 < len(out.writes) < 100
    assert all(w.endswith("\n") and len(w) <= 4096 for w in out.writes)
    writer.msg("single")
    assert out.writes[-1] == "single\n"


CHILD_IMPORTS = """
import os, sys
supervisor, found = os.getpid(), sys.argv[2]
def hook(event, args):  # audit events: an "import" for every module a process loads
    if event == "import" and os.getpid() != supervisor:
        with open(found, "a") as out:
            out.write(args[0] + "\\n")
sys.addaudithook(hook)
if sys.argv[3] == "cli":
    import jobq.cli
    assert jobq.cli.main(["worker", "--burst", "--dir", sys.argv[1], "--import", "jobtasks"]) == 0
else:
    import jobtasks
    from jobq import Queue
    from workers import Worker
    assert Worker(Queue(sys.argv[1])).run(burst=True) == 2
"""


@pytest.mark.parametrize("started_by", ["cli", "library"])
def test_a_workers_children_import_nothing_structlog_included(tmp_path, started_by):
    """Their supervisor imported structlog before forking them: each child would otherwise
    import it at its first event, some 130 M instructions, while its supervisor imports it too
    (issue 19). The events are still written, by the child."""
    from jobq import Queue

    with Queue(tmp_path / "q") as q:
        q.enqueue("jobtasks:add", 1, 2)
        q.enqueue("jobtasks:add", 3, 4)
    found = tmp_path / "imported"
    result = subprocess.run([sys.executable, "-c", CHILD_IMPORTS, str(tmp_path / "q"), str(found),
                             started_by], env=child_env(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert not found.exists(), sorted(set(found.read_text().split()))
    events = [json.loads(line)["event"] for line in result.stderr.splitlines()]
    assert events.count("job.succeeded") == 2 and "worker.started" in events


LIBRARY_WORKER = """
import sys
{configure}
from jobq import Queue
from workers import Worker
q = Queue(sys.argv[1])
q.enqueue("jobtasks:add", 1, 2)
assert Worker(q).run(burst=True) == 1
"""

APP_CONFIGURED = """
import logging, structlog
structlog.configure(processors=[structlog.processors.add_log_level,
                                structlog.processors.JSONRenderer()],
                    wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
                    logger_factory=structlog.WriteLoggerFactory(sys.stdout))
"""


def _run_library_worker(tmp_path, configure: str) -> subprocess.CompletedProcess[str]:
    script = LIBRARY_WORKER.format(configure=configure)
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "q")], env=child_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result


def test_a_library_worker_with_structlog_unconfigured_logs_info_and_above_to_stderr(tmp_path):
    """structlog's own default would print every event, a debug line per claim included, into
    the application's stdout."""
    result = _run_library_worker(tmp_path, configure="")
    assert result.stdout == ""
    events = [json.loads(line) for line in result.stderr.splitlines()]  # not a tty: JSON
    names = [e["event"] for e in events]
    # The child may log its job before the supervisor logs that it started: two processes.
    assert sorted(names[:2]) == ["job.succeeded", "worker.started"]
    assert names[2:] == ["worker.stopped"]
    assert {e["level"] for e in events} == {"info"}
    assert all("timestamp" in e for e in events)


def test_a_library_worker_follows_the_applications_structlog_configuration(tmp_path):
    """The supervisor and its child write to one stdout: the application's logger must write
    each line in one write (structlog's WriteLogger; its PrintLogger writes the newline apart,
    so two processes' lines could run together under load)."""
    result = _run_library_worker(tmp_path, configure=APP_CONFIGURED)
    events = [json.loads(line) for line in result.stdout.splitlines()]
    names = [e["event"] for e in events]
    assert "job.claimed" in names and "job.succeeded" in names  # debug let through, to stdout
    assert result.stderr == ""


LATE_CONFIGURATION = """
import io, sys
from jobq import _logging
from structlog.testing import capture_logs
logger = _logging.get_logger("jobq.test").bind(worker="w")
logger.debug("dropped")
sys.stderr = io.StringIO()  # the default writes to the sys.stderr of the moment
logger.info("default.event", n=1)
written = sys.stderr.getvalue()
sys.stderr = sys.__stderr__
assert '"default.event"' in written and "dropped" not in written, written
with capture_logs() as captured:
    logger.debug("captured.event", n=2)
assert [(e["event"], e["worker"], e["log_level"]) for e in captured] == \
    [("captured.event", "w", "debug")], captured
"""


def test_jobq_events_follow_a_configuration_made_after_the_first_event():
    """The unconfigured default is asked for at every event, so configuring later takes over."""
    result = subprocess.run([sys.executable, "-c", LATE_CONFIGURATION], env=child_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == result.stderr == ""


def test_the_json_encoder_writes_what_json_dumps_with_repr_as_default_writes():
    from jobq import _logging

    encode = _logging.json_encoder()
    events = [
        {"event": "job.succeeded", "job_id": "18eaf", "attempt": 1, "duration": 3.4e-05,
         "ok": True, "none": None, "nan": float("nan"), "inf": float("-inf")},
        {"event": "x", "nested": {"a": [1, 2.5, "é", {"b": None}]}, 3: "int key", "t": (1, 2)},
        {"event": "odd", "obj": object(), "bytes": b"\x00\xff", "set": {1}},
        {"event": "quotes \" and \\ and \n newline", "ünïcode": "日本"},
    ]
    for event in events:
        assert encode(event) == json.dumps(event, default=repr)


def test_the_iso_time_stamper_writes_utc_with_microseconds():
    import re
    import time
    from datetime import datetime, timezone

    from jobq import _logging

    stamper = _logging.IsoTimeStamper()
    for _ in range(3):  # the second is cached: a later call must still read the clock
        before = time.time()
        stamp = stamper(None, "info", {})["timestamp"]
        after = time.time()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp), stamp
        at = datetime.fromisoformat(stamp[:-1]).replace(tzinfo=timezone.utc).timestamp()
        assert before - 1e-6 <= at <= after + 1e-6
        time.sleep(0.6)


def _worker_events(qpath, *options: str) -> list[dict]:
    from conftest import jobq_command
    result = subprocess.run([*jobq_command(), "--log-format", "json", *options, "worker",
                             "--dir", str(qpath), "--burst"], env=child_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stderr.splitlines()]


def test_failure_events_say_which_exception_and_its_message(qpath):
    """job.failed and job.dead name the exception's type and message; the traceback only at
    debug level, and success events carry none of it."""
    from jobq import Queue

    with Queue(qpath) as q:
        q.enqueue_call("jobtasks:boom", args=("broken input",), max_attempts=2)
        q.enqueue("jobtasks:add", 1, 2)
    events = {e["event"]: e for e in _worker_events(qpath)}
    for name in ("job.failed", "job.dead"):
        assert (events[name]["error_type"], events[name]["error"]) == ("ValueError",
                                                                       "broken input")
        assert "traceback" not in events[name]
    assert not {"error", "error_type"} & set(events["job.succeeded"])
    with Queue(qpath) as q:
        q.enqueue_call("jobtasks:boom", args=("again",), max_attempts=1)
    dead = [e for e in _worker_events(qpath, "--log-level", "debug") if e["event"] == "job.dead"]
    assert dead[0]["error"] == "again"
    assert "Traceback" in dead[0]["traceback"] and "ValueError: again" in dead[0]["traceback"]


def test_a_job_the_worker_kills_has_its_reason_in_the_event(qpath):
    """A failure jobq decides (here a timeout) has no exception type, and its recorded reason."""
    from jobq import Queue

    with Queue(qpath) as q:
        q.enqueue_call("jobtasks:sleep_for", args=(60,), max_attempts=1, timeout=0.5)
    dead = [e for e in _worker_events(qpath) if e["event"] == "job.dead"]
    assert dead[0]["error_type"] is None
    assert dead[0]["error"].startswith("timed out after 0.5 s"), dead[0]


RUN_BURST = """
import sys
from structlog.testing import capture_logs
from jobq.testing import run_burst, temporary_queue
with temporary_queue() as q:
    q.enqueue("jobtasks:add", 1, 2)
    q.enqueue_call("jobtasks:boom", max_attempts=1)
    assert run_burst(q) == 2
    q.enqueue("jobtasks:add", 3, 4)
    with capture_logs() as captured:
        run_burst(q)
assert [e["event"] for e in captured] == ["job.succeeded"], captured
"""


def test_run_burst_writes_no_job_events_to_stderr_unless_structlog_is_configured():
    """A user's test output is not a worker's log; a test that configures structlog (here
    capture_logs) still sees the events."""
    result = subprocess.run([sys.executable, "-c", RUN_BURST], env=child_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and result.stdout == ""


RESOLVED = """
import jobq.cli, structlog
from jobq._logging import Logger
jobq.cli.configure_logging(fmt="json", level=20)
bound = Logger("t").bind(worker="w")
assert bound.resolved() is bound, "nothing to resolve before the first event"
bound.info("first", n=1)
real = bound.resolved()
assert not isinstance(real, Logger) and real.is_enabled_for(20)
real.info("second", n=2)
"""


def test_a_logger_resolves_to_its_structlog_logger_once_made_with_the_same_events():
    """A worker child logs its batch's events through resolved(): same events, same fields."""
    result = subprocess.run([sys.executable, "-c", RESOLVED], env=child_env(), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert [sorted(e) for e in events] == [["event", "level", "n", "timestamp", "worker"]] * 2
    assert [(e["event"], e["worker"], e["n"]) for e in events] == [("first", "w", 1),
                                                                   ("second", "w", 2)]


def test_a_success_event_has_the_fields_and_order_of_every_other_job_event():
    """log_transition writes a worker's job.succeeded without building its fields first: the
    same fields in the same order as its general path writes them, duration last."""
    from structlog import get_logger
    from structlog.testing import capture_logs

    from jobq.execution import log_transition
    from jobq.state import JobState, Status

    state = JobState(job_id="j1", task="jobtasks:add", status=Status.SUCCEEDED, attempts=2)
    with capture_logs() as fast:
        log_transition(state, 0.12345678, logger=get_logger())
    with capture_logs() as general:  # no duration: the general path's fields
        log_transition(state, None, logger=get_logger())
    assert list(fast[0].items()) == [
        ("job_id", "j1"), ("task", "jobtasks:add"), ("attempt", 2), ("status", "succeeded"),
        ("duration", 0.123457), ("event", "job.succeeded"), ("log_level", "info")]
    assert [k for k in fast[0] if k != "duration"] == list(general[0])


DIRECT = """
import structlog
import jobq.cli
from jobq._logging import DirectJson, Logger, batched, direct_json
from jobq.execution import log_transition
from jobq.state import JobState, Status
jobq.cli.configure_logging(fmt="json", level=20)
states = [JobState(job_id=job_id, task=task, status=Status.SUCCEEDED, attempts=2)
          for job_id, task in (("j1", "jobtasks:add"), ("j\\u00e9\\"\\\\1\\n", "t\\x7f"))]
for context in ({"worker": "w"}, {}, {"worker": "w", "job_id": "the context's, overwritten"}):
    bound = Logger("t").bind(**context)
    bound.info("first")
    real = bound.resolved() if context else structlog.get_logger("t").bind()
    direct = direct_json(real)
    assert type(direct) is DirectJson, direct
    with batched():
        for logger in (real, direct):
            for state in states:
                for duration in (0.12345678, 3, 1.5e-05, float("nan")):
                    log_transition(state, duration, logger=logger)
            logger.info("odd %s", "args", n=float("nan"), nested={"a": [1, None]})
            logger.warning("warned", n=3)
            assert logger.is_enabled_for(20) and not logger.is_enabled_for(10)
with structlog.testing.capture_logs() as captured:
    assert direct_json(Logger("t").bind(worker="w").resolved()) is not direct
    assert type(direct_json(structlog.get_logger())) is not DirectJson
    structlog.get_logger().info("captured")
assert [e["event"] for e in captured] == ["captured"], captured
"""


def test_the_direct_json_logger_writes_the_lines_of_its_structlog_chain():
    """A worker child's events through direct_json are the very lines structlog writes (the
    time stamps aside), in the same order; any other chain (capture_logs') keeps its logger."""
    result = subprocess.run([sys.executable, "-c", DIRECT], env=child_env(), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    stamp = re.compile(r'"timestamp": "[^"]*"')
    lines = result.stderr.splitlines()
    assert len(lines) == 3 * (1 + 2 * 10)
    assert all(len(stamp.findall(line)) == 1 for line in lines)
    for n in range(3):  # a context: its first event, then each logger's ten
        plain = [stamp.sub("", line) for line in lines[21 * n + 1:21 * (n + 1)]]
        assert plain[:10] == plain[10:], plain
    events = [json.loads(line) for line in lines]
    assert events[1]["job_id"] == "j1" and events[5]["job_id"] == 'j\u00e9"\\1\n'
    assert events[5]["task"] == "t\x7f" and "\\u00e9" in lines[5]
    assert [e["duration"] for e in events[1:4]] == [0.123457, 3, 1.5e-05]
    assert '"duration": 1.5e-05,' in lines[3] and '"duration": NaN,' in lines[4]
    assert events[43]["job_id"] == "j1"  # the field, not the context's
