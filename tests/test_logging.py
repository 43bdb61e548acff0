"""jobq's loggers import structlog only when an event is logged, configured as the CLI asked."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import child_env

SCRIPT = """
import sys
import jobq.cli, workers.worker
from jobq.execution import log
jobq.cli.configure_logging(fmt=sys.argv[1], level=20)
assert "structlog" not in sys.modules, "imported before any event"
assert log.bind(worker="w").is_enabled_for(20) and not log.is_enabled_for(10)
assert "structlog" not in sys.modules, "imported to answer is_enabled_for"
log.debug("not.written")
log.bind(worker="w").info("written", n=1)
print("structlog" in sys.modules)
"""


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_structlog_is_imported_at_the_first_event_for_the_console_format_only(fmt):
    """jobq writes its JSON lines itself; the console format is structlog's."""
    result = subprocess.run([sys.executable, "-c", SCRIPT, fmt], env=child_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("False\n" if fmt == "json" else "True\n")
    if fmt == "json":
        events = [json.loads(line) for line in result.stderr.splitlines()]
        assert [(e["event"], e["worker"], e["n"], e["level"]) for e in events] == \
            [("written", "w", 1, "info")]
    else:
        assert result.stderr.count("\n") == 1 and "written" in result.stderr, result.stderr


def _run_worker(qpath, *options: str, env: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess[str]:
    from conftest import jobq_command
    result = subprocess.run([*jobq_command(), "--log-format", "json", "worker", "--dir",
                             str(qpath), "--burst", *options], env=env or child_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def test_a_json_worker_loads_structlog_neither_in_its_supervisor_nor_in_its_child(qpath,
                                                                                 tmp_path):
    """Some 130 M instructions each (issue 19); the events are written all the same."""
    from jobq import Queue

    with Queue(qpath) as q:
        q.enqueue("logging_tasks:record_structlog")
    record = tmp_path / "record"
    result = _run_worker(qpath, "--import", "logging_tasks",
                         env={**child_env(), "LOGGING_TASKS_RECORD": str(record)})
    assert sorted(record.read_text().splitlines()) == ["child False", "supervisor False"]
    events = [json.loads(line)["event"] for line in result.stderr.splitlines()]
    assert events == ["worker.started", "job.succeeded", "worker.stopped"], result.stderr


@pytest.mark.parametrize("imported_by", ["supervisor", "child"])
def test_jobq_events_go_through_the_structlog_configuration_of_a_task_module(qpath,
                                                                              imported_by):
    """Imported by the supervisor (--import) or by the child for its job, a module configuring
    structlog gets jobq's events from then on, through its own processors."""
    from jobq import Queue

    with Queue(qpath) as q:
        q.enqueue("structlog_app_tasks:add", 1, 2)
    options = ("--import", "structlog_app_tasks") if imported_by == "supervisor" else ()
    result = _run_worker(qpath, *options)
    by_app = [json.loads(line) for line in result.stdout.splitlines()]
    by_jobq = [json.loads(line) for line in result.stderr.splitlines()]
    assert all(e["configured_by"] == "application" for e in by_app)
    assert "job.succeeded" in [e["event"] for e in by_app]
    expected = ["worker.started", "job.succeeded", "worker.stopped"]
    if imported_by == "supervisor":
        assert [e["event"] for e in by_app] == expected and by_jobq == []
    else:  # the supervisor never loaded the module: its own events stay jobq's
        assert [e["event"] for e in by_jobq] == ["worker.started", "worker.stopped"]
        assert "configured_by" not in by_jobq[0]


APP_IMPORTS_STRUCTLOG = """
import sys
import jobq.cli
from jobq._logging import get_logger
jobq.cli.configure_logging(fmt="json", level=20)
log = get_logger("jobq.test").bind(worker="w")
log.info("before")
import structlog  # the application's, left unconfigured: the command line's configuration
structlog.get_logger().info("application", n=1)
log.info("after")
structlog.reset_defaults()  # unconfigured again: jobq's own lines
log.info("reset")
log.debug("dropped")
"""


def test_an_application_importing_structlog_unconfigured_gets_the_command_lines_lines():
    """As when jobq configured structlog first: the application's events are JSON lines on
    stderr too, not structlog's default on stdout; jobq's lines are the same either way."""
    result = subprocess.run([sys.executable, "-c", APP_IMPORTS_STRUCTLOG], env=child_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(e["event"], e.get("worker"), e["level"]) for e in events] == [
        ("before", "w", "info"), ("application", None, "info"), ("after", "w", "info"),
        ("reset", "w", "info")]
    assert [list(e) for e in events] == [["worker", "event", "level", "timestamp"],
                                         ["n", "event", "level", "timestamp"]] + \
        [["worker", "event", "level", "timestamp"]] * 2


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


def _worker_events(qpath, *options: str) -> list[dict]:
    return [json.loads(line) for line in _run_worker(qpath, *options).stderr.splitlines()]


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
import sys
import jobq.cli
from jobq._logging import Logger
jobq.cli.configure_logging(fmt=sys.argv[1], level=20)
bound = Logger("t").bind(worker="w")
if sys.argv[1] == "console":
    assert bound.resolved() is bound, "nothing to resolve before the first event"
    bound.info("first", n=1)
else:  # jobq's own lines until structlog is configured, asked at every resolved()
    own = bound.resolved()
    assert type(own).__name__ == "JsonLogger" and own.is_enabled_for(20)
    own.info("first", n=1)
import structlog  # configured as the command line asked, on import
real = bound.resolved()
assert isinstance(real, structlog.BoundLoggerBase) and real.is_enabled_for(20), real
real.info("second", n=2)
from structlog.testing import capture_logs
with capture_logs() as captured:
    bound.info("captured")
assert [e["event"] for e in captured] == ["captured"], captured
"""


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_a_logger_resolves_to_the_logger_it_stands_for_with_the_same_events(fmt):
    """A worker child logs its batch's events through resolved(): same events, same fields."""
    result = subprocess.run([sys.executable, "-c", RESOLVED, fmt], env=child_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    if fmt == "console":
        assert len(lines) == 2 and "first" in lines[0] and "second" in lines[1], lines
        return
    events = [json.loads(line) for line in lines]
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
