"""Task references: what can be enqueued by name, and the errors for what cannot."""

from __future__ import annotations

import functools
import sys

import pytest

from jobq import Status, tasks
from jobq.errors import InvalidTask, SignatureMismatch, TaskNotFound
from jobq.testing import run_burst

import jobtasks


def _decorated(fn):
    @functools.wraps(fn)
    def wrapper(*a, **k):
        return fn(*a, **k)
    return wrapper


decorated_add = _decorated(jobtasks.add)


class Holder:
    @staticmethod
    def method(x):
        return x


def test_reference_of_module_level_function_and_back():
    """A module-level function's reference imports back to the same function."""
    assert tasks.reference(jobtasks.add) == "jobtasks:add"
    assert tasks.resolve("jobtasks:add") is jobtasks.add
    assert tasks.resolve("os.path:join") is __import__("os").path.join


def test_class_attributes_resolve_by_dotted_path():
    """'module:Class.method' resolves through attributes."""
    assert tasks.resolve(f"{__name__}:Holder.method")(3) == 3


@pytest.mark.parametrize("ref,message", [
    ("jobtasks", "must look like"), ("jobtasks:", "must look like"), (":add", "must look like"),
    ("a:b:c", "must look like"), ("nonexistent_mod_q:f", "cannot find module"),
    ("jobtasks:nope", "no attribute"), ("jobtasks:CALLS", "not callable"),
], ids=["no-colon", "no-attr", "no-module", "two-colons", "missing-module", "missing-attr",
        "not-callable"])
def test_bad_references(ref, message):
    """Malformed and unresolvable references raise InvalidTask with the reason."""
    with pytest.raises(InvalidTask, match=message):
        tasks.reference(ref)


def test_functions_a_worker_cannot_import_are_refused():
    """Lambdas, nested functions, __main__ functions and non-callables are refused."""
    def nested():
        return 1
    main_fn = type(jobtasks.add)(jobtasks.add.__code__, {}, "in_main")
    main_fn.__module__ = "__main__"
    for fn, message in [(lambda: 1, "lambda"), (nested, "nested"), (main_fn, "__main__"),
                        (3, "not int")]:
        with pytest.raises(InvalidTask, match=message if message != "not int" else "function or"):
            tasks.reference(fn)


def test_decorated_task_is_referenced_by_its_wrapped_name():
    """A functools.wraps decorator keeps a name that imports back to the decorated object."""
    with pytest.raises(InvalidTask, match="does not import back"):
        tasks.reference(decorated_add)  # its name says jobtasks:add, which is not this object


def test_module_that_raises_on_import(tmp_path, monkeypatch):
    """A module that raises while importing gives InvalidTask naming the exception."""
    (tmp_path / "explodes_q.py").write_text("raise RuntimeError('bad deploy')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(InvalidTask, match="RuntimeError: bad deploy"):
        tasks.resolve("explodes_q:f")


def _write_module(tmp_path, name: str, body: str) -> None:
    (tmp_path / f"{name}.py").write_text(body)


def test_cached_reference_is_refused_once_the_function_is_redefined(tmp_path, monkeypatch):
    """A reference served from the cache is checked again: a replaced or reloaded function's old
    object is refused, as it would be without the cache, and the new one is accepted."""
    import importlib
    import sys
    monkeypatch.syspath_prepend(str(tmp_path))
    _write_module(tmp_path, "redefined_q", "def f():\n    return 1\n")
    try:
        redefined_q = importlib.import_module("redefined_q")
        old = redefined_q.f
        assert tasks.reference(old) == tasks.reference(old) == "redefined_q:f"

        def f():
            return 2
        f.__module__, f.__qualname__ = "redefined_q", "f"
        monkeypatch.setattr(redefined_q, "f", f)
        with pytest.raises(InvalidTask, match="does not import back"):
            tasks.reference(old)
        assert tasks.reference(f) == "redefined_q:f"

        _write_module(tmp_path, "redefined_q", "def f():\n    return 3\n\n\ndef g():\n    return 4\n")
        importlib.invalidate_caches()
        importlib.reload(redefined_q)
        with pytest.raises(InvalidTask, match="does not import back"):
            tasks.reference(f)
        assert tasks.reference(redefined_q.f) == "redefined_q:f"
    finally:
        sys.modules.pop("redefined_q", None)


def test_cached_reference_of_a_method_and_of_a_removed_module(monkeypatch):
    """A dotted attribute path is walked on a hit; a module gone from sys.modules is imported
    again by the full check."""
    import sys
    assert tasks.reference(Holder.method) == f"{__name__}:Holder.method"
    assert tasks.reference(Holder.method) == f"{__name__}:Holder.method"
    assert tasks.reference(jobtasks.add) == "jobtasks:add"
    monkeypatch.delitem(sys.modules, "jobtasks")
    with pytest.raises(InvalidTask, match="does not import back"):
        tasks.reference(jobtasks.add)  # the module imported again holds a new function
    assert tasks.reference(sys.modules["jobtasks"].add) == "jobtasks:add"


def test_resolved_task_follows_a_monkeypatch_and_a_removal(tmp_path, monkeypatch):
    """resolve() remembers where a task lives, not the function: a replaced function is what the
    next resolve returns, and one removed since is an InvalidTask again."""
    import importlib
    import sys
    monkeypatch.syspath_prepend(str(tmp_path))
    _write_module(tmp_path, "resolved_q", "def f():\n    return 1\n")
    try:
        module = importlib.import_module("resolved_q")
        assert tasks.resolve("resolved_q:f")() == tasks.resolve("resolved_q:f")() == 1

        monkeypatch.setattr(module, "f", lambda: 2)
        assert tasks.resolve("resolved_q:f")() == 2
        monkeypatch.delattr(module, "f")
        with pytest.raises(InvalidTask, match="has no attribute"):
            tasks.resolve("resolved_q:f")
        monkeypatch.setattr(module, "f", 3, raising=False)  # not callable any more
        with pytest.raises(InvalidTask, match="not callable"):
            tasks.resolve("resolved_q:f")
    finally:
        sys.modules.pop("resolved_q", None)


# -- a producer never runs a task module it has not imported (issue 15, item 7) -----------------


@pytest.fixture
def fresh_modules(tmp_path, monkeypatch):
    """A directory on sys.path for modules made by the test, forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        sys.modules.pop(name, None)


SIDE_EFFECT = ("import os, pathlib\n"
               "pathlib.Path(os.environ['JOBQ_TEST_MARK']).write_text(__name__)\n")


def test_enqueue_by_name_does_not_import_the_module(fresh_modules, monkeypatch, queue):
    """``enqueue_call("heavy_q:predict")`` finds heavy_q without running it; the worker imports
    it and runs the job."""
    mark = fresh_modules / "imported"
    monkeypatch.setenv("JOBQ_TEST_MARK", str(mark))
    (fresh_modules / "heavy_q.py").write_text(SIDE_EFFECT + "def predict(x):\n    return x * 2\n")
    job_id = queue.enqueue_call("heavy_q:predict", [21])
    assert "heavy_q" not in sys.modules and not mark.exists()
    run_burst(queue)
    assert queue.state(job_id).result == 42 and mark.exists()


def test_a_submodule_is_found_without_running_its_packages(fresh_modules, monkeypatch, queue):
    """``pkg.sub:f`` with ``pkg`` not imported: neither pkg/__init__ nor sub runs in the producer;
    a submodule that does not exist, or below a plain module, is refused."""
    mark = fresh_modules / "imported"
    monkeypatch.setenv("JOBQ_TEST_MARK", str(mark))
    (fresh_modules / "pkg_q").mkdir()
    (fresh_modules / "pkg_q" / "__init__.py").write_text(SIDE_EFFECT)
    (fresh_modules / "pkg_q" / "sub.py").write_text("def f(x):\n    return x\n")
    queue.enqueue("pkg_q.sub:f", 1)
    assert "pkg_q" not in sys.modules and not mark.exists()
    with pytest.raises(InvalidTask, match="cannot find module 'pkg_q.nosuch'"):
        queue.enqueue("pkg_q.nosuch:f", 1)
    with pytest.raises(InvalidTask, match="cannot find module 'pkg_q.sub.deeper'"):
        queue.enqueue("pkg_q.sub.deeper:f", 1)
    assert "pkg_q" not in sys.modules and not mark.exists()
    assert _nothing_written_but(queue, 1)


def _nothing_written_but(queue, count: int) -> bool:
    return sum(queue.counts().values()) == count


def test_a_module_that_cannot_be_found_is_refused(queue):
    with pytest.raises(InvalidTask, match="cannot find module 'nowhere_q'"):
        queue.enqueue_call("nowhere_q:f", [1])
    assert _nothing_written_but(queue, 0)


def test_arguments_are_checked_from_the_source_of_a_module_not_imported(fresh_modules, queue):
    """A plain ``def`` is read from the file, not run: a call that does not fit is refused."""
    (fresh_modules / "plain_q.py").write_text(
        "raise RuntimeError('must not run')\n"
        "def f(a, /, b, c=1, *, d, e=2):\n    pass\n"
        "def g(x):\n    pass\n"
        "g = staticmethod(g)\n"
        "@staticmethod\n"
        "def h(x):\n    pass\n")
    queue.enqueue_call("plain_q:f", [1, 2], {"d": 3})
    queue.enqueue_call("plain_q:f", [1, 2, 3], {"d": 3, "e": 4})
    for args, kwargs in [([1, 2], {}), ([1], {"d": 3}), ([1, 2], {"d": 3, "x": 1}),
                         ([], {"a": 1, "b": 2, "d": 3})]:
        with pytest.raises(SignatureMismatch):
            queue.enqueue_call("plain_q:f", args, kwargs)
    # Bound twice, or decorated: the source does not say plainly; the worker will check.
    queue.enqueue("plain_q:g", 1, 2, 3)
    queue.enqueue("plain_q:h", 1, 2, 3)
    assert "plain_q" not in sys.modules and _nothing_written_but(queue, 4)
    (fresh_modules / "star_q.py").write_text("def f(a):\n    pass\nfrom jobtasks import *\n")
    queue.enqueue("star_q:f", 1, 2, 3)  # a star import may rebind f: not read from the source


def test_a_source_changed_by_a_deploy_is_read_again(fresh_modules, queue):
    import os
    path = fresh_modules / "deployed_q.py"
    path.write_text("def f(a):\n    pass\n")
    queue.enqueue("deployed_q:f", 1)
    path.write_text("def f(a, b):\n    pass\n")
    os.utime(path, ns=(1, 1))  # a new mtime, however coarse the file system's clock
    queue.enqueue("deployed_q:f", 1, 2)
    with pytest.raises(SignatureMismatch):
        queue.enqueue("deployed_q:f", 1)


def test_a_function_missing_in_the_worker_goes_dead_at_once(fresh_modules, queue):
    """The module imports but has no such function: dead on the first try, no attempt spent,
    the reason in the error."""
    (fresh_modules / "thin_q.py").write_text("def other():\n    pass\n")
    job_id = queue.enqueue_call("thin_q:predict", [1], max_attempts=3)
    assert run_burst(queue) == 1
    state = queue.state(job_id)
    assert state.status is Status.DEAD and state.attempts == 0
    assert "thin_q has no attribute 'predict'" in state.error


def test_a_module_the_worker_cannot_import_is_retried(fresh_modules, queue):
    """An import error may be fixed by a deploy: the attempt fails and is retried as usual."""
    (fresh_modules / "broken_q.py").write_text("import not_installed_q\ndef f():\n    pass\n")
    job_id = queue.enqueue_call("broken_q:f", max_attempts=2)
    assert run_burst(queue) == 2
    state = queue.state(job_id)
    assert state.status is Status.DEAD and state.attempts == 2 and len(state.errors) == 2
    assert "not_installed_q" in state.error


def test_an_imported_module_is_still_checked_at_enqueue(queue):
    """When the producer has the module loaded, a missing function is refused at enqueue."""
    with pytest.raises(TaskNotFound, match="no attribute 'nope'"):
        queue.enqueue("jobtasks:nope")
