"""``jobq limit set|list|remove`` and ``jobq enqueue --concurrency-key/--unique-key`` on every
engine, run for real in subprocesses: what they print and store, one line and a non-zero exit
for every bad input."""

from __future__ import annotations

import json

import pytest
from test_cli import jobq, ok

from jobq import Queue
from jobq.limits import Limit


def test_set_list_remove(location: str) -> None:
    out = ok("limit", "set", "--dir", location, "api", "--concurrency", "3", "--rate", "100",
             "--per", "60")
    assert out == "limit api: at most 3 running at once, at most 100 starts per 60 s\n"
    ok("limit", "set", "--dir", location, "mail", "--rate", "5", "--per", "1h")
    assert json.loads(ok("limit", "list", "--dir", location, "--json")) == [
        {"key": "api", "concurrency": 3, "rate": 100, "per": 60.0},
        {"key": "mail", "concurrency": None, "rate": 5, "per": 3600.0}]
    table = ok("limit", "list", "--dir", location).splitlines()
    assert table[0].split() == ["KEY", "CONCURRENCY", "RATE"] and len(table) == 3
    assert ok("limit", "remove", "--dir", location, "api") == \
        "limit api removed: its jobs run unlimited\n"
    with Queue(location) as q:
        assert q.limits() == [Limit("mail", None, 5, 3600.0)]
    ok("limit", "remove", "--dir", location, "mail")
    assert ok("limit", "list", "--dir", location) == "no limits\n"


@pytest.mark.parametrize("args,words", [
    (["api", "--concurrency", "0"], "concurrency must be an integer >= 1"),
    (["api", "--concurrency", "-2"], "concurrency must be an integer >= 1"),
    (["api", "--rate", "10"], "a rate needs its window"),
    (["api", "--per", "60"], "give rate too"),
    (["api"], "give --concurrency N"),
    (["", "--concurrency", "1"], "limit key must be 1 to 200"),
], ids=["zero", "negative", "rate-without-per", "per-without-rate", "nothing", "empty-key"])
def test_bad_limits_are_one_line_exit_1_and_store_nothing(location: str, args: list[str],
                                                          words: str) -> None:
    ok("init", "--dir", location)
    done = jobq("limit", "set", "--dir", location, *args)
    assert done.returncode == 1 and done.stdout == "", done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("jobq: error: ")
    assert words in done.stderr, done.stderr
    with Queue(location) as q:
        assert q.limits() == []


def test_usage_errors_and_unknown_keys(location: str) -> None:
    ok("init", "--dir", location)
    done = jobq("limit", "set", "--dir", location, "api", "--concurrency", "three")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    done = jobq("limit", "remove", "--dir", location, "nothing")
    assert done.returncode == 1 and done.stderr == \
        "jobq: error: no limit on key 'nothing' (jobq limit list shows them)\n"


def test_enqueue_with_keys(location: str) -> None:
    first = ok("enqueue", "--dir", location, "jobtasks:add", "1", "2", "--unique-key", "inv-1",
               "--concurrency-key", "api").strip()
    again = ok("enqueue", "--dir", location, "jobtasks:add", "3", "4", "--unique-key",
               "inv-1").strip()
    assert again == first
    with Queue(location) as q:
        assert q.counts()["queued"] == 1
        q.set_limit("api", concurrency=1)
        assert [c.job_id for c in q.engine.settle([], "w", 5)[1]] == [first]
    done = jobq("enqueue", "--dir", location, "jobtasks:add", "1", "--concurrency-key", "")
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "concurrency_key must be 1 to 200 printable characters" in done.stderr
