"""The ``jobq`` command line. Errors are one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import structlog

from . import __version__, demo
from .errors import JobqError
from .queue import Queue


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobq", description="A persistent job queue that needs"
                                     " no server.")
    parser.add_argument("--version", action="version", version=f"jobq {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log every job transition (to stderr)")
    sub = parser.add_subparsers(dest="command", required=True)
    demo_cmd = sub.add_parser("demo", help="enqueue and run resumable jobs, showing a resume")
    demo_cmd.add_argument("--dir", default=None,
                          help="queue directory (default: $JOBQ_HOME, else ./.jobq)")
    return parser


def configure_logging(verbose: bool) -> None:
    """Events go to stderr, so stdout stays for output a script can read."""
    level = logging.INFO if verbose else logging.WARNING
    structlog.configure(
        processors=[structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso"),
                    structlog.dev.ConsoleRenderer(colors=False)],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        with Queue(args.dir) as queue:
            if args.command == "demo":
                return demo.run(queue, sys.stdout)
    except JobqError as exc:
        print(f"jobq: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("jobq: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
