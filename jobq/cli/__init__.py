"""The ``jobq`` command line. Errors are one line on stderr and a non-zero exit, never a traceback.

Exit status: 0 success; 1 an error (unknown job, bad input, a job that failed, verify found
problems); 2 a usage error (and for ``verify``, any error that kept it from checking);
124 ``wait`` timed out; 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn

from .. import __version__, _logging, config, listing
from ..engines import denied
from ..errors import JobqError, StorageError, transient
from ..state import Status
# Only what building the parser needs: a command's module is imported when the command runs
# (RUNNERS), so that `jobq worker` starts without the others (issue 19).
from . import commands, dashboard, limit, schedule, upkeep

USAGE_ERROR = 2
WAIT_FOR_STORAGE = 60.0  # seconds a starting worker waits for an unreachable server
STATUSES = [s.value for s in Status]
FINISHED = [s.value for s in Status if s.finished]


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line too (and exit 2), like every other error of the command."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse makes a formatter for every add_argument, which imports shutil (with bz2 and
        # lzma) to ask for the terminal's width: 2 ms of a worker's start (issue 19).
        return self.formatter_class(prog=self.prog, width=_help_width())


_width: int | None = None


def _help_width() -> int:
    """What argparse's help is wrapped to: ``shutil.get_terminal_size().columns - 2`` (COLUMNS,
    else the terminal of ``sys.__stdout__``, else 80), asked once."""
    global _width
    if _width is None:
        try:
            columns = int(os.environ.get("COLUMNS", "0"))
        except ValueError:
            columns = 0
        if columns <= 0:
            try:
                columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
            except (AttributeError, ValueError, OSError):
                columns = 0
        _width = (columns if columns > 0 else 80) - 2
    return _width


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Options of every command: given before the subcommand or after it (``jobq worker -v``).

    The subcommands' copies (``suppress``) default to SUPPRESS: else the subcommand's default
    would overwrite a value given before the subcommand.
    """
    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--version", action="version", version=f"jobq {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", default=default(False),
                        help="log every job transition (to stderr)")
    parser.add_argument("--log-format", choices=("auto", "console", "json"),
                        default=default("auto"),
                        help="how events are written to stderr (json: one object per line;"
                             " auto, the default: console on a terminal, else json)")
    parser.add_argument("--log-level", choices=tuple(LEVELS), default=default(None),
                        help="least severe events written (default: info for a worker, which"
                             " logs how each attempt ended; debug adds every claim)")
    parser.add_argument("--dir", default=default(None),
                        help="queue directory (default: $JOBQ_HOME, else ./.jobq)")


class _Retry(Exception):
    """A reduced parser (see :func:`_parse`) met an error: the whole parser reports it."""


class _ReducedParser(_Parser):
    def error(self, message: str) -> NoReturn:
        raise _Retry(message)


class _OnlyCommand:
    """The subparsers action of a parser reduced to the command ``only``: the others' parsers,
    and the arguments added to them, are not made."""

    def __init__(self, sub: Any, only: str) -> None:
        self._sub, self._only = sub, only

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        return self._sub.add_parser(name, **kwargs) if name == self._only else _NOT_MADE


class _NotMade:
    """Stands for the parser of a command not being parsed: every call does nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self


_NOT_MADE = _NotMade()


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """``_parser().parse_args(argv)``, in a quarter of the time when ``argv`` names a command.

    Making the parsers of every command costs 5 to 10 ms (argparse looks for translations of
    its messages for each), more than all the rest of a worker's start before its first job
    does besides importing (issue 19). So the command named is parsed by a parser that knows
    only it; anything that parser cannot accept (an error, a help request before the command)
    is parsed again by the whole parser, which says what is wrong in its own words.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command_of(argv)
    if command is not None:
        try:
            return _parser(only=command).parse_args(argv)
        except _Retry:
            pass
    return _parser().parse_args(argv)


_GLOBAL_WITH_VALUE = {"--dir", "--log-format", "--log-level"}


def _command_of(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names, if it surely names one: the first word that is no option
    (nor the value of one), before any ``-h``."""
    words = iter(argv)
    for word in words:
        if word in ("-h", "--help", "--"):
            return None
        if word in _GLOBAL_WITH_VALUE:
            next(words, None)
        elif not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser (``only``: knowing only that command, see :func:`_parse`)."""
    parser = (_Parser if only is None else _ReducedParser)(
        prog="jobq", description="A persistent job queue that needs no server.")
    _global_options(parser, suppress=False)
    common = _Parser(add_help=False)
    _global_options(common, suppress=True)
    reads = _Parser(add_help=False, parents=[common])
    reads.add_argument("--json", action="store_true", help="print JSON for scripts")
    sub: Any = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if only is not None:
        sub = _OnlyCommand(sub, only)

    p = sub.add_parser("enqueue", parents=[common], help="enqueue a job; prints its id")
    p.add_argument("task", help="the task, as 'package.module:function'")
    p.add_argument("args", nargs="*", metavar="ARG", help="arguments (JSON if they parse)")
    p.add_argument("--kwargs", metavar="JSON", help="keyword arguments as a JSON object")
    p.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
    p.add_argument("--delay", type=float, default=None, metavar="S", help="run after S seconds")
    p.add_argument("--max-attempts", type=int, default=None, metavar="N")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="kill an attempt after S seconds")
    p.add_argument("--id", default=None, help="job id (an existing id enqueues nothing)")
    p.add_argument("--depends-on", action="append", default=None, metavar="ID",
                   help="wait for job ID to succeed first (repeatable)")
    p.add_argument("--on-dependency-failure", choices=("cancel", "run"), default="cancel",
                   help="when a parent ends dead or cancelled: cancel this job (default), or"
                        " run it once every parent has ended")
    p.add_argument("--concurrency-key", default=None, metavar="KEY",
                   help="run within KEY's limits (jobq limit set KEY ...)")
    p.add_argument("--unique-key", default=None, metavar="KEY",
                   help="if a job of KEY has not ended, print its id and enqueue nothing")

    p = sub.add_parser("init", parents=[common],
                       help="create a queue, or share one with a group of users")
    p.add_argument("--shared-group", metavar="GROUP", default=None,
                   help="share the queue (new or existing) with GROUP: directories 2770, files"
                        " 0660, all of GROUP, for a producer and a worker running as different"
                        " users; run it as the queue's owner (or root), who must be in GROUP")

    p = sub.add_parser("worker", parents=[common], help="run jobs until SIGTERM or SIGINT")
    p.add_argument("-c", "--concurrency", type=int, default=1,
                   help="child processes running jobs (default 1)")
    p.add_argument("--burst", action="store_true",
                   help="exit once nothing is ready, running or due to be retried")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import MODULE first (repeatable)")
    p.add_argument("--wait-for-storage", type=_seconds, default=WAIT_FOR_STORAGE, metavar="S",
                   help="a PostgreSQL server that cannot be reached at start is tried again,"
                        f" with backoff, for up to S seconds (default {WAIT_FOR_STORAGE:g}; 0: fail"
                        " at once)")
    p.add_argument("--shutdown-grace", type=float, default=30.0, metavar="S",
                   help="on SIGTERM/SIGINT, seconds running jobs get to finish (default 30)")
    p.add_argument("--max-crashes", type=int, default=3, metavar="N",
                   help="crashed attempts before a job is set aside as dead (default 3)")
    p.add_argument("--compact-threshold", type=_bytes_or_off, default=None, metavar="BYTES",
                   help="compact the log once purges left about this many dead bytes in it"
                        " (default 64 MiB; 0 or off: never)")
    p.add_argument("--prefetch", type=int, default=None, metavar="N",
                   help="most jobs a child claims at once when its jobs are short (default 100;"
                        " 1: one at a time)")

    p = sub.add_parser("status", parents=[reads], help="counts by status, workers alive, running jobs")
    p.add_argument("--limit", type=int, default=20, help="running jobs to show (default 20)")
    p.add_argument("--exact", action="store_true",
                   help="count every job (slower on a big backlog; by default each status is"
                        f" counted up to {listing.ROUGH_CAP})")
    sub.add_parser("workers", parents=[reads],
                   help="workers: live, stuck or dead, and what each child runs")
    p = sub.add_parser("list", parents=[reads], help="jobs, newest first")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    p.add_argument("--group", metavar="GID", help="only the members of this group (q.map)")
    job_id_help = "the job's id, or a prefix of exactly one id"
    p = sub.add_parser("show", parents=[reads], help="one job: payload, state, errors; or a group (q.map)")
    p.add_argument("job_id", help=job_id_help)
    p = sub.add_parser("wait", parents=[reads], help="wait for a job, with a progress bar")
    p.add_argument("job_id", help=job_id_help)
    p.add_argument("--timeout", type=float, default=None, metavar="S")
    p = sub.add_parser("retry", parents=[common], help="re-queue a dead job (or all of them)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("job_id", nargs="?", help=job_id_help)
    target.add_argument("--all-dead", action="store_true")
    p = sub.add_parser("cancel", parents=[common], help="cancel a waiting or running job")
    p.add_argument("job_id", help=job_id_help)
    p = sub.add_parser("purge", parents=[common],
                       help="delete jobs that finished more than a given time ago")
    p.add_argument("--status", action="append", choices=FINISHED,
                   help="status to purge (repeatable; default: every finished status,"
                        f" {', '.join(FINISHED)})")
    p.add_argument("--older-than", required=True, metavar="DURATION",
                   help="finished more than this long ago: 90s, 15m, 12h, 7d, 2w (a unit is"
                        " required)")
    sub.add_parser("verify", parents=[reads],
                   help="check every job to run can be read; load every record and snapshot",
                   epilog=upkeep.VERIFY_EPILOG,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub.add_parser("compact", parents=[reads], help="rewrite the log without purged jobs")
    sub.add_parser("rekey", parents=[reads],
                   help="re-sign with the current secret key what old keys signed, so that"
                        " they can be dropped")
    p = sub.add_parser("backup", parents=[reads],
                       help="copy the queue, consistently, while it is in use")
    p.add_argument("dest", metavar="DEST", help="a new (or empty) directory for the copy")
    p = sub.add_parser("migrate", parents=[common],
                       help="create or upgrade the queue's storage (a PostgreSQL database's"
                            " jobq tables) now, rather than when first opened")
    p.add_argument("--check", action="store_true",
                   help="change nothing: exit 1 if an upgrade is pending")
    if only in (None, "schedule"):  # it imports jobq.schedule for its choices
        schedule.add_parser(sub, common, reads)
    limit.add_parser(sub, common, reads)
    dashboard.add_parser(sub, common)
    sub.add_parser("demo", parents=[common],
                   help="run resumable jobs, kill a worker mid-job, watch the job resume")
    return parser


def _bytes_or_off(text: str) -> int:
    """A byte count, with an optional K/M/G (binary) suffix; ``off`` is 0."""
    if text.strip().lower() == "off":
        return 0
    units = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    match = re.fullmatch(r"\s*(\d+)\s*([kmg]?)(?:i?b)?\s*", text.lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a number of bytes: {text!r} (e.g. 64M, or off)")
    return int(match.group(1)) * units[match.group(2)]


def _seconds(text: str) -> float:
    """A duration in seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r} (e.g. 60, or 0)")
    return value


LEVELS = {"debug": _logging.DEBUG, "info": _logging.INFO, "warning": _logging.WARNING,
          "error": _logging.ERROR}


def configure_logging(verbose: bool = False, fmt: str = "auto", level: int | None = None
                      ) -> None:
    """Events go to stderr, so stdout stays for output a script can read.

    Events below ``level`` cost almost nothing (a filtering logger drops them before any
    formatting), which matters for a worker running thousands of jobs a second. ``auto`` writes
    for people on a terminal and JSON to files and log collectors, as structlog recommends; JSON
    also costs half as much per event (10 against 20 µs here).
    """
    if level is None:
        level = _logging.INFO if verbose else _logging.WARNING
    if fmt == "auto":
        fmt = _logging.auto_format(sys.stderr)
    stderr, least = sys.stderr, level

    def apply() -> None:
        import structlog

        structlog.configure(
            processors=_logging.processors(fmt),
            wrapper_class=structlog.make_filtering_bound_logger(least),
            # One write() per event (message and newline together): the children of a worker
            # share its stderr, and events written in two pieces could interleave.
            logger_factory=_logging.writer_factory(stderr),
            cache_logger_on_first_use=False)

    # Applied when the first event is logged: a worker's first job need not wait for structlog.
    _logging.configure_when_used(apply, level)


def _worker(args: argparse.Namespace) -> int:
    # The worker runtime is only loaded by the command that runs it.
    from workers import Worker, WorkerConfig
    from workers.worker import import_modules

    commands.importable_cwd()
    options = dict(concurrency=args.concurrency, imports=tuple(args.imports),
                   shutdown_grace=args.shutdown_grace, max_crashes=args.max_crashes,
                   **({} if args.prefetch is None else {"prefetch": args.prefetch}),
                   **({} if args.compact_threshold is None
                      else {"compact_threshold": args.compact_threshold}))
    # Checked before the queue is opened: a refused worker leaves no new queue behind.
    import_modules(WorkerConfig(**options).imports)
    with _open_when_reachable(args, args.wait_for_storage) as queue:
        if queue.created:
            from .._logging import get_logger
            get_logger("jobq.cli").warning(
                "worker.queue_created", queue=queue.location, queue_from=queue.config.origin,
                message=f"this worker created a new, empty queue at"
                        f" {config.describe(queue.config)} and waits for jobs there: if you"
                        " meant an existing queue, stop it and give that one's --dir")
        Worker(queue, **options).run(burst=args.burst)
    return 0


def _open_when_reachable(args: argparse.Namespace, patience: float) -> Any:
    """The worker's queue, once its storage answers: a worker started before its database
    server (a host booting, a container started first) waits for it, up to ``patience``
    seconds, instead of failing; an error that waiting cannot fix fails at once."""
    from workers.outage import Outage, sleep_unless
    from .._logging import get_logger

    outage = Outage(get_logger("jobq.cli"))
    deadline = time.monotonic() + patience
    while True:
        try:
            queue = commands.open_queue(args, create=True, for_worker=True)
        except StorageError as exc:
            left = deadline - time.monotonic()
            if not transient(exc):
                raise
            if left <= 0:
                if patience <= 0:
                    raise
                raise StorageError(f"{exc} (still unreachable after {patience:g} s:"
                                   " --wait-for-storage)") from exc
            sleep_unless(min(outage.failed(exc), left), lambda: False)
            continue
        outage.recovered()
        return queue


# "module:function" of jobq.cli, imported when its command runs.
RUNNERS = {"enqueue": "commands:enqueue", "status": "status_view:status",
           "list": "commands:list_jobs", "show": "commands:show", "wait": "commands:wait",
           "retry": "commands:retry", "cancel": "commands:cancel", "purge": "upkeep:purge",
           "verify": "upkeep:verify", "compact": "upkeep:compact", "backup": "upkeep:backup",
           "workers": "worker_view:workers", "rekey": "key_view:rekey", "schedule": "schedule:run",
           "limit": "limit:run",
           "migrate": "migrate:migrate", "dashboard": "dashboard:dashboard"}
COMMANDS = {*RUNNERS, "worker", "init", "demo"}  # a command missing here is parsed the slow way
NO_QUEUE_YET = {"migrate", "dashboard"}  # open the queue themselves
CREATES = {"enqueue"}


def _runner(command: str) -> Any:
    module, _, name = RUNNERS[command].partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    # A worker's events are its log: info by default; other commands keep stderr quiet.
    configure_logging(args.verbose or args.command == "worker", args.log_format,
                      LEVELS.get(args.log_level or ""))
    try:
        if args.command == "worker":
            return _worker(args)
        if args.command == "init":
            return commands.init(args, sys.stdout)
        if args.command in NO_QUEUE_YET:
            return _runner(args.command)(args, sys.stdout)
        if args.command == "demo":
            from .. import demo
            return demo.main(args.dir, sys.stdout)
        if args.command == "enqueue" and not commands.exists(config.build(args.dir).path):
            return commands.enqueue_into_new(args, sys.stdout)
        create = args.command in CREATES or getattr(args, "schedule_command", "") == "add" \
            or getattr(args, "limit_command", "") == "set"
        with commands.open_queue(args, create=create) as queue:
            return _runner(args.command)(queue, args, sys.stdout)
    except JobqError as exc:
        print(f"jobq: error: {exc}", file=sys.stderr)
        return upkeep.VERIFY_CANNOT_RUN if args.command == "verify" else 1
    except PermissionError as exc:  # one jobq did not foresee: still the file, owner and remedy
        print(f"jobq: error: {denied(exc, _root(args))}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("jobq: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `jobq list | head`: the reader left; that is not an error
        return 0


def _root(args: argparse.Namespace) -> str:
    try:
        return config.build(args.dir).path
    except JobqError:
        return args.dir or "."


if __name__ == "__main__":
    sys.exit(main())
