"""jobq's loggers: jobq's own JSON lines, or structlog imported when an event is first logged.

structlog, with the asyncio it imports, costs some 130 M instructions (30-50 ms) to import, and
``jobq --version``, ``import jobq`` or a queue opened by an application need none of it. Every
jobq module takes its logger from here. The command line's configuration
(:func:`configure_when_used`) is applied when structlog is first imported, and its level answers
``is_enabled_for`` until then.

In the command line's JSON format (``--log-format json``, or ``auto`` off a terminal: services,
collectors, benchmarks), jobq writes its lines itself (:mod:`jobq._json_lines`, the same bytes)
and never imports structlog: a worker's supervisor and children start without it (issue 19).
Once structlog is configured, by the application or by the command line's configuration applied
when the application imported it, jobq's events go through structlog from then on. With the
console format, a worker imports structlog before forking its children (:func:`load`).

Used as a library by an application that has not configured structlog, jobq logs info and above
to stderr (:func:`_unconfigured`). structlog's own default prints every event, debug included, to
stdout: a worker would write a line per claimed job into the application's output. Once the
application configures structlog, jobq's events follow its configuration.
"""

from __future__ import annotations

import sys

from ._json_lines import (CRITICAL, DEBUG, ERROR, INFO, WARNING, BatchingWriter,
                          IsoTimeStamper, JsonLogger, json_encoder)

TYPE_CHECKING = False  # typing costs a few ms to import: a type checker reads this block
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_configure: Callable[[], None] | None = None
_level: int | None = None  # least level the configuration lets through, once configured
_defaults: dict[int, Any] = {}  # jobq's own loggers while structlog is unconfigured, by level
_json_file: Any = None  # where the command line's JSON lines go, in that format
_json_root: JsonLogger | None = None  # their logger, made at the first event


def configure_when_used(configure: Callable[[], None], level: int, *, json_file: Any = None
                        ) -> None:
    """Run ``configure`` (which sets up structlog) now if structlog is loaded, else once it is
    imported. With ``json_file``, jobq's events are written there as JSON lines without
    structlog until structlog is configured (``configure`` must then write the same lines)."""
    global _configure, _level, _json_file, _json_root
    _level, _json_file, _json_root = level, json_file, None
    if "structlog" in sys.modules:
        _configure = None
        configure()
    else:
        _configure = configure
        if _ConfigureOnImport not in sys.meta_path:
            sys.meta_path.insert(0, _ConfigureOnImport)


def load() -> None:
    """Import structlog now, and apply the command line's configuration if it waits; in the
    command line's JSON format, nothing: jobq's lines need no structlog.

    A worker's supervisor calls it before forking: its children inherit structlog instead of
    each importing it at its first event, while the supervisor imports it too (some 130 M
    instructions each, in processes that compete for the cores during a drain: issue 19).
    """
    if _json_file is None:
        _structlog()


def _structlog() -> Any:
    import structlog  # _ConfigureOnImport applies a configuration waiting for it

    _apply_waiting(structlog)
    return structlog


def _apply_waiting(structlog: Any) -> None:
    """The command line's configuration, unless the application configured structlog first."""
    global _configure
    if _configure is not None:
        configure, _configure = _configure, None
        if not structlog.is_configured():
            configure()


class _ConfigureOnImport:
    """A finder that finds nothing but structlog, whose import it completes with the command
    line's configuration while that waits: the application's own events then keep the command
    line's format, as when jobq imported structlog first, and its own ``configure`` (after the
    import) wins."""

    @staticmethod
    def find_spec(name: str, path: Any = None, target: Any = None) -> Any:
        if name != "structlog" or _configure is None:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is _ConfigureOnImport or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _ConfiguringLoader(spec.loader)
                return spec
        return None


class _ConfiguringLoader:
    """structlog's loader, then :func:`_apply_waiting`."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        module.__loader__ = module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        if _ConfigureOnImport in sys.meta_path:  # its work is done
            sys.meta_path.remove(_ConfigureOnImport)
        _apply_waiting(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


def _configured_structlog() -> bool:
    """Is structlog loaded (not half-imported by another thread) and configured?"""
    structlog = sys.modules.get("structlog")
    return (structlog is not None
            and not getattr(getattr(structlog, "__spec__", None), "_initializing", False)
            and structlog.is_configured())


def _own_json() -> JsonLogger:
    global _json_root
    if _json_root is None:
        _json_root = JsonLogger({}, INFO if _level is None else _level,
                                BatchingWriter(_json_file))
    return _json_root


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
    """A structlog logger made on first use (in the command line's JSON format, a
    :class:`JsonLogger` until structlog is configured); ``bind`` and ``is_enabled_for`` stay
    lazy.

    ``unconfigured_level``: the least level written while neither the command line nor the
    application configured structlog.
    """

    __slots__ = ("_name", "_context", "_logger", "_unconfigured", "_level", "_own")

    def __init__(self, name: str, context: dict[str, Any] | None = None,
                 unconfigured_level: int = INFO) -> None:
        self._name = name
        self._context = context or {}
        self._logger: Any = None
        self._unconfigured: Any = None  # this logger over _unconfigured(), once used
        self._level = unconfigured_level
        # (_own_json(), this logger over it), once used: made again if the CLI configures again
        self._own: tuple[JsonLogger, JsonLogger] | None = None

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
        """The structlog logger this one stands for, once made (then it stays the same), in the
        command line's JSON format the :class:`JsonLogger` while structlog is not configured,
        else this one. Code logging many events in a row calls it once and skips this layer:
        some 6,500 instructions an event (a worker child logs one per job)."""
        if self._logger is None:
            return self if _json_file is None else self._real()
        return self._logger

    def _real(self) -> Any:
        if self._logger is None:
            if _json_file is not None and not _configured_structlog():  # asked at every event
                root = _own_json()
                if self._own is None or self._own[0] is not root:
                    self._own = (root, root.bind(**self._context))
                return self._own[1]
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
    (the command line's, once structlog is loaded), a :class:`JsonLogger` writing its lines.

    Asked once per batch by a worker child, whose every job logs an info event: structlog's
    calls between the logger and the encoder cost some 25,000 instructions an event (issue 19).
    Any other logger (capture_logs' chain, an application's processors) is returned as it is.
    """
    if type(logger) is JsonLogger:
        return logger
    structlog = sys.modules.get("structlog")
    procs = getattr(logger, "_processors", None)
    if structlog is None or type(procs) is not list or len(procs) != 3:
        return logger
    level = _filtering_levels(structlog).get(type(logger))
    if (procs[0] is not structlog.processors.add_log_level
            or type(procs[1]) is not IsoTimeStamper
            or getattr(procs[2], "jobq_encode", None) is None
            or type(getattr(logger, "_logger", None)) is not BatchingWriter
            or type(getattr(logger, "_context", None)) is not dict
            or level is None):
        return logger
    return JsonLogger(logger._context, level, logger._logger, procs[1], procs[2].jobq_encode,
                      twin=logger)


_FILTERING_LEVELS: dict[type, int] = {}


def _filtering_levels(structlog: Any) -> dict[type, int]:
    """structlog's filtering loggers, and the least level each lets through."""
    if not _FILTERING_LEVELS:
        _FILTERING_LEVELS.update((structlog.make_filtering_bound_logger(level), level)
                                 for level in (0, DEBUG, INFO, WARNING, ERROR, CRITICAL))
    return _FILTERING_LEVELS
