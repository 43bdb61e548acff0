"""Task references: ``"package.module:function"`` strings that a worker imports to run a job.

A job names its function instead of pickling it, so the code a worker runs is the code deployed
where the worker runs. Only module-level callables have such a name: a lambda, a nested function or
a function defined in ``__main__`` cannot be found again by another process, so they are refused
at enqueue time rather than failing later in a worker.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

from .errors import InvalidTask

TaskRef = str


# References already checked in this process: enqueueing the same task again needs no import.
_checked: set[TaskRef] = set()

# Callables already referenced: callable -> (reference, module name, attribute path). A hit is
# checked again on every use by walking sys.modules (no import, no string building), so a
# function redefined since (a reload, a monkeypatch) is not served the reference of its
# replacement, and is refused as it would be without the cache.
_known: dict[Any, tuple[TaskRef, str, tuple[str, ...]]] = {}
_KNOWN_MAX = 1024  # a program that makes module-level functions on the fly must not grow it forever


def reference(task: Callable[..., Any] | str) -> TaskRef:
    """Return the reference of ``task`` after checking that it imports back to a callable."""
    if isinstance(task, str):
        if task not in _checked:
            resolve(task)
            _checked.add(task)
        return task
    try:
        known = _known.get(task)
    except TypeError:  # an unhashable callable object
        known = None
    if known is not None:
        ref, module_name, attrs = known
        target = sys.modules.get(module_name)
        for attr in attrs:
            target = getattr(target, attr, None)
        if target is task:
            return ref
    ref = _reference_of_callable(task)
    if len(_known) >= _KNOWN_MAX:
        _known.clear()
    try:
        _known[task] = (ref, *_split(ref))
    except TypeError:
        pass
    return ref


def _split(ref: TaskRef) -> tuple[str, tuple[str, ...]]:
    module_name, _, attr_path = ref.partition(":")
    return module_name, tuple(attr_path.split("."))


def _reference_of_callable(task: Callable[..., Any]) -> TaskRef:
    if not callable(task):
        raise InvalidTask(f"task must be a function or a 'module:function' string, not"
                          f" {type(task).__name__}")
    module = getattr(task, "__module__", None)
    qualname = getattr(task, "__qualname__", None)
    if not module or not qualname:
        raise InvalidTask(f"{task!r} has no module-level name; pass a 'module:function' string")
    if "<lambda>" in qualname or "<locals>" in qualname:
        raise InvalidTask(f"{module}.{qualname} is a lambda or nested function; workers can only"
                          " import module-level functions")
    if module == "__main__":
        raise InvalidTask(f"{qualname} is defined in __main__, which a worker cannot import; move it"
                          " to a module and enqueue it from there")
    ref = f"{module}:{qualname}"
    if resolve(ref) is not task:
        raise InvalidTask(f"{ref} does not import back to the function given")
    return ref


# References resolved before: ref -> (module name, attribute path). A worker resolves the task of
# every job it runs; a hit walks sys.modules (no import machinery), so a reload or a monkeypatch
# since is seen, and a module no longer loaded takes the full path.
_resolved: dict[TaskRef, tuple[str, tuple[str, ...]]] = {}


def resolve(ref: TaskRef) -> Callable[..., Any]:
    """Import and return the callable named by ``ref``."""
    parsed = _resolved.get(ref) if type(ref) is str else None
    if parsed is not None:
        target: Any = sys.modules.get(parsed[0])
        for attr in parsed[1]:
            target = getattr(target, attr, None)
        if target is not None and callable(target):
            return target
    target = _import(ref)
    if len(_resolved) >= _KNOWN_MAX:
        _resolved.clear()
    _resolved[ref] = _split(ref)
    return target


def _import(ref: TaskRef) -> Callable[..., Any]:
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise InvalidTask(f"task reference must look like 'package.module:function', not {ref!r}")
    module_name, _, attr_path = ref.partition(":")
    if not module_name or not attr_path:
        raise InvalidTask(f"task reference must look like 'package.module:function', not {ref!r}")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidTask(f"cannot import module {module_name!r} of task {ref}: {exc}") from exc
    except Exception as exc:  # the module itself raised while importing
        raise InvalidTask(f"importing {module_name!r} for task {ref} raised"
                          f" {type(exc).__name__}: {exc}") from exc
    for attr in attr_path.split("."):
        try:
            target = getattr(target, attr)
        except AttributeError as exc:
            raise InvalidTask(f"task {ref}: {module_name} has no attribute {attr_path!r}") from exc
    if not callable(target):
        raise InvalidTask(f"task {ref} is not callable")
    return target
