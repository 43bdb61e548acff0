"""Tasks by name, on every engine: a producer never runs a task module it has not imported
(issue 15, item 7), checks a call against the task's source, and a worker that cannot find or
import the task ends the job with the reason."""

from __future__ import annotations

import os
import sys

import pytest

from jobq import Queue, Status, tasks
from jobq.errors import InvalidTask, SignatureMismatch, TaskNotFound
from jobq.testing import run_burst


@pytest.fixture
def fresh_modules(tmp_path, monkeypatch):
    """A directory on sys.path for modules made by the test, forgotten afterwards: imported or
    only found (the producer remembers where it found a module, and each engine's run of a test
    makes the same module names in its own directory)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(tasks, "_found", {})
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        sys.modules.pop(name, None)


SIDE_EFFECT = ("import os, pathlib\n"
               "pathlib.Path(os.environ['JOBQ_TEST_MARK']).write_text(__name__)\n")


def test_enqueue_by_name_does_not_import_the_module(fresh_modules, monkeypatch,
                                                                q: Queue):
    """``enqueue_call("heavy_q:predict")`` finds heavy_q without running it; the worker imports
    it and runs the job."""
    mark = fresh_modules / "imported"
    monkeypatch.setenv("JOBQ_TEST_MARK", str(mark))
    (fresh_modules / "heavy_q.py").write_text(SIDE_EFFECT + "def predict(x):\n    return x * 2\n")
    job_id = q.enqueue_call("heavy_q:predict", [21])
    assert "heavy_q" not in sys.modules and not mark.exists()
    run_burst(q)
    assert q.state(job_id).result == 42 and mark.exists()


def test_a_submodule_is_found_without_running_its_packages(fresh_modules, monkeypatch, q: Queue):
    """``pkg.sub:f`` with ``pkg`` not imported: neither pkg/__init__ nor sub runs in the producer;
    a submodule that does not exist, or below a plain module, is refused."""
    mark = fresh_modules / "imported"
    monkeypatch.setenv("JOBQ_TEST_MARK", str(mark))
    (fresh_modules / "pkg_q").mkdir()
    (fresh_modules / "pkg_q" / "__init__.py").write_text(SIDE_EFFECT)
    (fresh_modules / "pkg_q" / "sub.py").write_text("def f(x):\n    return x\n")
    q.enqueue("pkg_q.sub:f", 1)
    assert "pkg_q" not in sys.modules and not mark.exists()
    with pytest.raises(InvalidTask, match="cannot find module 'pkg_q.nosuch'"):
        q.enqueue("pkg_q.nosuch:f", 1)
    with pytest.raises(InvalidTask, match="cannot find module 'pkg_q.sub.deeper'"):
        q.enqueue("pkg_q.sub.deeper:f", 1)
    assert "pkg_q" not in sys.modules and not mark.exists()
    assert _nothing_written_but(q, 1)


def _nothing_written_but(q: Queue, count: int) -> bool:
    return sum(q.counts().values()) == count


def test_a_module_that_cannot_be_found_is_refused(q: Queue):
    with pytest.raises(InvalidTask, match="cannot find module 'nowhere_q'"):
        q.enqueue_call("nowhere_q:f", [1])
    assert _nothing_written_but(q, 0)


def test_arguments_are_checked_from_the_source_of_a_module_not_imported(fresh_modules, q: Queue):
    """A plain ``def`` is read from the file, not run: a call that does not fit is refused."""
    (fresh_modules / "plain_q.py").write_text(
        "raise RuntimeError('must not run')\n"
        "def f(a, /, b, c=1, *, d, e=2):\n    pass\n"
        "def g(x):\n    pass\n"
        "g = staticmethod(g)\n"
        "@staticmethod\n"
        "def h(x):\n    pass\n")
    q.enqueue_call("plain_q:f", [1, 2], {"d": 3})
    q.enqueue_call("plain_q:f", [1, 2, 3], {"d": 3, "e": 4})
    for args, kwargs in [([1, 2], {}), ([1], {"d": 3}), ([1, 2], {"d": 3, "x": 1}),
                         ([], {"a": 1, "b": 2, "d": 3})]:
        with pytest.raises(SignatureMismatch):
            q.enqueue_call("plain_q:f", args, kwargs)
    # Bound twice, or decorated: the source does not say plainly; the worker will check.
    q.enqueue("plain_q:g", 1, 2, 3)
    q.enqueue("plain_q:h", 1, 2, 3)
    assert "plain_q" not in sys.modules and _nothing_written_but(q, 4)
    (fresh_modules / "star_q.py").write_text("def f(a):\n    pass\nfrom jobtasks import *\n")
    q.enqueue("star_q:f", 1, 2, 3)  # a star import may rebind f: not read from the source


def test_a_source_changed_by_a_deploy_is_read_again(fresh_modules, q: Queue):
    path = fresh_modules / "deployed_q.py"
    path.write_text("def f(a):\n    pass\n")
    q.enqueue("deployed_q:f", 1)
    path.write_text("def f(a, b):\n    pass\n")
    os.utime(path, ns=(1, 1))  # a new mtime, however coarse the file system's clock
    q.enqueue("deployed_q:f", 1, 2)
    with pytest.raises(SignatureMismatch):
        q.enqueue("deployed_q:f", 1)


def test_a_function_missing_in_the_worker_goes_dead_at_once(fresh_modules, q: Queue):
    """The module imports but has no such function: dead on the first try, no attempt spent,
    the reason in the error."""
    (fresh_modules / "thin_q.py").write_text("def other():\n    pass\n")
    job_id = q.enqueue_call("thin_q:predict", [1], max_attempts=3)
    assert run_burst(q) == 1
    state = q.state(job_id)
    assert state.status is Status.DEAD and state.attempts == 0
    assert "thin_q has no attribute 'predict'" in state.error


def test_a_module_the_worker_cannot_import_is_retried(fresh_modules, q: Queue):
    """An import error may be fixed by a deploy: the attempt fails and is retried as usual."""
    (fresh_modules / "broken_q.py").write_text("import not_installed_q\ndef f():\n    pass\n")
    job_id = q.enqueue_call("broken_q:f", max_attempts=2)
    assert run_burst(q) == 2
    state = q.state(job_id)
    assert state.status is Status.DEAD and state.attempts == 2 and len(state.errors) == 2
    assert "not_installed_q" in state.error


def test_an_imported_module_is_still_checked_at_enqueue(q: Queue):
    """When the producer has the module loaded, a missing function is refused at enqueue."""
    with pytest.raises(TaskNotFound, match="no attribute 'nope'"):
        q.enqueue("jobtasks:nope")
