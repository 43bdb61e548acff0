"""Groups (``q.map``, ``q.group``, ``q.gather``, ``then=``) on every engine, run by real worker
processes: results in item order, chunks flattened, failures named, and the final step run once
whatever the members ended as."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobq import Group, Queue, Status
from jobq.errors import (GroupNotFound, InvalidArgument, InvalidJob, JobCancelled, JobFailed,
                         SignatureMismatch, WaitTimeout)


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_a_map_of_items_gathers_in_item_order(q: Queue, location: str, workers):
    g = q.map("grouptasks:square", range(20))
    assert isinstance(g, Group) and (g.jobs, g.items) == (20, 20)
    st = q.group(g.id)
    assert (st.jobs, st.items, st.chunk_size, st.done) == (20, 20, 1, False)
    assert st.counts == {"queued": 20} and st.progress == 0.0 and st.then_job is None
    assert workers(location, "--burst", "-c", "2").wait() == 0
    assert q.gather(g.id, timeout=10) == [i * i for i in range(20)]
    st = q.group(g.id)
    assert st.counts == {"succeeded": 20} and st.progress == 1.0 and st.done


def test_chunks_call_fn_per_item_and_gather_flattens_them(q: Queue, location: str, workers):
    g = q.map("grouptasks:square", iter(range(10)), chunk_size=4)
    assert (g.jobs, g.items) == (3, 10)  # 4 + 4 + 2
    assert q.state(g.id + ".2").status is Status.QUEUED
    assert workers(location, "--burst").wait() == 0
    assert q.state(g.id + ".2").result == [64, 81]
    assert q.gather(g.id, timeout=10) == [i * i for i in range(10)]
    assert g.gather() == [i * i for i in range(10)]


def test_gather_names_the_first_failed_member_or_puts_errors_in_place(q: Queue, location: str,
                                                                      workers):
    g = q.map("grouptasks:fail_on_3", range(6), max_attempts=1)
    c = q.map("grouptasks:fail_on_3", range(6), chunk_size=2, max_attempts=1)
    assert workers(location, "--burst").wait() == 0
    with pytest.raises(JobFailed) as err:
        q.gather(g.id, timeout=10)
    assert err.value.job_id == g.id + ".3" and "item 3 is bad" in str(err.value)
    got = q.gather(g.id, return_exceptions=True)
    assert got[:3] == [0, 1, 4] and got[4:] == [16, 25]
    assert isinstance(got[3], JobFailed) and got[3].job_id == g.id + ".3"
    got = q.gather(c.id, return_exceptions=True)  # the chunk (2, 3) failed: both items
    assert got[:2] == [0, 1] and got[4:] == [16, 25]
    assert all(isinstance(e, JobFailed) and e.job_id == c.id + ".1" for e in got[2:4])
    assert q.group(g.id).counts == {"succeeded": 5, "dead": 1}


def test_then_runs_once_after_every_member_ended_even_a_failed_one(q: Queue, location: str,
                                                                    workers, tmp_path):
    out = tmp_path / "then.jsonl"
    g = q.map("grouptasks:fail_on_3", range(8), max_attempts=1,
              then=("grouptasks:gather_into", (location, str(out))))
    then = q.group(g.id).then_job
    assert then is not None and q.state(then).status is Status.WAITING
    assert workers(location, "--burst", "-c", "2").wait() == 0
    assert q.state(then).status is Status.SUCCEEDED
    (line,) = out.read_text().splitlines()
    assert '"results": [0, 1, 4, "error", 16, 25, 36, 49]' in line
    assert q.group(g.id).done


def test_then_runs_after_a_cancelled_member(q: Queue, location: str, workers, tmp_path):
    out = tmp_path / "then.txt"
    g = q.map("grouptasks:square", range(3), then=("grouptasks:note_then", (str(out),)))
    assert q.cancel(g.id + ".1")
    assert workers(location, "--burst").wait() == 0
    assert lines(out) == [g.id]
    with pytest.raises(JobCancelled):
        q.gather(g.id)
    got = q.gather(g.id, return_exceptions=True)
    assert got[0] == 0 and got[2] == 4 and isinstance(got[1], JobCancelled)


def test_an_empty_map_is_done_at_once_and_its_then_runs(q: Queue, location: str, workers,
                                                        tmp_path):
    out = tmp_path / "then.txt"
    g = q.map("grouptasks:square", [], then=("grouptasks:note_then", (str(out),)))
    st = q.group(g.id)
    assert (g.jobs, st.jobs, st.done, st.progress) == (0, 0, True, 1.0)
    assert q.state(st.then_job).status is Status.QUEUED  # due at once, not waiting
    assert q.gather(g.id) == []
    assert workers(location, "--burst").wait() == 0
    assert lines(out) == [g.id]


def test_then_takes_a_bare_task_with_the_group_id(q: Queue, location: str, workers):
    g = q.map("grouptasks:square", [1, 2], then="grouptasks:identity")
    assert workers(location, "--burst").wait() == 0
    assert q.result(q.group(g.id).then_job, timeout=10) == g.id


def test_a_retried_member_counts_once_and_then_still_runs_once(q: Queue, location: str,
                                                               workers, tmp_path):
    out = tmp_path / "then.txt"
    g = q.map("grouptasks:square", range(3), then=("grouptasks:note_then", (str(out),)))
    assert q.cancel(g.id + ".0")
    assert q.retry(g.id + ".0")  # back before the group is done: it counts when it ends again
    assert workers(location, "--burst").wait() == 0
    assert lines(out) == [g.id] and q.gather(g.id) == [0, 1, 4]
    assert q.group(g.id).ended == 3  # the cancel counted, the retry took it back
    assert q.retry(g.id + ".0") is False  # succeeded: nothing to retry


def test_unknown_groups_and_bad_arguments_are_refused(q: Queue):
    for gid in ("grp-nope", "nope", ""):
        with pytest.raises(GroupNotFound):
            q.group(gid)
        with pytest.raises(GroupNotFound):
            q.gather(gid)
    with pytest.raises(KeyError):  # GroupNotFound is a KeyError too
        q.group("grp-nope")
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(InvalidArgument, match="chunk_size"):
            q.map("grouptasks:square", [1], chunk_size=bad)
    with pytest.raises(InvalidJob, match="items"):
        q.map("grouptasks:square", 5)
    with pytest.raises(InvalidJob, match="items"):
        q.map("grouptasks:square", "abc")
    with pytest.raises(SignatureMismatch):
        q.map("jobtasks:add", [1])  # add(a, b) cannot take one item
    with pytest.raises(SignatureMismatch, match="group id"):
        q.map("grouptasks:square", [1], then=("grouptasks:square", (1,)))
    with pytest.raises(InvalidJob, match="then"):
        q.map("grouptasks:square", [1], then=("grouptasks:square", (), 3))
    with pytest.raises(InvalidJob, match="then"):
        q.map("grouptasks:square", [1], then=42)
    with pytest.raises(InvalidJob, match="priority"):
        q.map("grouptasks:square", [1], priority="high")
    assert sum(q.counts().values()) == 0  # nothing was stored by any of these
    g = q.map("grouptasks:square", [1])
    with pytest.raises(WaitTimeout):
        q.gather(g.id, timeout=0.05)
    with pytest.raises(InvalidArgument):
        q.gather(g.id, timeout=-1)


def test_map_options_reach_every_member(q: Queue):
    g = q.map("grouptasks:square", range(3), priority=5, delay=1000, max_attempts=7, timeout=9)
    for pos in range(3):
        p = q.payload(f"{g.id}.{pos}")
        assert (p.priority, p.max_attempts, p.timeout, p.args) == (5, 7, 9.0, (pos,))
        assert p.run_at - p.created_at == pytest.approx(1000)


def test_the_cli_lists_a_groups_members_and_shows_the_group(q: Queue, location: str, workers):
    from test_cli import jobq, ok
    import json
    g = q.map("grouptasks:fail_on_3", range(5), max_attempts=1, then="grouptasks:identity")
    other = q.enqueue("grouptasks:square", 1)
    listed = json.loads(ok("list", "--dir", location, "--group", g.id, "--json"))
    assert sorted(r["job_id"] for r in listed) == [f"{g.id}.{i}" for i in range(5)]
    assert other not in {r["job_id"] for r in listed}
    assert workers(location, "--burst").wait() == 0
    dead = json.loads(ok("list", "--dir", location, "--group", g.id, "--status", "dead",
                         "--json"))
    assert [r["job_id"] for r in dead] == [g.id + ".3"]
    shown = json.loads(ok("show", "--dir", location, g.id, "--json"))
    assert shown["counts"] == {"succeeded": 4, "dead": 1} and shown["done"]
    assert shown["then"] == {"job_id": g.id + ":then", "status": "succeeded"}
    text = ok("show", "--dir", location, g.id)
    assert "1 dead, 4 succeeded" in text and "100%" in text and g.id + ":then" in text
    for args in (["list", "--group", "grp-nope"], ["show", "grp-nope"]):
        done = jobq(*args[:1], "--dir", location, *args[1:])
        assert done.returncode == 1 and done.stderr.startswith("jobq: error: ")
        assert done.stderr.count("\n") == 1
