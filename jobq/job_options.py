"""The per-job options of an enqueue, validated once per call, before anything is built or written.

Kept apart from :class:`jobq.queue.Queue` so that every way of making jobs (one, many, and the
workflows built on them) checks the same options the same way, with the same messages.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from .errors import InvalidJob

_I32 = 2**31 - 1
_I64 = 2**63 - 1


class Options(NamedTuple):
    priority: int
    delay: float
    max_attempts: int
    timeout: float | None


def validate(priority: int, delay: float | None, max_attempts: int | None,
             timeout: float | None, *, default_max_attempts: int) -> Options:
    """The options as stored, or InvalidJob naming the first one out of range."""
    if not isinstance(priority, int) or isinstance(priority, bool) or abs(priority) > _I64:
        raise InvalidJob(f"priority must be an integer, not {priority!r}")
    if delay is not None and (not is_number(delay) or not math.isfinite(delay) or delay < 0):
        raise InvalidJob(f"delay must be a finite number of seconds >= 0, not {delay!r}")
    if max_attempts is None:
        max_attempts = default_max_attempts
    if not isinstance(max_attempts, int) or isinstance(max_attempts, bool) \
            or not 1 <= max_attempts <= _I32:
        raise InvalidJob(f"max_attempts must be an integer >= 1, not {max_attempts!r}")
    if timeout is not None and (not is_number(timeout) or not math.isfinite(timeout)
                                or timeout <= 0):
        raise InvalidJob(f"timeout must be a positive number of seconds, not {timeout!r}")
    return Options(priority, float(delay or 0.0), max_attempts,
                   None if timeout is None else float(timeout))


def args_tuple(args: Iterable[Any]) -> tuple[Any, ...]:
    """A job's positional arguments as stored; InvalidJob for a string or a non-iterable."""
    if isinstance(args, (str, bytes)) or not isinstance(args, Iterable):
        raise InvalidJob(f"args must be a tuple or list, not {type(args).__name__}")
    return tuple(args)


def kwargs_dict(kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """A job's keyword arguments as stored; InvalidJob unless a mapping with string keys."""
    if kwargs is None:
        return {}
    if not isinstance(kwargs, Mapping):
        raise InvalidJob(f"kwargs must be a mapping, not {type(kwargs).__name__}")
    if not all(isinstance(k, str) for k in kwargs):
        raise InvalidJob("kwargs keys must be strings")
    return dict(kwargs)


def is_number(value: object) -> bool:
    """An int or float, and not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
