"""Task references: ``"package.module:function"`` strings that a worker imports to run a job.

A job names its function instead of pickling it, so the code a worker runs is the code deployed
where the worker runs. Only module-level callables have such a name: a lambda, a nested function or
a function defined in ``__main__`` cannot be found again by another process, so they are refused
at enqueue time rather than failing later in a worker.

A producer never runs a task module it has not imported itself: a string reference to a module
that is not loaded is only looked for (:func:`_find_module`), and its function is checked by the
worker that imports it. A web request that enqueues ``"heavy:predict"`` does not pay for
importing ``heavy``, nor run its side effects.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from typing import Any

from . import signatures
from .errors import InvalidTask, TaskNotFound

TaskRef = str


# References already checked in this process: enqueueing the same task again needs no import.
_checked: set[TaskRef] = set()

# Callables already referenced: callable -> (reference, module name, attribute path). A hit is
# checked again on every use by walking sys.modules (no import, no string building), so a
# function redefined since (a reload, a monkeypatch) is not served the reference of its
# replacement, and is refused as it would be without the cache.
_known: dict[Any, tuple[TaskRef, str, tuple[str, ...]]] = {}
_KNOWN_MAX = 1024  # a program that makes module-level functions on the fly must not grow it forever


def target(task: Callable[..., Any] | str) -> tuple[TaskRef, Callable[..., Any] | None]:
    """The reference of ``task`` and its function, checked as :func:`reference` does.

    For a string naming a module not imported in this process, the module was found, not run:
    the function is a stand-in read from its source (:func:`signatures.declared`), or None when
    the source does not say plainly what it takes.
    """
    if isinstance(task, str):
        if task in _checked:
            return task, resolve(task)
        if _parse(task)[0] in sys.modules:
            return reference(task), resolve(task)
        ref = reference(task)
        module_name, attr_path = _parse(ref)
        spec = _found.get(module_name)
        return ref, None if spec is None else signatures.declared(spec.origin, attr_path)
    return reference(task), task


def reference(task: Callable[..., Any] | str) -> TaskRef:
    """Return the reference of ``task`` after checking that it imports back to a callable.

    A string naming a module not imported here is checked without importing it: the module
    must be findable (see :func:`_find_module`); whether it holds the function, the worker
    checks.
    """
    if isinstance(task, str):
        if task not in _checked:
            module_name = _parse(task)[0]
            if module_name in sys.modules:
                resolve(task)
                _checked.add(task)
            elif module_name not in _found:
                spec = _find_module(module_name, task)
                if len(_found) >= _KNOWN_MAX:
                    _found.clear()
                _found[module_name] = spec
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


# Modules found without importing them, with their specs; once one is imported, its references
# are checked by resolve instead.
_found: dict[str, Any] = {}


def _parse(ref: TaskRef) -> tuple[str, str]:
    """(module name, attribute path) of a well-formed reference; InvalidTask otherwise."""
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise InvalidTask(f"task reference must look like 'package.module:function', not {ref!r}")
    module_name, _, attr_path = ref.partition(":")
    if not all(part.isidentifier() for part in module_name.split(".")) \
            or not all(part.isidentifier() for part in attr_path.split(".")):
        raise InvalidTask(f"task reference must look like 'package.module:function', not {ref!r}")
    return module_name, attr_path


def _find_module(module_name: str, ref: TaskRef) -> Any:
    """Check that ``module_name`` can be imported, without running it or its packages.

    ``importlib.util.find_spec("a.b.c")`` would import ``a`` and ``a.b`` to read their
    ``__path__``; instead the top-level name is looked up as import would (sys.meta_path, no
    import), then each submodule in its parent's directories as its files say. The limit: a
    package whose ``__init__`` rewrites its own ``__path__`` or installs an import hook is
    searched without that, and a module that is found may still fail to import in the worker
    (a syntax error, a missing dependency): that attempt fails and is retried, as any import
    error is.
    """
    parts = module_name.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])
        for depth in range(2, len(parts) + 1):
            if spec is None:
                break
            name = ".".join(parts[:depth])
            loaded = sys.modules.get(name)
            if loaded is not None:
                spec = getattr(loaded, "__spec__", None)
                continue
            if spec.submodule_search_locations is None:  # a module, not a package
                spec = None
                break
            spec = _find_in(name, list(spec.submodule_search_locations))
    except (ImportError, ValueError) as exc:
        raise InvalidTask(f"cannot find module {module_name!r} of task {ref}: {exc}") from exc
    if spec is None:
        raise InvalidTask(f"cannot find module {module_name!r} of task {ref}")
    return spec


def _find_in(name: str, path: list[str]) -> Any:
    """The spec of submodule ``name`` in its parent's ``path``, as import's finders see it."""
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is not None:
            spec = find_spec(name, path, None)
            if spec is not None:
                return spec
    return None


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
    module_name, attr_path = _parse(ref)
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
            raise TaskNotFound(f"task {ref}: {module_name} has no attribute {attr_path!r}",
                               task=ref) from exc
    if not callable(target):
        raise TaskNotFound(f"task {ref} is not callable", task=ref)
    return target
