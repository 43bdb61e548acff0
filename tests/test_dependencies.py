"""What a waiting job becomes when its parents end (jobq.dependencies.decide), the options'
checks, and the transitions a dependency makes: pure functions, no queue."""

from __future__ import annotations

import pytest

from jobq import Status, transitions
from jobq.dependencies import DUE, WAIT, Decision, decide, validate
from jobq.errors import InvalidJob
from jobq.state import JobState

S, D, C, R, Q = (Status.SUCCEEDED, Status.DEAD, Status.CANCELLED, Status.RUNNING,
                 Status.QUEUED)


@pytest.mark.parametrize("parents, policy, expected", [
    ([("a", S), ("b", S)], "cancel", DUE),
    ([("a", S), ("b", R)], "cancel", WAIT),
    ([("a", Q), ("b", D)], "cancel", Decision("cancel", "b", D)),
    ([("a", C), ("b", D)], "cancel", Decision("cancel", "a", C)),  # the first, in order
    ([("a", D), ("b", R)], "run", WAIT),  # runs once every parent ended
    ([("a", D), ("b", S)], "run", DUE),
    ([("a", None)], "cancel", DUE),  # purged: only finished jobs are
    ([("a", Status.WAITING)], "cancel", WAIT),
], ids=["all-succeeded", "one-running", "one-dead", "first-bad-named", "run-waits",
        "run-due", "purged-parent", "waiting-parent"])
def test_decide(parents, policy, expected) -> None:
    assert decide(parents, policy) == expected


def test_validate_keeps_order_and_drops_repeats() -> None:
    assert validate(["b", "a", "b"], "run") == (("b", "a"), "run")
    assert validate(None, "cancel") == ((), "cancel")
    assert validate((x for x in ["a"]), "cancel") == (("a",), "cancel")
    with pytest.raises(InvalidJob, match="on_dependency_failure"):
        validate(["a"], "skip")


def test_transitions_of_a_waiting_job() -> None:
    state = JobState(job_id="j", task="m:f", run_at=5.0)
    waiting = transitions.waiting(state, 10.0)
    assert waiting.status is Status.WAITING and waiting.updated_at == 10.0
    due = transitions.parents_done(waiting, 20.0)
    assert (due.status, due.run_at, due.attempts) == (Status.QUEUED, 20.0, 0)
    later = transitions.parents_done(JobState(job_id="j", task="m:f", run_at=99.0), 20.0)
    assert later.run_at == 99.0  # a delay still holds
    gone = transitions.parent_failed(waiting, "p", Status.DEAD, 30.0)
    assert gone.status is Status.CANCELLED and gone.finished_at == 30.0
    assert gone.error == gone.errors[-1] and "'p'" in gone.error and "dead" in gone.error
    assert waiting.status is Status.WAITING  # the input is never changed
