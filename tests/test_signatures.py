"""A job's arguments are checked against its task's signature: refused at enqueue when the
function is at hand, sent to dead at once by the worker otherwise; PermanentFailure ends a job."""

from __future__ import annotations

import functools
import sys

import pytest

from jobq import PermanentFailure, Status, errors, signatures, tasks
from jobq.errors import InvalidJob, SignatureMismatch
from jobq.testing import run_burst

import jobtasks


def _nothing_written(queue) -> bool:
    return sum(queue.counts().values()) == 0


@pytest.mark.parametrize("call", [
    lambda q: q.enqueue(jobtasks.add, 1, timeout=5),
    lambda q: q.enqueue(jobtasks.add, 1),
    lambda q: q.enqueue(jobtasks.add, 1, 2, 3),
    lambda q: q.enqueue(jobtasks.add, 1, bb=2),
    lambda q: q.enqueue(jobtasks.keyword_only, 1),
    lambda q: q.enqueue("jobtasks:add", 1),
    lambda q: q.enqueue_call(jobtasks.add, [1], {"bb": 2}),
    lambda q: q.enqueue_call("jobtasks:boom", ["a", "b"]),
    lambda q: q.enqueue_many(jobtasks.add, [(1, 2), (1,)]),
    lambda q: q.enqueue_many("jobtasks:keyword_only", [(1,)]),
    lambda q: q.enqueue_many(jobtasks.boom, [(), ("x",), ("x", "y")]),
], ids=["rq-timeout", "too-few", "too-many", "misspelt", "kw-only-missing", "by-name",
        "call-misspelt", "call-by-name", "many", "many-kw-only", "many-too-many"])
def test_calls_that_do_not_fit_are_refused_before_anything_is_written(queue, call):
    """Each of these would raise TypeError on every attempt; enqueue refuses it instead."""
    with pytest.raises(SignatureMismatch) as info:
        call(queue)
    assert isinstance(info.value, InvalidJob) and isinstance(info.value, TypeError)
    assert _nothing_written(queue)


def test_enqueue_many_names_the_tuple_that_does_not_fit(queue):
    with pytest.raises(SignatureMismatch, match=r"args_list\[2\]: task jobtasks:add"):
        queue.enqueue_many(jobtasks.add, [(1, 2), (3, 4), (5,)])
    assert _nothing_written(queue)


def test_the_rq_habit_is_named_in_the_error(queue):
    """``timeout=`` given to enqueue says where job options go."""
    with pytest.raises(SignatureMismatch, match=r"jobtasks:add\(a, b\).*enqueue_call"):
        queue.enqueue(jobtasks.add, 1, 2, timeout=5)


def test_calls_that_fit_are_accepted(queue):
    """Defaults, *args, **kwargs, keyword-only parameters and keywords for positional ones."""
    queue.enqueue(jobtasks.boom)
    queue.enqueue(jobtasks.boom, "x")
    queue.enqueue(jobtasks.echo, 1, 2, x=3)
    queue.enqueue(jobtasks.keyword_only, 1, scale=2)
    queue.enqueue(jobtasks.add, b=1, a=2)
    queue.enqueue_call("jobtasks:add", [1], {"b": 2})
    queue.enqueue_many(jobtasks.add, [(1, 2), [3, 4]])
    queue.enqueue_many(jobtasks.echo, [(), (1,), (1, 2, 3)])
    assert queue.counts()["queued"] == 11


def _decorated(fn):
    @functools.wraps(fn)
    def wrapper(*a, **k):
        return fn(*a, **k)
    return wrapper


@_decorated
def injected(db, x):
    """A decorator that passes the first argument itself: callers give only ``x``."""
    return x


def test_a_wrapper_is_checked_by_its_own_signature_not_the_wrapped_one():
    """A decorator may add arguments: its own ``(*a, **k)`` is what the call must fit."""
    signatures.check(injected, "m:injected", (1,), {})  # the wrapped (db, x) would refuse it


def test_the_worker_sends_a_call_that_does_not_fit_to_dead_at_once(tmp_path, monkeypatch, queue):
    """A job written before the check (or by name, unread) dies without spending attempts."""
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "varsig_q.py").write_text("def f(*args):\n    return args\n")
    try:
        job_id = queue.enqueue_call("varsig_q:f", [1, 2], max_attempts=3)
        # Deploy: f now takes one argument; the worker imports the new file.
        (tmp_path / "varsig_q.py").write_text("def f(x):\n    return x\n")
        assert run_burst(queue) == 1
        state = queue.state(job_id)
        assert state.status is Status.DEAD and state.attempts == 0
        assert "cannot be called with 2 positional arguments" in state.error
    finally:
        sys.modules.pop("varsig_q", None)


def test_permanent_failure_ends_the_job_on_its_first_attempt(queue):
    """A task that raises PermanentFailure is dead after one attempt, its cause in the error."""
    job_id = queue.enqueue_call(jobtasks.give_up, ["no such user"], max_attempts=5)
    assert run_burst(queue) == 1
    state = queue.state(job_id)
    assert state.status is Status.DEAD and state.attempts == 1
    assert "LookupError: no such user" in state.error
    assert state.error.rstrip().endswith("PermanentFailure: giving up: no such user")


def test_permanent_failure_is_public_and_pickles():
    """Exported from jobq and jobq.errors, under JobqError, intact across processes."""
    import pickle
    assert errors.PermanentFailure is PermanentFailure
    err = pickle.loads(pickle.dumps(PermanentFailure("bad input", user=3)))
    assert isinstance(err, errors.JobqError) and str(err) == "bad input" and err.user == 3


def test_signature_of_an_unhashable_callable_is_still_checked():
    """A callable object that cannot be a cache key is checked without the cache."""
    class Unhashable:
        __hash__ = None

        def __call__(self, a):
            return a
    signatures.check(Unhashable(), "m:u", (1,), {})
    with pytest.raises(SignatureMismatch):
        signatures.check(Unhashable(), "m:u", (), {})


def test_a_callable_without_a_signature_is_not_checked():
    """Some builtins have no signature to read: nothing to check against, so accepted."""
    signatures.check(max, "builtins:max", (), {})


def test_target_gives_the_function_of_an_imported_module():
    """When the module is loaded, the call is checked against the function itself."""
    assert tasks.target("jobtasks:add") == ("jobtasks:add", jobtasks.add)
    assert tasks.target(jobtasks.add) == ("jobtasks:add", jobtasks.add)


def _f1(a, b, /, c, d=1, *args, e, f=2, **kw): pass  # noqa: E704
def _f2(a, /, b=1, *, c): pass  # noqa: E704
def _f3(a, /, **kw): pass  # noqa: E704
def _f4(*args, **kw): pass  # noqa: E704
def _f5(a, b=2, *, c=3): pass  # noqa: E704
def _f6(): pass  # noqa: E704


@pytest.mark.parametrize("fn", [_f1, _f2, _f3, _f4, _f5, _f6])
def test_the_fast_check_agrees_with_python_on_every_call(fn):
    """Every call of up to 4 positional and a choice of keywords: refused exactly when Python's
    own binding refuses it (the precomputed shape never accepts a call bind would not)."""
    import inspect
    import itertools
    names = ["a", "b", "c", "d", "e", "f", "kw", "zz"]
    shape = signatures._shape_of(fn)
    for n in range(5):
        for k in range(3):
            for keys in itertools.combinations(names, k):
                args, kwargs = tuple(range(n)), dict.fromkeys(keys, 0)
                try:
                    inspect.signature(fn).bind(*args, **kwargs)
                    fits = True
                except TypeError:
                    fits = False
                assert fits or not signatures._fits(shape, args, kwargs), (args, kwargs)
                if fits:
                    signatures.check(fn, "m:fn", args, kwargs)
                else:
                    with pytest.raises(SignatureMismatch):
                        signatures.check(fn, "m:fn", args, kwargs)
