"""Task references: what can be enqueued by name, and the errors for what cannot (enqueueing
and running tasks by name on a queue: tests/contract/test_tasks_contract.py)."""

from __future__ import annotations

import functools

import pytest

from jobq import tasks
from jobq.errors import InvalidTask

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
