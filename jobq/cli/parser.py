"""The ``jobq`` command line's parser, built for the command being run only (issue 19).

Making the parsers of every command costs 5 to 10 ms (argparse looks for translations of its
messages for each), and some commands' parsers need modules a worker does not (the schedule's
choices, the queue): so each command's parser is made by a function of its own, imported with
what it needs only when that command is parsed.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence

from .. import __version__
from .._logging import DEBUG, ERROR, INFO, WARNING

TYPE_CHECKING = False  # typing costs a few ms to import: a type checker reads this block
if TYPE_CHECKING:
    from typing import Any, NoReturn

USAGE_ERROR = 2
WAIT_FOR_STORAGE = 60.0  # seconds a starting worker waits for an unreachable server
LEVELS = {"debug": DEBUG, "info": INFO, "warning": WARNING, "error": ERROR}


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
    """A reduced parser (see :func:`parse`) met an error: the whole parser reports it."""


class _ReducedParser(_Parser):
    def error(self, message: str) -> NoReturn:
        raise _Retry(message)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser().parse_args(argv)``, in a quarter of the time when ``argv`` names a command.

    The command named is parsed by a parser that knows only it (``jobq --version``: by one that
    knows none); anything that parser cannot accept (an error, a help request before the
    command) is parsed again by the whole parser, which says what is wrong in its own words.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    command = command_of(argv)
    if command is not None:
        try:
            return parser(only=command).parse_args(argv)
        except _Retry:
            pass
    return parser().parse_args(argv)


_GLOBAL_WITH_VALUE = {"--dir", "--log-format", "--log-level"}


def command_of(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names, if it surely names one: the first word that is no option
    (nor the value of one), before any ``-h``; "" for a ``--version`` before any of them."""
    words = iter(argv)
    for word in words:
        if word in ("-h", "--help", "--"):
            return None
        if word == "--version":
            return ""
        if word in _GLOBAL_WITH_VALUE:
            next(words, None)
        elif not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser (``only``: knowing only that command, see :func:`parse`)."""
    top = (_Parser if only is None else _ReducedParser)(
        prog="jobq", description="A persistent job queue that needs no server.")
    _global_options(top, suppress=False)
    if only == "":
        return top
    common = _Parser(add_help=False)
    _global_options(common, suppress=True)
    reads = _Parser(add_help=False, parents=[common])
    reads.add_argument("--json", action="store_true", help="print JSON for scripts")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, add in _COMMANDS.items():
        if only is None or only == name:
            add(sub, common, reads)
    return top


JOB_ID_HELP = "the job's id, or a prefix of exactly one id"


def _enqueue(sub: Any, common: argparse.ArgumentParser, _: argparse.ArgumentParser) -> None:
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
    add_ttls(p, "the job")


def add_ttls(p: argparse.ArgumentParser, jobs: str) -> None:
    """``--result-ttl``/``--failure-ttl``, of a job or of those a schedule fires (``jobs``)."""
    p.add_argument("--result-ttl", type=_seconds, default=None, metavar="S",
                   help=f"delete {jobs} S seconds (or 15m, 12h, 7d...) after it succeeded or"
                        " was cancelled (default: keep it)")
    p.add_argument("--failure-ttl", type=_seconds, default=None, metavar="S",
                   help=f"delete {jobs} S seconds (or 15m, 12h, 7d...) after it ended dead"
                        " (default: keep it)")


def _init(sub: Any, common: argparse.ArgumentParser, _: argparse.ArgumentParser) -> None:
    p = sub.add_parser("init", parents=[common],
                       help="create a queue, or share one with a group of users")
    p.add_argument("--shared-group", metavar="GROUP", default=None,
                   help="share the queue (new or existing) with GROUP: directories 2770, files"
                        " 0660, all of GROUP, for a producer and a worker running as different"
                        " users; run it as the queue's owner (or root), who must be in GROUP")


def _worker(sub: Any, common: argparse.ArgumentParser, _: argparse.ArgumentParser) -> None:
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
                   help="most jobs a child claims at once when its jobs are short (default:"
                        " 500 on a directory, 250 on PostgreSQL; 1: one at a time)")


def _status(sub: Any, _: argparse.ArgumentParser, reads: argparse.ArgumentParser) -> None:
    from .. import listing

    p = sub.add_parser("status", parents=[reads], help="counts by status, workers alive, running jobs")
    p.add_argument("--limit", type=int, default=20, help="running jobs to show (default 20)")
    p.add_argument("--exact", action="store_true",
                   help="count every job (slower on a big backlog; by default each status is"
                        f" counted up to {listing.ROUGH_CAP})")


def _workers(sub: Any, _: argparse.ArgumentParser, reads: argparse.ArgumentParser) -> None:
    sub.add_parser("workers", parents=[reads],
                   help="workers: live, stuck or dead, and what each child runs")


def _list(sub: Any, _: argparse.ArgumentParser, reads: argparse.ArgumentParser) -> None:
    from ..state import Status

    p = sub.add_parser("list", parents=[reads], help="jobs, newest first")
    p.add_argument("--status", choices=[s.value for s in Status])
    p.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    p.add_argument("--group", metavar="GID", help="only the members of this group (q.map)")


def _show(sub: Any, _: argparse.ArgumentParser, reads: argparse.ArgumentParser) -> None:
    p = sub.add_parser("show", parents=[reads], help="one job: payload, state, errors; or a group (q.map)")
    p.add_argument("job_id", help=JOB_ID_HELP)


def _wait(sub: Any, _: argparse.ArgumentParser, reads: argparse.ArgumentParser) -> None:
    p = sub.add_parser("wait", parents=[reads], help="wait for a job, with a progress bar")
    p.add_argument("job_id", help=JOB_ID_HELP)
    p.add_argument("--timeout", type=float, default=None, metavar="S")


def _retry(sub: Any, common: argparse.ArgumentParser, _: argparse.ArgumentParser) -> None:
    p = sub.add_parser("retry", parents=[common], help="re-queue a dead job (or all of them)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("job_id", nargs="?", help=JOB_ID_HELP)
    target.add_argument("--all-dead", action="store_true")


def _cancel(sub: Any, common: argparse.ArgumentParser, _: argparse.ArgumentParser) -> None:
    p = sub.add_parser("cancel", parents=[common], help="cancel a waiting or running job")
    p.add_argument("job_id", help=JOB_ID_HELP)


def _purge(sub: Any, common: argparse.ArgumentParser, _: argparse.ArgumentParser) -> None:
    from ..state import Status

    finished = [s.value for s in Status if s.finished]
    p = sub.add_parser("purge", parents=[common],
                       help="delete jobs that finished more than a given time ago")
    p.add_argument("--status", action="append", choices=finished,
                   help="status to purge (repeatable; default: every finished status,"
                        f" {', '.join(finished)})")
    p.add_argument("--older-than", required=True, metavar="DURATION",
                   help="finished more than this long ago: 90s, 15m, 12h, 7d, 2w (a unit is"
                        " required)")


def _verify(sub: Any, _: argparse.ArgumentParser, reads: argparse.ArgumentParser) -> None:
    from .upkeep import VERIFY_EPILOG

    sub.add_parser("verify", parents=[reads],
                   help="check every job to run can be read; load every record and snapshot",
                   epilog=VERIFY_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)


def _compact(sub: Any, _: argparse.ArgumentParser, reads: argparse.ArgumentParser) -> None:
    sub.add_parser("compact", parents=[reads], help="rewrite the log without purged jobs")


def _rekey(sub: Any, _: argparse.ArgumentParser, reads: argparse.ArgumentParser) -> None:
    sub.add_parser("rekey", parents=[reads],
                   help="re-sign with the current secret key what old keys signed, so that"
                        " they can be dropped")


def _backup(sub: Any, _: argparse.ArgumentParser, reads: argparse.ArgumentParser) -> None:
    p = sub.add_parser("backup", parents=[reads],
                       help="copy the queue, consistently, while it is in use")
    p.add_argument("dest", metavar="DEST", help="a new (or empty) directory for the copy")


def _migrate(sub: Any, common: argparse.ArgumentParser, _: argparse.ArgumentParser) -> None:
    p = sub.add_parser("migrate", parents=[common],
                       help="create or upgrade the queue's storage (a PostgreSQL database's"
                            " jobq tables) now, rather than when first opened")
    p.add_argument("--check", action="store_true",
                   help="change nothing: exit 1 if an upgrade is pending")


def _schedule(sub: Any, common: argparse.ArgumentParser, reads: argparse.ArgumentParser) -> None:
    from . import schedule  # it imports jobq.schedule for its choices

    schedule.add_parser(sub, common, reads)


def _limit(sub: Any, common: argparse.ArgumentParser, reads: argparse.ArgumentParser) -> None:
    from . import limit

    limit.add_parser(sub, common, reads)


def _dashboard(sub: Any, common: argparse.ArgumentParser, _: argparse.ArgumentParser) -> None:
    from . import dashboard

    dashboard.add_parser(sub, common)


def _demo(sub: Any, common: argparse.ArgumentParser, _: argparse.ArgumentParser) -> None:
    sub.add_parser("demo", parents=[common],
                   help="run resumable jobs, kill a worker mid-job, watch the job resume")


# Each command, in the order of the help, and the function adding its parser.
_COMMANDS: dict[str, Callable[[Any, argparse.ArgumentParser, argparse.ArgumentParser], None]] = {
    "enqueue": _enqueue, "init": _init, "worker": _worker, "status": _status,
    "workers": _workers, "list": _list, "show": _show, "wait": _wait, "retry": _retry,
    "cancel": _cancel, "purge": _purge, "verify": _verify, "compact": _compact, "rekey": _rekey,
    "backup": _backup, "migrate": _migrate, "schedule": _schedule, "limit": _limit,
    "dashboard": _dashboard, "demo": _demo}
COMMANDS = set(_COMMANDS)


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
    """A duration, 0 or more: seconds, or with a unit (``15m``, ``7d``: jobq.cli.inputs)."""
    from ..errors import InvalidArgument
    from .inputs import seconds

    try:
        return seconds(text)
    except InvalidArgument as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
