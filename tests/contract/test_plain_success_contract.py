"""A success without a result (a plain success: each engine stores no whole snapshot of it,
jobq.state.plain_success) reads back whole on every engine, through the API and the commands,
releases its dependents, and is purged by its ttl like any other."""

from __future__ import annotations

import json
import time

import pytest
from test_cli import ok

from jobq import Queue, Status
from jobq.errors import JobNotFound
from jobq.testing import run_burst
from workers import Worker

NONE = "jobtasks:record_call"  # returns its argument
TTL = 0.5


def test_a_plain_success_reads_back_whole_everywhere(location: str) -> None:
    with Queue(location) as q:
        plain = q.enqueue(NONE, None)
        child = q.enqueue_call("jobtasks:add", (1, 2), depends_on=[plain])
        assert run_burst(q) == 2
        state = q.state(plain)
        assert (state.status, state.result, state.attempts, state.progress) == (
            Status.SUCCEEDED, None, 1, 1.0)
        assert state.started_at is not None and state.finished_at == state.updated_at
        assert state.started_at <= state.finished_at
        assert (state.crashes, state.errors, state.error, state.checkpoint) == (0, [], None, None)
        assert q.wait(plain) == state and q.result(plain) is None
        assert [s for s in q.jobs(Status.SUCCEEDED) if s.job_id == plain] == [state]
        assert q.result(child) == 3  # its parent's plain success released it
        assert q.retry(plain) is False  # only dead or cancelled jobs are retried
    with Queue(location) as again:  # a new connection reads the stored job, not a cache
        assert again.state(plain) == state
    shown = json.loads(ok("show", "--dir", location, plain, "--json"))["state"]
    assert (shown["status"], shown["result"], shown["finished_at"]) == (
        "succeeded", None, state.finished_at)
    assert ok("wait", "--dir", location, plain).strip().startswith(f"{plain} succeeded")
    listed = json.loads(ok("list", "--dir", location, "--status", "succeeded", "--json"))
    assert {r["job_id"] for r in listed} == {plain, child}


def test_a_plain_success_is_purged_by_its_result_ttl(location: str) -> None:
    with Queue(location) as q:
        short = q.enqueue_call(NONE, (None,), result_ttl=TTL)
        kept = q.enqueue_call(NONE, (None,), result_ttl=None)
        run_burst(q)
        state = q.state(kept)
        time.sleep(TTL + 0.3)
        Worker(q).run(burst=True)  # its first turn runs the upkeep
        with pytest.raises(JobNotFound):
            q.state(short)
        assert q.state(kept) == state and q.counts()["succeeded"] == 1
