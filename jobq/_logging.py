"""Loggers that import structlog when an event is first logged.

structlog, with the asyncio it imports, costs some 130 M instructions (30-50 ms) to import, and
``jobq --version``, ``import jobq`` or a queue opened by an application need none of it. Every
jobq module takes its logger from here; the command line's configuration
(:func:`configure_when_used`) is applied when structlog is first imported, and its level answers
``is_enabled_for`` until then. A worker imports it before forking its children (:func:`load`):
they all log.

Used as a library by an application that has not configured structlog, jobq logs info and above
to stderr (:func:`_unconfigured`). structlog's own default prints every event, debug included, to
stdout: a worker would write a line per claimed job into the application's output. Once the
application configures structlog, jobq's events follow its configuration.
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
DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40

_configure: Callable[[], None] | None = None
_level: int | None = None  # least level the configuration lets through, once configured
_defaults: dict[int, Any] = {}  # jobq's own loggers while structlog is unconfigured, by level


def configure_when_used(configure: Callable[[], None], level: int) -> None:
    """Run ``configure`` (which sets up structlog) now if structlog is loaded, else on first use."""
    global _configure, _level
    _level = level
    if "structlog" in sys.modules:
        _configure = None
        configure()
    else:
        _configure = configure


def load() -> None:
    """Import structlog now, and apply the command line's configuration if it waits.

    A worker's supervisor calls it before forking: its children inherit structlog instead of
    each importing it at its first event, while the supervisor imports it too (some 130 M
    instructions each, in processes that compete for the cores during a drain: issue 19).
    """
    _structlog()


def _structlog() -> Any:
    global _configure
    import structlog

    if _configure is not None:
        configure, _configure = _configure, None
        configure()
    return structlog


def processors(fmt: str) -> list[Any]:
    """structlog processors writing ``fmt`` ("json" or "console") lines with level and time.

    A worker writes an event per finished job, so the JSON line's cost counts: with the time
    stamper and encoder below, a worker's ``job.succeeded`` event costs 10.5 µs here instead of
    13.5 µs with structlog's ``TimeStamper`` and a ``JSONEncoder``'s ``encode``.
    """
    import structlog

    if fmt != "json":
        return [structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso"),
                structlog.dev.ConsoleRenderer(colors=False)]
    encode = json_encoder()

    def render(_logger: Any, _method: str, event: dict[str, Any]) -> str:
        # What structlog's JSONRenderer(serializer=...) does, without its two calls between
        # (one with keyword arguments): some 3,000 instructions of a worker's event a job.
        return encode(event)

    render.jobq_encode = encode  # type: ignore[attr-defined] # for direct_json
    return [structlog.processors.add_log_level, IsoTimeStamper(), render]


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


def auto_format(file: Any) -> str:
    """For people on a terminal, JSON lines for files and log collectors (structlog's advice)."""
    isatty = getattr(file, "isatty", None)
    return "console" if isatty is not None and isatty() else "json"


def _unconfigured(structlog: Any, level: int = INFO) -> Any:
    """jobq's logger while the application has not configured structlog: ``level`` and above, to
    whatever ``sys.stderr`` is when an event is written. It leaves structlog's global
    configuration alone, so the application's own structlog use is unchanged."""
    if level not in _defaults:
        _defaults[level] = structlog.wrap_logger(
            BatchingWriter(None), processors=processors(auto_format(sys.stderr)),
            wrapper_class=structlog.make_filtering_bound_logger(level))
    return _defaults[level]


class Logger:
    """A structlog logger made on first use; ``bind`` and ``is_enabled_for`` stay lazy.

    ``unconfigured_level``: the least level written while neither the command line nor the
    application configured structlog.
    """

    __slots__ = ("_name", "_context", "_logger", "_unconfigured", "_level")

    def __init__(self, name: str, context: dict[str, Any] | None = None,
                 unconfigured_level: int = INFO) -> None:
        self._name = name
        self._context = context or {}
        self._logger: Any = None
        self._unconfigured: Any = None  # this logger over _unconfigured(), once used
        self._level = unconfigured_level

    def bind(self, **context: Any) -> Logger:
        return Logger(self._name, {**self._context, **context}, self._level)

    def is_enabled_for(self, level: int) -> bool:
        if self._logger is None and _level is not None:
            return level >= _level
        check = getattr(self._real(), "is_enabled_for", None)
        return True if check is None else bool(check(level))

    def __getattr__(self, name: str) -> Any:  # debug, info, warning...: the real logger's
        return getattr(self._real(), name)

    def resolved(self) -> Any:
        """The structlog logger this one stands for, once made (then it stays the same), else
        this one. Code logging many events in a row calls it once and skips this layer: some
        6,500 instructions an event (a worker child logs one per job)."""
        return self if self._logger is None else self._logger

    def _real(self) -> Any:
        if self._logger is None:
            structlog = _structlog()
            if not structlog.is_configured():  # asked at every event: configuring comes later
                if self._unconfigured is None:
                    self._unconfigured = _unconfigured(structlog, self._level).bind(
                        **self._context)
                return self._unconfigured
            # Unbound: structlog's lazy proxy, which reads the configuration at every event (so
            # structlog.testing.capture_logs sees it). Bound: made once, as structlog's bind does.
            logger = structlog.get_logger(self._name)
            self._logger = logger.bind(**self._context) if self._context else logger
        return self._logger


def get_logger(name: str, *, unconfigured_level: int = INFO) -> Logger:
    return Logger(name, unconfigured_level=unconfigured_level)


def direct_json(logger: Any) -> Any:
    """``logger``, or where its chain is exactly jobq's JSON one into a :class:`BatchingWriter`
    (what ``jobq worker --log-format json`` configures), a :class:`DirectJson` over it.

    Asked once per batch by a worker child, whose every job logs an info event: structlog's
    calls between the logger and the encoder cost some 25,000 instructions an event (issue 19).
    Any other logger (capture_logs' chain, an application's processors) is returned as it is.
    """
    structlog = sys.modules.get("structlog")
    procs = getattr(logger, "_processors", None)
    if structlog is None or type(procs) is not list or len(procs) != 3:
        return logger
    if (procs[0] is not structlog.processors.add_log_level
            or type(procs[1]) is not IsoTimeStamper
            or getattr(procs[2], "jobq_encode", None) is None
            or type(getattr(logger, "_logger", None)) is not BatchingWriter
            or type(getattr(logger, "_context", None)) is not dict
            or type(logger) not in _info_loggers(structlog)):
        return logger
    return DirectJson(logger, procs[1], procs[2].jobq_encode)


_INFO_LOGGERS: set[type] = set()


def _info_loggers(structlog: Any) -> set[type]:
    """structlog's filtering loggers that let info events through (debug, info and notset)."""
    if not _INFO_LOGGERS:
        _INFO_LOGGERS.update(structlog.make_filtering_bound_logger(level)
                             for level in (0, DEBUG, INFO))
    return _INFO_LOGGERS


class DirectJson:
    """A structlog logger of jobq's JSON chain (see :func:`direct_json`) whose ``info`` writes
    the line that the chain would write, in one call: the same event dict built in the same
    order (context, fields, ``event``, ``level``, ``timestamp``), by the same time stamper and
    encoder, to the same writer. Anything else goes to the logger itself."""

    __slots__ = ("_logger", "_context", "_stamp", "_encode", "_writer", "_head", "_quote",
                 "_tasks")

    def __init__(self, logger: Any, stamp: IsoTimeStamper, encode: Callable[[Any], str]) -> None:
        from json.encoder import encode_basestring_ascii  # json is loaded: encode is json's

        self._logger, self._context, self._stamp = logger, logger._context, stamp
        self._encode, self._writer = encode, logger._logger
        # The line up to a job.succeeded event's own fields: the context, encoded once (None:
        # the context names one of those fields, which then takes the context's place).
        context = self._context
        self._head: str | None = None
        if context.keys().isdisjoint(_SUCCEEDED_KEYS):
            self._head = encode(context)[:-1] + ", " if context else "{"
        self._quote = encode_basestring_ascii  # a str as the encoder writes it (ensure_ascii)
        self._tasks: dict[str, str] = {}  # task -> its JSON string

    def info(self, event: str, *args: Any, **kw: Any) -> Any:
        if args:  # %-interpolation: structlog's own
            return self._logger.info(event, *args, **kw)
        event_dict = self._context.copy()
        event_dict.update(kw)
        event_dict["event"] = event
        event_dict["level"] = "info"
        self._writer.msg(self._encode(self._stamp(None, "info", event_dict)))
        return None

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

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)


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
