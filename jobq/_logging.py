"""Loggers that import structlog when an event is first logged.

structlog, with the asyncio it imports, is about half of a worker's start-up (some 50 ms here),
and a worker's first job needs none of it. Every jobq module takes its logger from here; the
command line's configuration (:func:`configure_when_used`) is applied when structlog is first
imported, and its level answers ``is_enabled_for`` until then.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

_configure: Callable[[], None] | None = None
_level: int | None = None  # least level the configuration lets through, once configured


def configure_when_used(configure: Callable[[], None], level: int) -> None:
    """Run ``configure`` (which sets up structlog) now if structlog is loaded, else on first use."""
    global _configure, _level
    _level = level
    if "structlog" in sys.modules:
        _configure = None
        configure()
    else:
        _configure = configure


def _structlog() -> Any:
    global _configure
    import structlog

    if _configure is not None:
        configure, _configure = _configure, None
        configure()
    return structlog


class Logger:
    """A structlog logger made on first use; ``bind`` and ``is_enabled_for`` stay lazy."""

    __slots__ = ("_name", "_context", "_logger")

    def __init__(self, name: str, context: dict[str, Any] | None = None) -> None:
        self._name = name
        self._context = context or {}
        self._logger: Any = None

    def bind(self, **context: Any) -> Logger:
        return Logger(self._name, {**self._context, **context})

    def is_enabled_for(self, level: int) -> bool:
        if self._logger is None and _level is not None:
            return level >= _level
        check = getattr(self._real(), "is_enabled_for", None)
        return True if check is None else bool(check(level))

    def __getattr__(self, name: str) -> Any:  # debug, info, warning...: the real logger's
        return getattr(self._real(), name)

    def _real(self) -> Any:
        if self._logger is None:
            # Unbound: structlog's lazy proxy, which reads the configuration at every event (so
            # structlog.testing.capture_logs sees it). Bound: made once, as structlog's bind does.
            logger = _structlog().get_logger(self._name)
            self._logger = logger.bind(**self._context) if self._context else logger
        return self._logger


def get_logger(name: str) -> Logger:
    return Logger(name)


class BatchingWriter:
    """A structlog logger writing each event with one ``write()`` (so processes sharing a
    stderr never interleave their lines), or, inside :func:`batched`, all of a batch's events
    with one: a worker child logs a hundred finished jobs after each commit."""

    def __init__(self, file: Any) -> None:
        self._file = file

    def msg(self, message: str) -> None:
        if _pending is not None:
            _pending.append(message)
            return
        self._file.write(message + "\n")
        self._file.flush()

    log = debug = info = warn = warning = error = critical = exception = fatal = failure = msg
    err = msg

    def flush(self) -> None:
        self._file.flush()


_pending: list[str] | None = None
_batch_file: Any = None


def writer_factory(file: Any) -> Callable[..., BatchingWriter]:
    """structlog's ``logger_factory`` for :class:`BatchingWriter` on ``file``."""
    global _batch_file
    _batch_file = file
    writer = BatchingWriter(file)
    return lambda *args: writer


class batched:  # noqa: N801 - used as a context manager, like contextlib's
    """Inside: events are kept, then written together on exit (one write per batch)."""

    def __enter__(self) -> None:
        global _pending
        _pending = []

    def __exit__(self, *exc: object) -> None:
        global _pending
        lines, _pending = _pending, None
        if not lines or _batch_file is None:
            return
        # Whole lines, at most PIPE_BUF bytes per write: a write to a pipe (a service manager's,
        # a container's) is atomic only up to that size, and other processes share the pipe.
        chunk: list[str] = []
        size = 0
        for line in lines:
            if chunk and size + len(line) + 1 > _ATOMIC:
                _write(chunk)
                chunk, size = [], 0
            chunk.append(line)
            size += len(line) + 1  # characters: a close enough bound for JSON's ASCII output
        _write(chunk)


_ATOMIC = 4096  # PIPE_BUF on Linux


def _write(lines: list[str]) -> None:
    _batch_file.write("\n".join(lines) + "\n")
    _batch_file.flush()
