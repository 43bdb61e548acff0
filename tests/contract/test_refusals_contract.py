"""What ``Queue`` refuses, on every engine: bad input fails at enqueue and writes nothing,
unknown jobs are not found, a signed queue needs its key."""

from __future__ import annotations

import pytest

import jobtasks
from jobq import Queue
from jobq.errors import (InvalidJob, InvalidTask, JobNotFound, NotPicklable, RecordTooLarge,
                         SignatureMismatch)
from jobq.testing import run_burst
from jobtasks import add


def test_unknown_jobs_and_bad_calls_are_refused_clearly(q: Queue):
    with pytest.raises(JobNotFound):
        q.state("no-such-job")
    with pytest.raises(JobNotFound):
        q.cancel("no-such-job")
    with pytest.raises(SignatureMismatch):
        q.enqueue(jobtasks.add, 1, 2, timeout=5)
    with pytest.raises(InvalidJob):
        q.enqueue_call(jobtasks.add, (1, 2), max_attempts=0)
    assert q.counts()["queued"] == 0


def _nested_holder():
    def inner():
        return 1
    return inner


@pytest.mark.parametrize("call", [
    lambda q: q.enqueue(lambda: 1),
    lambda q: q.enqueue(_nested_holder()),
    lambda q: q.enqueue("jobtasks:no_such_function"),
    lambda q: q.enqueue("no_such_module_xyz:f"),
    lambda q: q.enqueue("jobtasks.add"),
    lambda q: q.enqueue(42),
    lambda q: q.enqueue(add, lambda: 1),
    lambda q: q.enqueue_call(add, args=(1, 2), delay=-1),
    lambda q: q.enqueue_call(add, args=(1, 2), delay=float("nan")),
    lambda q: q.enqueue_call(add, args=(1, 2), max_attempts=0),
    lambda q: q.enqueue_call(add, args=(1, 2), max_attempts=1.5),
    lambda q: q.enqueue_call(add, args=(1, 2), timeout=0),
    lambda q: q.enqueue_call(add, args=(1, 2), priority="high"),
    lambda q: q.enqueue_call(add, args="12"),
    lambda q: q.enqueue_call(add, args=(1, 2), kwargs=[("b", 1)]),
    lambda q: q.enqueue_call(add, args=(1, 2), job_id=""),
    lambda q: q.enqueue_call(add, args=(1, 2), job_id="x" * 201),
    lambda q: q.enqueue_call(add, args=(1, 2), job_id="bad\nid"),
    lambda q: q.enqueue_many(add, [(1, 2), 3]),
    lambda q: q.enqueue_many(add, [(1, 2), (lambda: 0,)]),
    lambda q: q.enqueue(add, b"x" * (1 << 20)),
], ids=["lambda", "nested", "missing-attr", "missing-module", "dotted-ref", "not-callable",
        "unpicklable-arg", "negative-delay", "nan-delay", "zero-attempts", "float-attempts",
        "zero-timeout", "str-priority", "str-args", "list-kwargs", "empty-id", "long-id",
        "newline-id", "batch-not-tuple", "batch-unpicklable", "too-large"])
def test_bad_input_fails_at_enqueue_and_writes_nothing(location: str, call):
    """Every bad enqueue raises an InvalidJob subclass and leaves the queue exactly as it was:
    the one job before it, unchanged, and nothing else to run."""
    with Queue(location, max_record_size=512 * 1024) as q:
        first = q.enqueue(add, 1, 1)
        with pytest.raises(InvalidJob):
            call(q)
        assert [s.job_id for s in q.jobs()] == [first] and q.counts()["queued"] == 1
        assert run_burst(q) == 1 and q.result(first) == 2


@pytest.mark.parametrize("call", [
    lambda q: q.enqueue(add, 1, 2),
    lambda q: q.enqueue_call(add, args=(1, 2)),
    lambda q: q.enqueue_many(add, [(1, 2)]),
], ids=["enqueue", "enqueue_call", "enqueue_many"])
def test_default_max_attempts_out_of_range_fails_each_enqueue(location: str, call):
    """A default_max_attempts the record cannot hold is refused by every enqueue, as before the
    default options were validated once per queue."""
    with Queue(location, default_max_attempts=2**31) as q:
        with pytest.raises(InvalidJob, match="max_attempts"):
            call(q)
        assert q.counts()["queued"] == 0


def test_specific_error_types(q: Queue, location: str):
    """Bad tasks, unpicklable args and oversized jobs have their own error types."""
    with pytest.raises(InvalidTask, match="lambda"):
        q.enqueue(lambda: 1)
    with pytest.raises(NotPicklable):
        q.enqueue(add, lambda: 1, 2)
    with Queue(location + "small", max_record_size=1000) as small, \
            pytest.raises(RecordTooLarge):
        small.enqueue(add, "x" * 2000, 1)


def test_a_signed_queue_is_refused_without_its_key_or_with_another(location: str):
    from jobq.errors import WrongSecretKey
    with Queue(location, secret_key=b"k" * 32) as q:
        jid = q.enqueue(jobtasks.add, 1, 1)
    with pytest.raises(WrongSecretKey):
        Queue(location)
    with pytest.raises(WrongSecretKey):
        Queue(location, secret_key=b"x" * 32)
    with Queue(location, secret_key=b"k" * 32) as q:
        run_burst(q)
        assert q.result(jid) == 2
