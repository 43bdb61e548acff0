"""jobq's JSON log lines, written without structlog, and the writer they go through.

``jobq worker --log-format json`` (and ``auto`` off a terminal, as services and benchmarks run
it) writes its events with :class:`JsonLogger`: the lines structlog writes through
``jobq._logging.processors("json")`` and ``make_filtering_bound_logger(level)``, byte for byte,
without importing structlog (with the asyncio it imports, some 130 M instructions in the
supervisor and in each child: issue 19). :mod:`jobq._logging` decides when jobq's events go
through structlog instead (an application that configured it).
"""

from __future__ import annotations

import os
import sys
import threading
import time

TYPE_CHECKING = False  # typing costs a few ms to import: a type checker reads this block
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

# The standard library's levels (logging.DEBUG...), which structlog uses too: importing logging
# for them would cost a worker's start some 3 ms (issue 19).
DEBUG, INFO, WARNING, ERROR, CRITICAL = 10, 20, 30, 40, 50


class IsoTimeStamper:
    """structlog's ``TimeStamper(fmt="iso")`` (UTC, ``...T10:21:23.081729Z``) in half the time:
    the date and time of day are formatted once a second, the microseconds at every event."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, _logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
        event["timestamp"] = self.stamp()
        return event

    def stamp(self) -> str:
        """The time stamp of now (printable ASCII, nothing JSON escapes)."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._prefix}.{int((now - second) * 1e6):06d}Z"


def json_encoder() -> Callable[[Any], str]:
    """``json.dumps(obj, default=repr)``, without building an encoder at every call.

    ``JSONEncoder.encode`` makes a new C encoder per call, half of its cost for a small event;
    this makes one and keeps it. It falls back to ``encode`` where the C encoder is missing or
    does not take these arguments (another Python).
    """
    import json  # here: `jobq --version` and a worker's start need none of it (issue 19)

    slow = json.JSONEncoder(default=repr).encode
    make = getattr(json.encoder, "c_make_encoder", None)
    try:
        fast = make(None, repr, json.encoder.encode_basestring_ascii, None, ": ", ", ", False,
                    False, True)  # markers, default, encoder, indent, separators, sort_keys,
        # skipkeys, allow_nan: JSONEncoder's defaults, without the circular reference check
        sample = {"event": "x", "n": 1, "f": 0.5, "nan": float("nan"), "o": object, "u": "é"}
        if "".join(fast(sample, 0)) != slow(sample):
            return slow
    except Exception:  # no C encoder, or another signature: the plain way
        return slow
    return lambda obj: "".join(fast(obj, 0))


def _level_method(level: int, name: str) -> Callable[..., None]:
    """A :class:`JsonLogger` method writing at ``level``, as structlog's filtering logger's."""

    def log(self: JsonLogger, event: str, *args: Any, **kw: Any) -> None:
        if level < self._level:
            return None
        if args:  # %-interpolation, which structlog's versions do differently: theirs
            return getattr(self._structlog(), name)(event, *args, **kw)
        # The event dict as structlog's BoundLoggerBase builds it, then add_log_level,
        # IsoTimeStamper and the encoder: keys in the same order, the same values.
        event_dict = self._context.copy()
        event_dict.update(kw)
        if event is not None:
            event_dict["event"] = event
        event_dict["level"] = name
        event_dict["timestamp"] = self._stamp.stamp()
        self._writer.msg(self._encode(event_dict))
        return None

    log.__name__ = log.__qualname__ = name
    return log


class JsonLogger:
    """A structlog filtering logger of jobq's JSON chain into a :class:`BatchingWriter`, without
    structlog: the same lines, the same level filtering, one write per event (or per
    :class:`batched` batch). What jobq does not call (%-style arguments, ``log``, ``unbind``,
    the async methods...) goes to the structlog logger of that chain, imported then.

    ``stamp`` and ``encode``: a structlog chain's own, where this logger writes for one
    (:func:`jobq._logging.direct_json`, with ``twin`` that logger).
    """

    __slots__ = ("_context", "_level", "_writer", "_stamp", "_encode", "_twin", "_head",
                 "_quote", "_tasks")

    def __init__(self, context: dict[str, Any], level: int, writer: BatchingWriter,
                 stamp: IsoTimeStamper | None = None, encode: Callable[[Any], str] | None = None,
                 twin: Any = None) -> None:
        self._context, self._level, self._writer, self._twin = context, level, writer, twin
        self._stamp = IsoTimeStamper() if stamp is None else stamp
        self._encode = json_encoder() if encode is None else encode
        from json.encoder import encode_basestring_ascii  # json is loaded: the encoder is json's

        self._quote = encode_basestring_ascii  # a str as the encoder writes it (ensure_ascii)
        # The line up to a job.succeeded event's own fields: the context, encoded once (None: the
        # event is filtered out, or the context names one of its fields, which then takes the
        # context's place; succeeded() then goes through info()).
        self._head: str | None = None
        if level <= INFO and context.keys().isdisjoint(_SUCCEEDED_KEYS):
            self._head = self._encode(context)[:-1] + ", " if context else "{"
        self._tasks: dict[str, str] = {}  # task -> its JSON string

    def bind(self, **new_values: Any) -> JsonLogger:
        return JsonLogger({**self._context, **new_values}, self._level, self._writer,
                          self._stamp, self._encode)

    def new(self, **new_values: Any) -> JsonLogger:
        self._context.clear()  # as structlog's new() does: its own context too
        return self.bind(**new_values)

    def is_enabled_for(self, level: int) -> bool:
        return level >= self._level

    debug = _level_method(DEBUG, "debug")
    info = msg = _level_method(INFO, "info")
    warning = warn = _level_method(WARNING, "warning")
    error = _level_method(ERROR, "error")
    critical = fatal = _level_method(CRITICAL, "critical")

    def exception(self, event: str, *args: Any, **kw: Any) -> None:
        # structlog's: an error with exc_info (which jobq's chain writes as it is, as it has no
        # processor formatting it)
        kw.setdefault("exc_info", True)
        return self.error(event, *args, **kw)

    def succeeded(self, job_id: str, task: str, attempt: int, duration: float) -> None:
        """``info("job.succeeded", job_id=..., task=..., attempt=..., status="succeeded",
        duration=...)``: a worker's event a job, written as the JSON encoder writes it.

        The encoder spends some 25,800 instructions on the event's dict (issue 19); its
        constant parts are written here once and its values escaped as the encoder escapes
        them (``encode_basestring_ascii``; ``repr`` for the number). Values of other types (a
        bool, a subclass, NaN) go through :meth:`info`.
        """
        head = self._head
        if (head is None or type(job_id) is not str or type(task) is not str
                or type(attempt) is not int or type(duration) is not float
                or duration - duration != 0.0):  # NaN or infinite
            self.info("job.succeeded", job_id=job_id, task=task, attempt=attempt,
                      status="succeeded", duration=duration)
            return
        quoted = self._tasks.get(task)
        if quoted is None:
            quoted = self._tasks[task] = self._quote(task)
        self._writer.msg(f'{head}"job_id": {self._quote(job_id)}, "task": {quoted}, "attempt":'
                         f' {attempt}, "status": "succeeded", "duration": {duration}, "event":'
                         f' "job.succeeded", "level": "info", "timestamp":'
                         f' "{self._stamp.stamp()}"}}')

    def _structlog(self) -> Any:
        """The structlog logger whose lines this one writes (structlog imported now)."""
        if self._twin is None:
            import structlog

            from ._logging import processors

            self._twin = structlog.make_filtering_bound_logger(self._level)(
                self._writer, processors("json"), self._context)
        return self._twin

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # a structlog logger's innards, looked for by direct_json
            raise AttributeError(name)
        return getattr(self._structlog(), name)


_SUCCEEDED_KEYS = frozenset({"job_id", "task", "attempt", "status", "duration", "event", "level",
                             "timestamp"})


class BatchingWriter:
    """A structlog logger writing each event with one ``write()`` (so processes sharing a
    stderr never interleave their lines), or, inside :func:`batched`, all of a batch's events
    with one: a worker child logs a hundred finished jobs after each commit.

    ``file`` None writes to the ``sys.stderr`` of the moment (a test may swap it).
    """

    def __init__(self, file: Any) -> None:
        self._file = file

    @property
    def file(self) -> Any:
        return sys.stderr if self._file is None else self._file

    def msg(self, message: str) -> None:
        batch = _batch.__dict__
        if batch:  # inside batched(), in this thread
            batch["lines"].append(message)
            batch["writer"] = self
            return
        _write(self, [message])

    log = debug = info = warn = warning = error = critical = exception = fatal = failure = msg
    err = msg

    def flush(self) -> None:
        self.file.flush()


# The batch of this thread, inside batched(): its "lines" and the "writer" that kept them (a
# worker child's watcher thread logs the jobs it records while the main thread logs its own).
_batch = threading.local()


def writer_factory(file: Any) -> Callable[..., BatchingWriter]:
    """structlog's ``logger_factory`` for :class:`BatchingWriter` on ``file``."""
    writer = BatchingWriter(file)
    return lambda *args: writer


class batched:  # noqa: N801 - used as a context manager, like contextlib's
    """Inside: events are kept, then written together on exit (one write per batch)."""

    def __enter__(self) -> None:
        _batch.lines = []

    def __exit__(self, *exc: object) -> None:
        batch = _batch.__dict__
        lines, writer = batch.get("lines"), batch.get("writer")
        batch.clear()
        if not lines or writer is None:
            return
        # Whole lines, at most PIPE_BUF bytes per write: a write to a pipe (a service manager's,
        # a container's) is atomic only up to that size, and other processes share the pipe.
        chunk: list[str] = []
        size = 0
        for line in lines:
            if chunk and size + len(line) + 1 > _ATOMIC:
                _write(writer, chunk)
                chunk, size = [], 0
            chunk.append(line)
            size += len(line) + 1  # characters: a close enough bound for JSON's ASCII output
        _write(writer, chunk)


_ATOMIC = 4096  # PIPE_BUF on Linux


_write_lock = threading.Lock()  # text files are not thread-safe: one write and flush at a time


def _new_write_lock() -> None:
    # A thread of the parent may have held it at the fork (as logging's handlers do).
    global _write_lock
    _write_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_write_lock)


def _write(writer: BatchingWriter, lines: list[str]) -> None:
    file = writer.file
    with _write_lock:
        file.write("\n".join(lines) + "\n")
        file.flush()
