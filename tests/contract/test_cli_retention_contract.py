"""``jobq enqueue --result-ttl/--failure-ttl`` on every engine, run for real in subprocesses: the
job is kept as long as asked (as with ``enqueue_call(result_ttl=..., failure_ttl=...)``), and a
bad value is one line, a non-zero exit and nothing stored."""

from __future__ import annotations

import pytest
from test_cli import jobq, ok
from test_retention_contract import TTL, gone, upkeep_later

from jobq import Queue, Status
from jobq.errors import JobNotFound
from jobq.testing import run_burst


def test_enqueued_jobs_are_kept_as_long_as_the_options_say(location: str) -> None:
    short = ok("enqueue", "--dir", location, "jobtasks:add", "1", "2",
               "--result-ttl", str(TTL)).strip()
    dead = ok("enqueue", "--dir", location, "jobtasks:boom", "--max-attempts", "1",
              "--failure-ttl", str(TTL), "--result-ttl", "3600").strip()
    dead_kept = ok("enqueue", "--dir", location, "jobtasks:boom", "--max-attempts", "1",
                   "--result-ttl", str(TTL)).strip()  # a result ttl does not touch the dead
    plain = ok("enqueue", "--dir", location, "jobtasks:add", "2", "2").strip()
    with Queue(location) as q:
        run_burst(q)
        upkeep_later(q)
        assert gone(q, short) and gone(q, dead)
        assert q.state(dead_kept).status is Status.DEAD and q.result(plain) == 4


def test_a_new_queue_made_by_the_enqueue_takes_the_ttl_too(location: str) -> None:
    """The first enqueue into a directory creates the queue (a check on a scratch queue
    first): the ttl reaches the real one."""
    job = ok("enqueue", "--dir", location, "jobtasks:add", "1", "1", "--result-ttl", "0").strip()
    with Queue(location) as q:
        run_burst(q)
        upkeep_later(q)
        with pytest.raises(JobNotFound):
            q.state(job)


@pytest.mark.parametrize("option,value", [
    ("--result-ttl", "-1"), ("--result-ttl", "soon"), ("--failure-ttl", "inf"),
    ("--failure-ttl", "nan"), ("--result-ttl", ""), ("--result-ttl", "7x")],
    ids=["negative", "word", "infinite", "nan", "empty", "unknown unit"])
def test_bad_ttls_are_one_line_exit_2_and_store_nothing(location: str, option: str,
                                                         value: str) -> None:
    ok("init", "--dir", location)
    done = jobq("enqueue", "--dir", location, "jobtasks:add", "1", "2", option, value)
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert done.stderr.count("\n") == 1 and "not a number of seconds" in done.stderr
    assert option in done.stderr, done.stderr
    with Queue(location) as q:
        assert sum(q.counts().values()) == 0
