"""Checking a job's arguments against its task's signature, before the job is written or run.

A call that does not fit (``q.enqueue(f, 1, timeout=5)``, a missing argument, a misspelt
keyword) would raise ``TypeError`` on every attempt and die after spending them all; the
producer refuses it instead, and a worker sends such a job to ``dead`` at once.

The signature is read once per callable (``inspect.signature`` costs far more than an enqueue)
and kept with a precomputed shape: a call with positional arguments only, the usual one, is
checked by two comparisons, one with keywords by a few set lookups; only a call that these
find wrong goes through ``Signature.bind``, which decides and explains. The signature is
the callable's own (``follow_wrapped=False``): a decorator that adds or fills in arguments
declares ``*args, **kwargs`` and is not second-guessed from the function it wraps.

A task named by a string whose module the producer has not imported is checked from the
module's source, read and parsed but not run (:func:`declared`), when the source says plainly
what the function takes: one undecorated ``def`` of that name, bound nowhere else in the file.
Otherwise the worker checks it when it imports the module.
"""

from __future__ import annotations

import ast
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

from .errors import SignatureMismatch

_P = inspect.Parameter


class _Shape(NamedTuple):
    signature: inspect.Signature
    fewest: int  # positional arguments without a default
    most: int  # positional parameters (sys.maxsize with *args)
    positional: tuple[str, ...]  # names of the positional parameters, in order
    positional_only: int  # how many of them cannot be given by keyword
    by_keyword: frozenset[str]  # names a keyword argument may use
    required_keywords: frozenset[str]  # keyword-only parameters without a default
    any_keyword: bool  # **kwargs


_shapes: dict[Any, _Shape | None] = {}
_SHAPES_MAX = 1024  # a program that makes callables on the fly must not grow it forever


def check(fn: Callable[..., Any], ref: str, args: tuple[Any, ...], kwargs: dict[str, Any]
          ) -> None:
    """Raise SignatureMismatch unless ``fn(*args, **kwargs)`` binds to ``fn``'s parameters."""
    shape = _cached_shape(fn)
    if shape is None or _fits(shape, args, kwargs):
        return
    try:
        shape.signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise SignatureMismatch(f"task {ref}{_bare(shape.signature)} cannot be called with"
                                f" {_describe(args, kwargs)}: {exc}{_hint(shape, kwargs)}",
                                task=ref) from exc


def positional_counts(fn: Callable[..., Any]) -> range | None:
    """The numbers of positional arguments that surely fit ``fn`` when no keyword is given (a
    batch checks each call by one ``in``); None if none does, or ``fn`` has no signature."""
    shape = _cached_shape(fn)
    if shape is None or shape.required_keywords:
        return None
    return range(shape.fewest, shape.most + 1)


def _cached_shape(fn: Callable[..., Any]) -> _Shape | None:
    try:
        return _shapes[fn]
    except KeyError:
        shape = _shape_of(fn)
        if len(_shapes) >= _SHAPES_MAX:
            _shapes.clear()
        _shapes[fn] = shape
        return shape
    except TypeError:  # an unhashable callable object: read its signature every time
        return _shape_of(fn)


def _fits(shape: _Shape, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """True if the call surely binds; False sends it to ``Signature.bind`` to decide."""
    n = len(args)
    if n > shape.most:
        return False
    if not kwargs:
        return n >= shape.fewest and not shape.required_keywords
    keys = kwargs.keys()
    if not (shape.any_keyword or keys <= shape.by_keyword):
        return False  # a keyword no parameter takes
    if n and not keys.isdisjoint(shape.positional[:n]):
        return False  # given twice (or a positional-only name into **kwargs: bind decides)
    if n < shape.fewest and (n < shape.positional_only
                             or not keys >= set(shape.positional[n:shape.fewest])):
        return False
    return keys >= shape.required_keywords


def _shape_of(fn: Callable[..., Any]) -> _Shape | None:
    """The callable's shape; None if it has no signature to check against (some builtins)."""
    try:
        signature = inspect.signature(fn, follow_wrapped=False)
    except (TypeError, ValueError):
        return None
    fewest = most = positional_only = 0
    positional: list[str] = []
    by_keyword: set[str] = set()
    required_keywords: set[str] = set()
    any_keyword = False
    for param in signature.parameters.values():
        if param.kind in (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD):
            positional.append(param.name)
            most += 1
            if param.default is _P.empty:
                fewest = most
            if param.kind is _P.POSITIONAL_ONLY:
                positional_only = most
            else:
                by_keyword.add(param.name)
        elif param.kind is _P.VAR_POSITIONAL:
            most = sys.maxsize
        elif param.kind is _P.KEYWORD_ONLY:
            by_keyword.add(param.name)
            if param.default is _P.empty:
                required_keywords.add(param.name)
        else:
            any_keyword = True
    return _Shape(signature, fewest, most, tuple(positional), positional_only,
                  frozenset(by_keyword), frozenset(required_keywords), any_keyword)


class _Declared:
    """Stands for a function read from source, not imported: only its signature is known."""

    def __init__(self, signature: inspect.Signature) -> None:
        self.__signature__ = signature

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("a declared signature is not a function")


# Source files read: path -> (mtime_ns, {function name: stand-in}). The mtime is checked on
# every use, so a file changed by a deploy is read again rather than refuse calls it now takes.
_declared: dict[str, tuple[int, dict[str, _Declared]]] = {}
_DEFAULT = object()  # the default of a parameter read from source: its value does not matter


def declared(path: str | None, name: str) -> Callable[..., Any] | None:
    """A stand-in with the signature of ``def name`` in the Python source at ``path``, read
    without running it; None if the source does not say plainly what the function takes."""
    if not path or not path.endswith(".py"):
        return None
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        return None
    known = _declared.get(path)
    if known is None or known[0] != mtime:
        try:
            with open(path, "rb") as f:
                tree = ast.parse(f.read(), path)
        except (OSError, SyntaxError, ValueError):  # the worker's import will say what is wrong
            return None
        if len(_declared) >= _SHAPES_MAX:
            _declared.clear()
        known = _declared[path] = (mtime, _plain_defs(tree))
    return known[1].get(name)


def _plain_defs(tree: ast.Module) -> dict[str, _Declared]:
    """Top-level undecorated functions whose name nothing else in the file binds."""
    if any(isinstance(node, ast.alias) and node.name == "*" for node in ast.walk(tree)):
        return {}  # ``from m import *`` may rebind any name
    bindings: dict[str, int] = {}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            names = [node.id]
        elif isinstance(node, ast.alias):
            names = [(node.asname or node.name).partition(".")[0]]
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names = list(node.names)
        for name in names:
            bindings[name] = bindings.get(name, 0) + 1
    return {node.name: _Declared(_signature_of(node.args)) for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and not node.decorator_list and bindings.get(node.name) == 1}


def _signature_of(a: ast.arguments) -> inspect.Signature:
    positional = [(arg, _P.POSITIONAL_ONLY) for arg in a.posonlyargs] \
        + [(arg, _P.POSITIONAL_OR_KEYWORD) for arg in a.args]
    first_default = len(positional) - len(a.defaults)
    params = [_P(arg.arg, kind, default=_DEFAULT if i >= first_default else _P.empty)
              for i, (arg, kind) in enumerate(positional)]
    if a.vararg is not None:
        params.append(_P(a.vararg.arg, _P.VAR_POSITIONAL))
    params += [_P(arg.arg, _P.KEYWORD_ONLY, default=_P.empty if default is None else _DEFAULT)
               for arg, default in zip(a.kwonlyargs, a.kw_defaults)]
    if a.kwarg is not None:
        params.append(_P(a.kwarg.arg, _P.VAR_KEYWORD))
    return inspect.Signature(params)


def _bare(signature: inspect.Signature) -> str:
    """``(a, b=...)``: the parameters without annotations, which only lengthen an error."""
    return str(signature.replace(
        parameters=[p.replace(annotation=_P.empty, default=_P.empty if p.default is _P.empty
                              else _Ellipsis()) for p in signature.parameters.values()],
        return_annotation=inspect.Signature.empty))


class _Ellipsis:
    def __repr__(self) -> str:
        return "..."


# Keywords that are job options elsewhere (RQ's enqueue takes them): named in the error.
_OPTIONS = ("timeout", "job_timeout", "job_id", "priority", "delay", "max_attempts", "retry",
            "result_ttl", "ttl", "at_front", "depends_on", "description", "meta")


def _hint(shape: _Shape, kwargs: dict[str, Any]) -> str:
    params = shape.signature.parameters
    if any(p.kind is _P.VAR_KEYWORD for p in params.values()):
        return ""
    unknown = [k for k in kwargs if k not in params]
    options = [k for k in unknown if k in _OPTIONS]
    if options:
        return (f" ({', '.join(options)} is not a parameter of the task; job options go to"
                f" enqueue_call(fn, args, kwargs, {options[0]}=...))")
    if unknown:
        return f" (not parameters of the task: {', '.join(unknown)})"
    return ""


def _describe(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    parts = [f"{len(args)} positional argument{'' if len(args) == 1 else 's'}"]
    if kwargs:
        parts.append(f"keywords {', '.join(sorted(kwargs))}")
    return " and ".join(parts)
