"""Dependencies (``depends_on``) on every engine, run by real worker processes: a dependent
waits, runs once its parents succeeded, reads their results, and never waits forever."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import wait_until

from jobq import Queue, Status
from jobq.errors import InvalidJob, JobCancelled, UnknownParent
from workers import Worker


def ran(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_a_chain_runs_in_order_and_each_reads_its_parent(q: Queue, location: str, workers,
                                                         tmp_path):
    """a -> b -> c: b and c wait, then run one after the other, each after its parent."""
    order = str(tmp_path / "order")
    a = q.enqueue_call("jobtasks_extra:note_then", (order, "a", 1))
    b = q.enqueue_call("jobtasks_extra:note_then", (order, "b", 2), depends_on=[a])
    c = q.enqueue_call("jobtasks_extra:parents_seen", ("c",), depends_on=[b])
    assert q.state(b).status is Status.WAITING and q.state(c).status is Status.WAITING
    assert q.counts()["waiting"] == 2
    assert [s.job_id for s in q.jobs(status="waiting")] == [b, c]
    assert [r["job_id"] for r in q.engine.rows(Status.WAITING)] == [c, b]
    assert q.engine.rough_counts()["waiting"] == 2
    assert workers(location, "--burst", "-c", "2").wait() == 0
    assert q.result(c, timeout=5) == ("c", [2])
    assert ran(tmp_path / "order") == ["a", "b"]
    assert "waiting" not in q.counts()  # shown only while some job waits


def test_a_fan_in_waits_for_all_three_and_gets_their_results_in_depends_on_order(
        q: Queue, location: str, workers):
    parents = [q.enqueue_call("jobtasks:add", (i, i)) for i in range(3)]
    child = q.enqueue_call("jobtasks_extra:parents_seen", ("fan-in",),
                           depends_on=[parents[2], parents[0], parents[1]])
    assert q.engine.parents(child) == [parents[2], parents[0], parents[1]]
    assert workers(location, "--burst", "-c", "2").wait() == 0
    assert q.result(child, timeout=5) == ("fan-in", [4, 0, 2])


def test_a_dead_parent_cancels_its_dependents_naming_it_down_the_tree(q: Queue, location: str,
                                                                     workers):
    ok = q.enqueue_call("jobtasks:add", (1, 1))
    bad = q.enqueue_call("jobtasks:boom", max_attempts=1)
    child = q.enqueue_call("jobtasks:add", (2, 2), depends_on=[ok, bad])
    grandchild = q.enqueue_call("jobtasks:add", (3, 3), depends_on=[child])
    assert workers(location, "--burst").wait() == 0
    assert q.state(bad).status is Status.DEAD
    state = q.state(child)
    assert state.status is Status.CANCELLED and bad in state.error and "dead" in state.error
    state = q.state(grandchild)
    assert state.status is Status.CANCELLED and child in state.error
    with pytest.raises(JobCancelled):
        q.result(grandchild, timeout=5)
    assert q.counts() == {"queued": 0, "running": 0, "failed": 0, "succeeded": 1, "dead": 1,
                          "cancelled": 2}


def test_with_run_a_dependent_runs_once_every_parent_ended_whatever_it_ended_as(
        q: Queue, location: str, workers):
    bad = q.enqueue_call("jobtasks:boom", max_attempts=1)
    ok = q.enqueue_call("jobtasks:add", (5, 5))
    child = q.enqueue_call("jobtasks_extra:parents_seen", ("anyway",), depends_on=[bad, ok],
                           on_dependency_failure="run")
    assert workers(location, "--burst").wait() == 0
    assert q.result(child, timeout=5) == ("anyway", [None, 10])


def test_cancelling_a_parent_cancels_its_dependents_in_cascade(q: Queue):
    parent = q.enqueue_call("jobtasks:add", (1, 1), delay=3600)
    child = q.enqueue_call("jobtasks:add", (2, 2), depends_on=[parent])
    grandchild = q.enqueue_call("jobtasks:add", (3, 3), depends_on=[child],
                                on_dependency_failure="run")
    assert q.cancel(parent)
    assert q.state(child).status is Status.CANCELLED
    assert parent in q.state(child).error
    # "run": every parent ended, so the grandchild is due even though its parent was cancelled
    assert q.state(grandchild).status is Status.QUEUED


def test_cancelling_a_waiting_job_cancels_it_and_its_dependents(q: Queue):
    parent = q.enqueue_call("jobtasks:add", (1, 1), delay=3600)
    child = q.enqueue_call("jobtasks:add", (2, 2), depends_on=[parent])
    grandchild = q.enqueue_call("jobtasks:add", (3, 3), depends_on=[child])
    assert q.cancel(child)
    assert q.state(child).status is Status.CANCELLED
    assert q.state(grandchild).status is Status.CANCELLED
    assert q.state(parent).status is Status.QUEUED


def test_an_unknown_parent_is_an_error_and_nothing_is_stored(q: Queue):
    known = q.enqueue_call("jobtasks:add", (1, 1))
    before = q.counts()
    with pytest.raises(UnknownParent, match="no-such-job"):
        q.enqueue_call("jobtasks:add", (2, 2), job_id="orphan",
                       depends_on=[known, "no-such-job"])
    assert not q.engine.exists("orphan")
    assert q.counts() == before and [s.job_id for s in q.jobs()] == [known]
    assert isinstance(UnknownParent("x"), (InvalidJob, KeyError))


@pytest.mark.parametrize("depends_on, policy, message", [
    ("abc", "cancel", "depends_on must be a list"),
    ([1], "cancel", "depends_on must hold job ids"),
    ([""], "cancel", "job id must be"),
    (["x"], "ignore", "on_dependency_failure must be one of"),
], ids=["a-string", "an-int", "empty-id", "bad-policy"])
def test_malformed_dependencies_are_refused_before_anything_is_stored(
        q: Queue, depends_on, policy, message):
    with pytest.raises(InvalidJob, match=message):
        q.enqueue_call("jobtasks:add", (1, 1), depends_on=depends_on,
                       on_dependency_failure=policy)
    assert sum(q.counts().values()) == 0


def test_a_parent_already_finished_at_enqueue_is_taken_as_it_ended(q: Queue, location: str,
                                                                   workers):
    ok = q.enqueue_call("jobtasks:add", (20, 1))
    bad = q.enqueue_call("jobtasks:boom", max_attempts=1)
    assert workers(location, "--burst").wait() == 0
    after_ok = q.enqueue_call("jobtasks_extra:parents_seen", ("ok",), depends_on=[ok])
    assert q.state(after_ok).status is Status.QUEUED
    after_bad = q.enqueue_call("jobtasks:add", (1, 1), depends_on=[bad])
    state = q.state(after_bad)
    assert state.status is Status.CANCELLED and bad in state.error
    anyway = q.enqueue_call("jobtasks_extra:parents_seen", ("run",), depends_on=[bad, ok],
                            on_dependency_failure="run")
    assert q.state(anyway).status is Status.QUEUED
    assert workers(location, "--burst").wait() == 0
    assert q.result(after_ok, timeout=5) == ("ok", [21])
    assert q.result(anyway, timeout=5) == ("run", [None, 21])


def test_an_existing_job_id_is_returned_and_its_dependencies_kept(q: Queue):
    a = q.enqueue_call("jobtasks:add", (1, 1), delay=3600)
    b = q.enqueue_call("jobtasks:add", (2, 2), delay=3600)
    child = q.enqueue_call("jobtasks:add", (3, 3), job_id="child", depends_on=[a])
    assert q.enqueue_call("jobtasks:add", (3, 3), job_id="child", depends_on=[b]) == child
    assert q.engine.parents(child) == [a]


def test_a_worker_killed_mid_parent_still_releases_the_dependent_after_reclaim(
        q: Queue, location: str, workers, tmp_path):
    pid_file = str(tmp_path / "pid")
    parent = q.enqueue_call("jobtasks:pid_then_sleep", (pid_file, 1.0))
    child = q.enqueue_call("jobtasks_extra:parents_seen", ("after-kill",), depends_on=[parent])
    first = workers(location)
    wait_until(lambda: Path(pid_file).exists() and q.state(parent).status is Status.RUNNING)
    first.kill_all()
    assert q.state(child).status is Status.WAITING
    workers(location)
    state = q.wait(child, timeout=60)
    assert state.status is Status.SUCCEEDED
    assert state.result[0] == "after-kill" and isinstance(state.result[1][0], int)
    assert "interrupted" in q.state(parent).errors[0]  # the killed attempt, then a new one


def test_cli_enqueue_depends_on_is_repeatable_and_a_bad_id_is_one_line_and_exit_1(
        location: str):
    from test_cli import jobq, ok
    a = ok("enqueue", "--dir", location, "jobtasks:add", "1", "2").strip()
    b = ok("enqueue", "--dir", location, "jobtasks:add", "3", "4").strip()
    child = ok("enqueue", "--dir", location, "jobtasks_extra:parents_seen", "cli",
               "--depends-on", b, "--depends-on", a, "--on-dependency-failure", "run").strip()
    done = jobq("enqueue", "--dir", location, "jobtasks:add", "1", "1", "--depends-on", "nope")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("jobq: error: ")
    assert "'nope'" in done.stderr and "does not exist" in done.stderr
    assert "waiting" in ok("status", "--dir", location)
    assert child in ok("list", "--dir", location, "--status", "waiting")
    shown = ok("show", "--dir", location, child)
    assert f"depends on   {b} (queued), {a} (queued)" in shown
    assert json.loads(ok("show", "--dir", location, child, "--json"))["depends_on"] == [b, a]
    with Queue(location) as q:
        assert q.engine.parents(child) == [b, a] and len(list(q.jobs())) == 3
        Worker(q).run(burst=True)
        assert q.result(child, timeout=5) == ("cli", [7, 3])


def test_purging_a_dependent_forgets_its_parents_and_a_purged_parent_reads_as_none(q: Queue):
    from jobq.maintenance import purge
    parent = q.enqueue_call("jobtasks:add", (1, 1))
    other = q.enqueue_call("jobtasks:add", (2, 2), delay=3600)
    child = q.enqueue_call("jobtasks_extra:parents_seen", ("late",), depends_on=[parent, other],
                           on_dependency_failure="run")
    Worker(q).run(burst=True)
    assert purge(q, statuses=["succeeded"], older_than=0) == 1  # the parent
    assert q.state(child).status is Status.WAITING
    assert q.cancel(other)
    Worker(q).run(burst=True)
    assert q.result(child, timeout=5) == ("late", [None, None])
    assert purge(q, statuses=["succeeded", "cancelled"], older_than=0) == 2
    assert q.engine.parents(child) == []


def test_a_chain_of_three_with_the_middle_one_failing(q: Queue, location: str, workers):
    a = q.enqueue_call("jobtasks:add", (1, 1))
    b = q.enqueue_call("jobtasks:fail_until", (9,), depends_on=[a], max_attempts=2)
    c = q.enqueue_call("jobtasks:add", (3, 3), depends_on=[b])
    assert workers(location, "--burst").wait() == 0
    assert [q.state(j).status for j in (a, b, c)] == [Status.SUCCEEDED, Status.DEAD,
                                                       Status.CANCELLED]
    assert q.state(b).attempts == 2 and b in q.state(c).error


def test_parents_ending_at_once_in_two_workers_never_leave_a_dependent_waiting(
        q: Queue, location: str, workers):
    """Each dependent's two parents are claimed together, by different children of two
    workers: the last to end must see the other's end (PostgreSQL: the row lock)."""
    pairs = [q.enqueue_many("jobtasks:add", [(i, 0), (0, i)]) for i in range(30)]
    children = [q.enqueue_call("jobtasks_extra:parents_seen", (str(i),), depends_on=pair)
                for i, pair in enumerate(pairs)]
    procs = [workers(location, "--burst", "-c", "2") for _ in range(2)]
    assert [p.wait() for p in procs] == [0, 0]
    for i, child in enumerate(children):
        assert q.result(child, timeout=30) == (str(i), [i, i])
    assert q.counts() == {"queued": 0, "running": 0, "failed": 0, "succeeded": 90, "dead": 0,
                          "cancelled": 0}


def test_retrying_a_cancelled_dependent_waits_again_for_a_parent_retried_first(
        q: Queue, location: str, workers, tmp_path):
    flag = tmp_path / "ok"
    parent = q.enqueue_call("jobtasks:fail_unless_exists", (str(flag),), max_attempts=1)
    child = q.enqueue_call("jobtasks_extra:parents_seen", ("again",), depends_on=[parent])
    assert workers(location, "--burst").wait() == 0
    assert q.state(child).status is Status.CANCELLED
    flag.touch()
    assert q.retry(parent) and q.retry(child)
    assert q.state(child).status is Status.WAITING
    assert workers(location, "--burst").wait() == 0
    assert q.result(child, timeout=5)[0] == "again"
    lone = q.enqueue_call("jobtasks:add", (1, 1), depends_on=[parent], delay=3600)
    assert q.cancel(lone) and q.retry(lone)  # its parent has ended: queued, not waiting
    assert q.state(lone).status is Status.QUEUED
