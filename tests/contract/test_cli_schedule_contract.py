"""``jobq schedule add|list|remove`` on every engine, run for real in subprocesses: what they
print, what they store, and one line with a non-zero exit for every bad input."""

from __future__ import annotations

import json
import time

import pytest
from periodic_kit import ANCHOR, fake_clock, fired, minute
from test_cli import jobq, ok

from jobq import Queue, Status
from jobq.errors import JobNotFound


def test_add_list_remove(location: str) -> None:
    ok("init", "--dir", location)
    out = ok("schedule", "add", "--dir", location, "report", "0 9 * * *", "jobtasks:add",
             "1", "2", "--tz", "Europe/Berlin", "--misfire", "once")
    assert out.startswith("schedule report: next at ") and " 09:00:00 CET (" in out
    ok("schedule", "add", "--dir", location, "tick", "*/5 * * * *", "jobtasks:echo",
       "--kwargs", '{"k": [1]}', "--overlap", "allow")
    listed = json.loads(ok("schedule", "list", "--dir", location, "--json"))
    assert [s["name"] for s in listed] == ["report", "tick"]
    report, tick = listed
    assert (report["cron"], report["tz"], report["task"], report["args"], report["misfire"],
            report["overlap"]) == ("0 9 * * *", "Europe/Berlin", "jobtasks:add", [1, 2],
                                   "once", "skip")
    assert report["next"].endswith("T08:00:00Z")  # 09:00 CET in winter
    assert (tick["kwargs"], tick["overlap"], tick["last_job"]) == ({"k": [1]}, "allow", None)
    table = ok("schedule", "list", "--dir", location).splitlines()
    assert table[0].split()[:4] == ["NAME", "CRON", "TZ", "NEXT"] and len(table) == 3
    assert ok("schedule", "remove", "--dir", location, "tick") == "schedule tick removed\n"
    with Queue(location) as q:
        assert [s.schedule.name for s in q.engine.schedules.all()] == ["report"]
    ok("schedule", "remove", "--dir", location, "report")
    assert ok("schedule", "list", "--dir", location) == "no schedules\n"


def test_the_cron_expression_may_come_as_an_option(location: str) -> None:
    """``add NAME TASK [ARG ...] --cron EXPR``, as RQ and Celery users write it."""
    ok("init", "--dir", location)
    ok("schedule", "add", "--dir", location, "report", "jobtasks:add", "1", "2",
       "--cron", "0 9 * * *", "--tz", "Europe/Berlin")
    (report,) = json.loads(ok("schedule", "list", "--dir", location, "--json"))
    assert (report["cron"], report["tz"], report["task"], report["args"]) == (
        "0 9 * * *", "Europe/Berlin", "jobtasks:add", [1, 2])


@pytest.mark.parametrize("args,words", [
    (["s", "61 * * * *", "jobtasks:add"], "bad cron expression '61 * * * *'"),
    (["s", "* * * * *", "jobtasks:add", "--tz", "Mars/Base"], "unknown time zone 'Mars/Base'"),
    (["bad name", "* * * * *", "jobtasks:add"], "name must be"),
    (["s", "* * * * *", "nowhere_mod:f"], "cannot find module 'nowhere_mod'"),
    (["s", "* * * * *", "jobtasks:add", "--kwargs", "[1]"], "--kwargs must be a JSON object"),
    (["s", "--every", "5", "jobtasks:add"], "duration '5' has no unit"),
    (["s", "--every", "soon", "jobtasks:add"], "not a duration: 'soon'"),
    (["s", "--every", "0s", "jobtasks:add"], "at least 1"),
    (["s", "--every", "1.5s", "jobtasks:add"], "whole number of seconds"),
    (["s", "--every", "5m", "jobtasks:add", "--tz", "Europe/Berlin"], "does not apply"),
    (["s", "* * * * *"], "give a cron expression and a task"),
    (["s", "jobtasks:add", "--cron", "* * * * *", "--every", "5m"], "not both"),
    (["s", "jobtasks:add", "--cron", "61 * * * *"], "bad cron expression '61 * * * *'"),
], ids=["cron", "tz", "name", "task", "kwargs", "every-no-unit", "every-text", "every-zero",
        "every-fraction", "every-tz", "no-task", "cron-and-every", "cron-option"])
def test_bad_input_is_one_line_exit_1_and_stores_nothing(location: str, args: list[str],
                                                         words: str) -> None:
    ok("init", "--dir", location)
    done = jobq("schedule", "add", "--dir", location, *args)
    assert done.returncode == 1 and done.stdout == "", done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("jobq: error: ")
    assert words in done.stderr, done.stderr
    with Queue(location) as q:
        assert q.engine.schedules.all() == []


def test_usage_errors_and_unknown_names(location: str) -> None:
    ok("init", "--dir", location)
    done = jobq("schedule", "add", "--dir", location, "s", "* * * * *", "jobtasks:add",
                "--misfire", "sometimes")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    done = jobq("schedule", "remove", "--dir", location, "nothing")
    assert done.returncode == 1 and done.stderr == \
        "jobq: error: no schedule named 'nothing' (jobq schedule list shows them)\n"


def test_a_schedule_added_from_the_command_line_fires_in_a_worker(location: str,
                                                                  monkeypatch) -> None:
    ok("init", "--dir", location)
    ok("schedule", "add", "--dir", location, "sum", "* * * * *", "jobtasks:add", "40", "2")
    with Queue(location) as q:  # as if it was added before 00:00:30 and a worker came at 00:01
        (stored,) = q.engine.schedules.all()
        assert q.engine.schedules.advance("sum", stored.next_at, ANCHOR + 30)
    clock = fake_clock(monkeypatch, speed=1, anchor=ANCHOR + 31)
    ok("worker", "--dir", location, "--burst", env={"JOBQ_SCHEDULE_CLOCK": clock})
    with Queue(location) as q:
        assert fired(q, "sum") == [minute("sum", 1)]
        assert q.state(minute("sum", 1)).status is Status.SUCCEEDED
        assert q.result(minute("sum", 1)) == 42
    listed = json.loads(ok("schedule", "list", "--dir", location, "--json"))
    assert listed[0]["last_job"] == minute("sum", 1)


def test_a_schedule_s_ttls_are_stored_and_reach_the_jobs_it_fires(location: str,
                                                                  monkeypatch) -> None:
    ok("init", "--dir", location)
    ok("schedule", "add", "--dir", location, "sum", "* * * * *", "jobtasks:add", "40", "2",
       "--result-ttl", "0", "--failure-ttl", "1h")  # seconds, or with a unit
    (listed,) = json.loads(ok("schedule", "list", "--dir", location, "--json"))
    assert (listed["result_ttl"], listed["failure_ttl"]) == (0, 3600)
    head, row = ok("schedule", "list", "--dir", location).splitlines()
    assert row[head.index("KEPT"):head.index("LAST JOB")].strip() == "result 0s, failure 1h"
    with Queue(location) as q:
        (stored,) = q.engine.schedules.all()
        assert q.engine.schedules.advance("sum", stored.next_at, ANCHOR + 30)
    clock = fake_clock(monkeypatch, speed=1, anchor=ANCHOR + 31)
    ok("worker", "--dir", location, "--burst", env={"JOBQ_SCHEDULE_CLOCK": clock})
    (listed,) = json.loads(ok("schedule", "list", "--dir", location, "--json"))
    assert listed["last_job"] == minute("sum", 1)  # fired, and then purged by its ttl:
    with Queue(location) as q:
        time.sleep(0.05)
        q.engine.expire(100)  # (unless the worker's upkeep did already)
        with pytest.raises(JobNotFound):
            q.state(minute("sum", 1))
    done = jobq("schedule", "add", "--dir", location, "sum", "* * * * *", "jobtasks:add",
                "--result-ttl", "-1")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "--result-ttl: not a number of seconds" in done.stderr


def test_an_interval_schedule_from_the_command_line(location: str) -> None:
    """--every in place of the cron expression: the first word after NAME is the task."""
    ok("init", "--dir", location)
    out = ok("schedule", "add", "--dir", location, "five", "--every", "5m", "jobtasks:add",
             "1", "2")
    assert out.startswith("schedule five: next at ") and " UTC (" in out
    ok("schedule", "add", "--dir", location, "--every", "90s", "bare", "jobtasks:noop")
    listed = json.loads(ok("schedule", "list", "--dir", location, "--json"))
    bare, five = listed
    assert (five["cron"], five["every"], five["when"], five["task"], five["args"], five["tz"]) \
        == (None, 300, "every 5m", "jobtasks:add", [1, 2], "UTC")
    assert five["next_at"] % 300 == 0 and (bare["every"], bare["args"]) == (90, [])
    table = ok("schedule", "list", "--dir", location).splitlines()
    assert table[1].split()[:3] == ["bare", "every", "90s"]
    assert table[2].split()[:3] == ["five", "every", "5m"]


def test_options_are_taken_between_the_positionals(location: str) -> None:
    """``add NAME --every 5m TASK ARG --tz X ARG``: argparse alone stopped at the first option
    after a positional and called the rest unrecognized."""
    ok("init", "--dir", location)
    ok("schedule", "add", "--dir", location, "tick", "--every", "5m", "jobtasks:add", "1",
       "--misfire", "once", "2")
    ok("schedule", "add", "report", "0 9 * * *", "--tz", "Europe/Berlin", "jobtasks:add",
       "--dir", location, "3", "4")
    listed = {s["name"]: s for s in json.loads(ok("schedule", "list", "--dir", location,
                                                  "--json"))}
    assert (listed["tick"]["task"], listed["tick"]["args"], listed["tick"]["misfire"]) == (
        "jobtasks:add", [1, 2], "once")
    assert (listed["report"]["tz"], listed["report"]["args"]) == ("Europe/Berlin", [3, 4])
    assert jobq("schedule", "add", "--dir", location, "x", "--bogus", "1").returncode == 2
