"""``jobq limit set|list|remove``: concurrency and rate limits per key (:mod:`jobq.limits`).

``jobq limit set api --concurrency 3 --rate 100 --per 60`` replaces the key's limits; jobs
enqueued with ``--concurrency-key api`` (or ``concurrency_key="api"``) run within them.
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from ..errors import InvalidArgument
from ..queue import Queue
from . import inputs, render


def add_parser(sub: Any, common: argparse.ArgumentParser,
               reads: argparse.ArgumentParser) -> None:
    """``jobq limit`` and its three commands."""
    p = sub.add_parser("limit", parents=[common],
                       help="concurrency and rate limits per key: set, list, remove")
    verbs = p.add_subparsers(dest="limit_command", required=True, metavar="ACTION")
    s = verbs.add_parser("set", parents=[common], help="set (replace) a key's limits")
    s.add_argument("key", help="the concurrency key of the jobs to limit")
    s.add_argument("--concurrency", type=int, default=None, metavar="N",
                   help="at most N jobs of the key running at once, across every worker")
    s.add_argument("--rate", type=int, default=None, metavar="N",
                   help="at most N starts per --per window (jobs over it wait for the next)")
    s.add_argument("--per", type=_per, default=None, metavar="SECONDS",
                   help="the rate's window: seconds (60) or a duration (1m, 1h)")
    verbs.add_parser("list", parents=[reads], help="every key's limits")
    r = verbs.add_parser("remove", parents=[common],
                         help="remove a key's limits (its jobs run unlimited)")
    r.add_argument("key")


def _per(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        try:
            return inputs.parse_duration(text)
        except InvalidArgument as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc


def run(q: Queue, args: argparse.Namespace, out: TextIO) -> int:
    return {"set": set_limit, "list": list_limits, "remove": remove}[args.limit_command](
        q, args, out)


def set_limit(q: Queue, args: argparse.Namespace, out: TextIO) -> int:
    if args.concurrency is None and args.rate is None and args.per is None:
        raise InvalidArgument("give --concurrency N, --rate N --per SECONDS, or both"
                              " (jobq limit remove KEY removes a key's limits)")
    limit = q.set_limit(args.key, concurrency=args.concurrency, rate=args.rate, per=args.per)
    assert limit is not None
    print(f"limit {limit.key}: {_describe(limit.concurrency, limit.rate, limit.per)}", file=out)
    return 0


def list_limits(q: Queue, args: argparse.Namespace, out: TextIO) -> int:
    limits = q.limits()
    if args.json:
        render.as_json([limit.as_dict() for limit in limits], out)
        return 0
    if not limits:
        print("no limits", file=out)
        return 0
    render.table(["KEY", "CONCURRENCY", "RATE"],
                 [[lim.key, "-" if lim.concurrency is None else lim.concurrency,
                   "-" if lim.rate is None else f"{lim.rate} per {lim.per:g} s"]
                  for lim in limits], out)
    return 0


def remove(q: Queue, args: argparse.Namespace, out: TextIO) -> int:
    if not q.remove_limit(args.key):
        raise InvalidArgument(f"no limit on key {args.key!r} (jobq limit list shows them)")
    print(f"limit {args.key} removed: its jobs run unlimited", file=out)
    return 0


def _describe(concurrency: int | None, rate: int | None, per: float | None) -> str:
    parts = []
    if concurrency is not None:
        parts.append(f"at most {concurrency} running at once")
    if rate is not None:
        parts.append(f"at most {rate} starts per {per:g} s")
    return ", ".join(parts)
