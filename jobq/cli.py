"""The ``jobq`` command line. Errors are one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

import structlog

from . import __version__, demo
from .errors import JobqError
from .queue import Queue

USAGE_ERROR = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobq", description="A persistent job queue that needs"
                                     " no server.")
    parser.add_argument("--version", action="version", version=f"jobq {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log every job transition (to stderr)")
    parser.add_argument("--log-format", choices=("console", "json"), default="console",
                        help="how events are written to stderr (json: one object per line)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", default=None,
                        help="queue directory (default: $JOBQ_HOME, else ./.jobq)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", parents=[common],
                   help="enqueue and run resumable jobs, showing a resume")
    worker = sub.add_parser("worker", parents=[common], help="run jobs until SIGTERM or SIGINT")
    worker.add_argument("-c", "--concurrency", type=int, default=1,
                        help="child processes running jobs (default 1)")
    worker.add_argument("--burst", action="store_true",
                        help="exit once nothing is ready, running or due to be retried")
    worker.add_argument("--import", dest="imports", action="append", default=[],
                        metavar="MODULE", help="import MODULE first (repeatable)")
    worker.add_argument("--shutdown-grace", type=float, default=30.0, metavar="S",
                        help="on SIGTERM/SIGINT, seconds running jobs get to finish (default 30)")
    worker.add_argument("--max-crashes", type=int, default=3, metavar="N",
                        help="crashed attempts before a job is set aside as dead (default 3)")
    return parser


def configure_logging(verbose: bool, fmt: str = "console") -> None:
    """Events go to stderr, so stdout stays for output a script can read."""
    level = logging.INFO if verbose else logging.WARNING
    renderer = (structlog.processors.JSONRenderer() if fmt == "json"
                else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso"), renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False)


def _import_all(modules: list[str]) -> None:
    # Like RQ and Celery: tasks of the project the worker is started from are importable.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise JobqError(f"cannot import {name}: {type(exc).__name__}: {exc}") from exc


def _worker(queue: Queue, args: argparse.Namespace) -> int:
    from workers import Worker  # the worker runtime is only loaded by the command that runs it
    _import_all(args.imports)
    Worker(queue, concurrency=args.concurrency, imports=tuple(args.imports),
           shutdown_grace=args.shutdown_grace, max_crashes=args.max_crashes).run(burst=args.burst)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # A worker's events are its log: info by default; other commands keep stderr quiet.
    configure_logging(args.verbose or args.command == "worker", args.log_format)
    try:
        with Queue(args.dir) as queue:
            if args.command == "demo":
                return demo.run(queue, sys.stdout)
            if args.command == "worker":
                return _worker(queue, args)
    except JobqError as exc:
        print(f"jobq: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("jobq: interrupted", file=sys.stderr)
        return 130
    return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
