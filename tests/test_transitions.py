"""The pure state transitions and the retry backoff."""

from __future__ import annotations

import pytest

from jobq import transitions
from jobq.state import JobState, Status


def _state(**kw) -> JobState:
    return JobState(job_id="j", task="m:f", **kw)


def test_claim_counts_attempts_and_fails_until_the_budget_is_spent():
    """Each claim adds an attempt; failures retry until attempts reach max_attempts, then dead."""
    s = _state()
    for attempt in (1, 2, 3):
        s = transitions.claimed(s, now=10.0 * attempt)
        assert (s.status, s.attempts, s.started_at) == (Status.RUNNING, attempt, 10.0 * attempt)
        s = transitions.failed(s, f"e{attempt}", now=11.0 * attempt, max_attempts=3, retry_delay=5)
    assert s.status is Status.DEAD and s.errors == ["e1", "e2", "e3"] and s.error == "e3"
    assert s.finished_at == 33.0


def test_failed_schedules_the_retry():
    """A failure with attempts left is FAILED with run_at = now + delay."""
    s = transitions.failed(transitions.claimed(_state(), 1.0), "x", 2.0, max_attempts=2,
                           retry_delay=7.5)
    assert s.status is Status.FAILED and s.run_at == 9.5 and s.finished_at is None


def test_progress_never_goes_backwards():
    """checkpointed keeps the highest progress; None leaves it alone."""
    s = transitions.checkpointed(_state(progress=0.4), "c1", 0.2, 1.0)
    assert (s.checkpoint, s.progress) == ("c1", 0.4)
    s = transitions.checkpointed(s, "c2", None, 2.0)
    assert (s.checkpoint, s.progress) == ("c2", 0.4)
    assert transitions.checkpointed(s, "c3", 0.9, 3.0).progress == 0.9


def test_requeue_resets_the_budget_but_keeps_history():
    """requeued gives a dead job zero attempts and keeps its errors and checkpoint."""
    dead = _state(status=Status.DEAD, attempts=3, crashes=1, errors=["a"], checkpoint=5)
    s = transitions.requeued(dead, 50.0)
    assert (s.status, s.attempts, s.crashes, s.errors, s.checkpoint, s.run_at) == (
        Status.QUEUED, 0, 0, ["a"], 5, 50.0)
    assert transitions.can_requeue(dead) and not transitions.can_requeue(_state())


def test_inputs_are_not_mutated():
    """Transitions return new states and leave their input as it was."""
    s = _state(errors=["a"])
    transitions.failed(transitions.claimed(s, 1), "b", 2, max_attempts=1, retry_delay=0)
    assert s.errors == ["a"] and s.status is Status.QUEUED


@pytest.mark.parametrize("attempt", [1, 2, 5, 20, 200], ids=lambda a: f"attempt={a}")
def test_backoff_is_exponential_capped_and_jittered(attempt):
    """Delays lie in [bound/2, bound] with bound = min(cap, base * 2**(attempt-1))."""
    bound = min(300.0, 2.0 ** (attempt - 1))
    assert transitions.backoff(attempt, rand=lambda: 0.0) == bound / 2
    assert transitions.backoff(attempt, rand=lambda: 1.0) == bound
    assert transitions.backoff(attempt, base=0) == 0.0


def test_interrupted_counts_the_attempt_and_the_crash_and_is_due_at_once():
    """A crash keeps the attempt, adds a crash, records the cause and is due again now."""
    s = transitions.interrupted(transitions.claimed(_state(), 1.0), "killed by SIGKILL", 5.0,
                                max_attempts=5, max_crashes=3)
    assert (s.status, s.attempts, s.crashes, s.run_at) == (Status.FAILED, 1, 1, 5.0)
    assert s.errors == ["attempt 1 interrupted: killed by SIGKILL"]


def test_crash_cap_sets_a_poison_job_aside_with_its_cause():
    """The third crash makes the job dead even with attempts left, naming the cause."""
    s = _state()
    for _ in range(3):
        s = transitions.interrupted(transitions.claimed(s, 1.0), "killed by SIGSEGV", 2.0,
                                    max_attempts=10, max_crashes=3)
    assert s.status is Status.DEAD and s.crashes == 3 and s.attempts == 3
    assert s.error == "set aside after 3 crashed attempts; last: killed by SIGSEGV"


def test_crash_on_the_last_attempt_is_dead():
    """A crash on the final allowed attempt ends the job dead."""
    s = transitions.interrupted(transitions.claimed(_state(), 1.0), "x", 2.0, max_attempts=1,
                                max_crashes=3)
    assert s.status is Status.DEAD


def test_released_gives_the_attempt_back():
    """A job released at shutdown is queued again without the attempt it was charged."""
    s = transitions.released(transitions.claimed(_state(checkpoint=4), 1.0), 3.0)
    assert (s.status, s.attempts, s.checkpoint, s.run_at) == (Status.QUEUED, 0, 4, 3.0)


def test_damaged_is_dead_at_once_with_the_reason_and_the_attempt_given_back():
    """A job whose record cannot be read is not retried, and the attempt that found out is free."""
    s = transitions.claimed(_state(), 10.0)
    s = transitions.damaged(s, "payload record damaged at f:0: x; copy at q", 11.0)
    assert (s.status, s.attempts, s.finished_at) == (Status.DEAD, 0, 11.0)
    assert s.error == "payload record damaged at f:0: x; copy at q" and s.errors == [s.error]


def test_a_released_job_asked_to_cancel_ends_cancelled_without_the_attempt():
    """Given back after a cancel request (a prefetched claim never started), a job is not
    queued to run again only to be cancelled at its end: it ends cancelled, uncharged."""
    asked = transitions.cancel_requested(transitions.claimed(_state(), 1.0), 2.0)
    s = transitions.released(asked, 3.0)
    assert (s.status, s.attempts, s.finished_at) == (Status.CANCELLED, 0, 3.0)


def test_a_crash_after_a_new_checkpoint_is_charged_neither_as_attempt_nor_as_crash():
    """An attempt that saved progress and then died is free: it cannot use up the budget of a
    long job that is killed now and then, however many times that happens."""
    s = _state()
    for token in range(1, 11):  # ten kills, each after a save: max_attempts 3, max_crashes 3
        s = transitions.checkpointed(transitions.claimed(s, 1.0), token * 100, None, 2.0, token)
        s = transitions.interrupted(s, "killed by SIGKILL", 3.0, max_attempts=3, max_crashes=3,
                                    token=token)
        assert (s.status, s.attempts, s.crashes, s.checkpoint) == (Status.FAILED, 0, 0, token * 100)
    assert len(s.errors) == 10
    assert s.errors[0] == "attempt 1 interrupted after saving a checkpoint (not charged):" \
                          " killed by SIGKILL"


def test_a_checkpoint_saved_by_an_earlier_attempt_is_no_progress():
    """A job that saved once and now dies before saving again is a poison job: charged."""
    s = transitions.checkpointed(transitions.claimed(_state(), 1.0), "c", 0.5, 2.0, token=1)
    s = transitions.interrupted(s, "x", 3.0, max_attempts=9, max_crashes=3, token=1)
    for token in (2, 3, 4):
        s = transitions.interrupted(transitions.claimed(s, 4.0), "x", 5.0, max_attempts=9,
                                    max_crashes=3, token=token)
    assert (s.status, s.crashes, s.checkpoint) == (Status.DEAD, 3, "c")


def test_saving_the_checkpoint_it_resumed_from_is_no_progress():
    """Saving an equal checkpoint with no more progress does not make the attempt free."""
    s = transitions.checkpointed(transitions.claimed(_state(), 1.0), [1, 2], 0.5, 2.0, token=1)
    s = transitions.checkpointed(transitions.claimed(s, 3.0), [1, 2], 0.5, 4.0, token=2)
    assert s.checkpoint_token == 1
    crashed = transitions.interrupted(s, "x", 5.0, max_attempts=9, max_crashes=3, token=2)
    assert crashed.crashes == 1
    assert transitions.checkpointed(s, [1, 2], 0.6, 6.0, token=2).checkpoint_token == 2
    assert transitions.checkpointed(s, [1, 3], None, 6.0, token=2).checkpoint_token == 2


def test_a_state_made_from_a_row_alone_is_the_dataclass_s_own_field_for_field():
    """overlay() fills a fresh state without JobState's __init__: the same fields in the same
    order (a snapshot's pickle follows it), and a list of errors of its own."""
    import pickle

    from jobq.state import overlay, status_of

    for started_at in (3.5, None):
        row = ("j1", "jobtasks:add", "running", 2, 0.25, 5.0, 1, 1.0, 2.0, started_at, 0)
        made = overlay(row, None)
        expected = JobState(job_id="j1", task="jobtasks:add")
        expected.status, expected.attempts, expected.progress = status_of("running"), 2, 0.25
        expected.run_at, expected.cancel_requested, expected.enqueued_at = 5.0, True, 1.0
        expected.updated_at = 2.0
        if started_at is not None:
            expected.started_at = started_at
        assert list(made.__dict__.items()) == list(expected.__dict__.items())
        assert pickle.dumps(made, protocol=5) == pickle.dumps(expected, protocol=5)
        assert made.errors == [] and made.errors is not overlay(row, None).errors


def test_a_success_is_the_state_evolved_field_for_field():
    """succeeded() copies the state item by item: the fields _evolve would give, in order."""
    import pickle

    s = transitions.claimed(_state(errors=["e"], crashes=1), now=5.0)
    s.extra = "an attribute beyond the fields"  # copied as _evolve copies it
    made = transitions.succeeded(s, {"r": 1}, 7.0)
    expected = transitions._evolve(s, status=Status.SUCCEEDED, result={"r": 1}, progress=1.0,
                                   finished_at=7.0, updated_at=7.0)
    assert list(made.__dict__.items()) == list(expected.__dict__.items())
    assert pickle.dumps(made, protocol=5) == pickle.dumps(expected, protocol=5)
    assert s.status is Status.RUNNING and s.result is None  # the state given is left alone
