"""``jobq schedule add|list|remove``: periodic schedules from the command line.

A schedule added here is stored in the queue, and the queue's workers fire it as they fire the
ones declared with ``@jobq.periodic`` (workers.scheduling). ``add NAME CRON TASK [ARG ...]``
takes a cron expression; ``add NAME --every 5m TASK [ARG ...]`` an interval in its place (the
first word after NAME is then the task).
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TextIO

from .. import tasks
from ..errors import InvalidArgument, ScheduleNotFound
from ..queue import Queue
from . import commands, inputs, render

if TYPE_CHECKING:  # imported where used: `jobq worker` needs none of jobq.schedule (issue 19)
    from ..schedule import Stored


class _Intermixed(argparse.ArgumentParser):
    """Mixed into the command's parser class: a parser that takes options anywhere among its
    positionals (``add NAME --every 5m TASK ARG``): argparse parses positionals a run at a
    time, so an option between two of them left the rest "unrecognized". The subcommand
    action calls ``parse_known_args``; it parses intermixed, whose own two passes run the
    plain parse."""

    _plain = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._plain:
            return super().parse_known_args(args, namespace)
        self._plain = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._plain = False


def add_parser(sub: Any, common: argparse.ArgumentParser,
               reads: argparse.ArgumentParser) -> None:
    """``jobq schedule`` and its three commands."""
    from ..schedule import MISFIRE, OVERLAP
    from .parser import add_ttls  # as jobq enqueue reads its ttls

    p = sub.add_parser("schedule", parents=[common], help="periodic jobs: add, list, remove")
    verbs = p.add_subparsers(dest="schedule_command", required=True, metavar="ACTION",
                             parser_class=type("_IntermixedParser", (_Intermixed, type(p)), {}))
    a = verbs.add_parser("add", parents=[common],
                         help="add (or replace) a schedule; prints its next fire time")
    a.add_argument("name", help="the schedule's name (letters, digits, _ . -)")
    a.add_argument("cron", help="a cron expression, quoted: '*/5 * * * *' (left out with"
                                " --every or --cron)")
    a.add_argument("task", nargs="?", help="the task, as 'package.module:function'")
    a.add_argument("args", nargs="*", metavar="ARG", help="arguments (JSON if they parse)")
    a.add_argument("--kwargs", metavar="JSON", help="keyword arguments as a JSON object")
    a.add_argument("--cron", dest="cron_option", metavar="EXPR",
                   help="the cron expression as an option: add NAME TASK [ARG ...] --cron EXPR")
    a.add_argument("--every", metavar="DURATION",
                   help="fire at this interval instead of a cron expression: 90s, 5m, 2h, 1d"
                        " (at multiples of it since the epoch, in UTC)")
    a.add_argument("--tz", default="UTC", help="the IANA time zone of the expression"
                                               " (default UTC), e.g. Europe/Berlin")
    a.add_argument("--misfire", default="skip", choices=MISFIRE,
                   help="after missed fire times: skip (default), once or all")
    a.add_argument("--overlap", default="skip", choices=OVERLAP,
                   help="while the last firing's job runs: skip (default) or allow")
    add_ttls(a, "each job it fires")
    verbs.add_parser("list", parents=[reads], help="the schedules and their next fire times")
    r = verbs.add_parser("remove", parents=[common], help="remove a schedule")
    r.add_argument("name")


def run(q: Queue, args: argparse.Namespace, out: TextIO) -> int:
    return {"add": add, "list": list_schedules, "remove": remove}[args.schedule_command](
        q, args, out)


def add(q: Queue, args: argparse.Namespace, out: TextIO) -> int:
    from ..schedule import Schedule

    commands.importable_cwd()
    kwargs = inputs.parse_kwargs(args.kwargs) or {}
    cron, words = _when(args)
    every = None if args.every is None else inputs.parse_duration(args.every)
    schedule = Schedule(name=args.name, cron=cron, every=every, task=words[0],
                        args=tuple(inputs.parse_arg(a) for a in words[1:]), kwargs=kwargs,
                        tz=args.tz, misfire=args.misfire, overlap=args.overlap,
                        result_ttl=args.result_ttl, failure_ttl=args.failure_ttl)
    tasks.reference(schedule.task)  # findable from here, as jobq enqueue checks
    q.engine.schedules.put(schedule, schedule.next_after(q.engine.now()))
    (stored,) = [s for s in q.engine.schedules.all() if s.schedule.name == schedule.name]
    print(f"schedule {schedule.name}: next at {_local(stored)} ({_utc(stored.next_at)})",
          file=out)
    return 0


def list_schedules(q: Queue, args: argparse.Namespace, out: TextIO) -> int:
    stored = q.engine.schedules.all()
    bad = q.engine.schedules.unreadable()
    if args.json:
        render.as_json([{"name": name, "unreadable": why} for name, why in bad] + [{
                        "name": s.schedule.name, "cron": s.schedule.cron,
                         "every": s.schedule.every, "when": s.schedule.when, "tz": s.schedule.tz,
                         "task": s.schedule.task, "args": list(s.schedule.args),
                         "kwargs": s.schedule.kwargs, "misfire": s.schedule.misfire,
                         "overlap": s.schedule.overlap, "result_ttl": s.schedule.result_ttl,
                         "failure_ttl": s.schedule.failure_ttl, "next_at": s.next_at,
                         "next": _utc(s.next_at), "last_job": s.last_job} for s in stored], out)
        return 0
    for name, why in bad:
        print(f"schedule {name}: unreadable ({why})", file=out)
    if not stored:
        print("no schedules" if not bad else "no other schedules", file=out)
        return 0
    render.table(["NAME", "CRON", "TZ", "NEXT", "TASK", "MISFIRE", "OVERLAP", "KEPT",
                  "LAST JOB"],
                 [[s.schedule.name, s.schedule.when, s.schedule.tz, _local(s),
                   s.schedule.task, s.schedule.misfire, s.schedule.overlap, s.schedule.kept,
                   s.last_job or "-"] for s in stored], out)
    return 0


def remove(q: Queue, args: argparse.Namespace, out: TextIO) -> int:
    if not q.engine.schedules.remove(args.name):
        raise ScheduleNotFound(f"no schedule named {args.name!r} (jobq schedule list shows"
                               " them)", name=args.name)
    print(f"schedule {args.name} removed", file=out)
    return 0


def _when(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """The cron expression (None with --every) and the words after it: the task, its ARGs."""
    words = [w for w in (args.cron, args.task, *args.args) if w is not None]
    if args.every is not None and args.cron_option is not None:
        raise InvalidArgument("give --cron or --every, not both")
    if args.every is not None:
        return None, words
    if args.cron_option is not None:
        return args.cron_option, words
    if args.task is None:
        raise InvalidArgument("give a cron expression and a task: jobq schedule add NAME"
                              " '*/5 * * * *' module:function (or --every 5m module:function)")
    return words[0], words[1:]


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _local(s: Stored) -> str:
    return datetime.fromtimestamp(s.next_at, s.schedule.zone()).strftime("%Y-%m-%d %H:%M:%S %Z")
