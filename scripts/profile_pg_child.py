#!/usr/bin/env python3
"""Where a PostgreSQL worker child's CPU goes, per job: the real worker, measured inside.

    python scripts/profile_pg_child.py [--jobs N] [--dsn DSN] [--profile] [--top K]

N no-op jobs (about 300 bytes of payload, as in scripts/bench_pg.py) are queued in a database
made for the run, then drained by ``jobq worker --burst -c 1 --log-format json`` run in this
process (its log to a scratch file). In the forked child, the parts of the per-job work are
wrapped in timers of the process's CPU clock (waiting for the server is not counted; the
timers cost about a microsecond each), and the child's whole CPU time is read from the kernel.
Printed: CPU microseconds per job, in all and per part. ``--profile``: also cProfile's top K
functions by own time, on the CPU clock (the profile's own cost, several times the work, falls
on the functions called most: read its order, not its figures).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts")]  # this checkout's jobq, not an installed one

import pg_server  # noqa: E402
from bench_scratch import scratch_dir  # noqa: E402
from peers.tasks import noop_with  # noqa: E402
from pg_server import DEFAULT_DSN, bench_database  # noqa: E402

import workers.child  # noqa: E402
import workers.child_process  # noqa: E402
from jobq import Queue  # noqa: E402
from jobq.cli import main as cli_main  # noqa: E402
from jobq.codec import SnapshotCodec  # noqa: E402
from jobq.postgres import PgEngine  # noqa: E402
from workers.board import Board  # noqa: E402

PAD = b"x" * 220
# (label, the functions whose cumulative time it is: "file suffix:function name")
# (label, owner object, attribute): the functions timed, as the child calls them
PARTS = [("settle: record the batch, claim the next (Python side)", PgEngine, "settle"),
         ("  of which snapshot encoding", SnapshotCodec, "encode"),
         ("load the payload (verify, unpickle, find the task)", workers.child, "load"),
         ("run the task (execute: context, call, outcome)", workers.child, "execute"),
         ("report: log the events (JSON), tell the supervisor", workers.child.Runner, "_report"),
         ("  of which log_transition (the events made)", workers.child, "log_transition"),
         ("cancel check before each prefetched job", workers.child.Runner, "_cancel_requested"),
         ("board: what runs, for the supervisor", Board, "_write")]


def timed(spent: list[float], fn: Any) -> Any:
    clock = time.process_time

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[0] += clock() - start
    return wrapper


def measured_main(out: Path, profiling: bool) -> Any:
    """workers.child_process.main, its parts timed and (``profiling``) profiled, the figures written
    to ``out`` (JSON, and the profile beside it) when it returns."""
    real = workers.child_process.main

    def main(*args: Any, **kwargs: Any) -> None:
        spent = {label: [0.0] for label, _, _ in PARTS}
        for label, owner, name in PARTS:
            setattr(owner, name, timed(spent[label], getattr(owner, name)))
        profile = cProfile.Profile(time.process_time)
        if profiling:
            profile.enable()
        try:
            real(*args, **kwargs)
        finally:
            profile.disable()
            if profiling:
                profile.dump_stats(str(out.with_suffix(".pstats")))
            usage = resource.getrusage(resource.RUSAGE_SELF)
            out.write_text(json.dumps({"whole": usage.ru_utime + usage.ru_stime,
                                       **{k: v[0] for k, v in spent.items()}}))
    return main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("JOBQ_BENCH_PG_DSN", DEFAULT_DSN))
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--profile", action="store_true", help="also cProfile the child")
    args = parser.parse_args(argv)
    with scratch_dir("pg-profile-") as root, bench_database(args.dsn) as dsn:
        url = pg_server.url_of(dsn, "profile")
        with Queue(url) as q:
            for start in range(0, args.jobs, 5000):
                q.enqueue_many(noop_with, [(PAD,)] * min(5000, args.jobs - start))
        out = root / "child.json"
        # the slot forks with child_process.main as its target
        workers.child_process.main = measured_main(out, args.profile)
        saved = os.dup(2)
        with open(root / "worker.log", "w") as log:
            os.dup2(log.fileno(), 2)
            try:
                cli_main(["worker", "--log-format", "json", "--dir", url, "--burst", "-c", "1"])
            finally:
                os.dup2(saved, 2)
        with Queue(url) as q:
            done = q.counts()["succeeded"]
        if done != args.jobs:
            raise SystemExit(f"{args.jobs - done} jobs not done; log: {root / 'worker.log'}")
        per_job = 1e6 / args.jobs
        spent = json.loads(out.read_text())
        print(f"worker child, {args.jobs:,} no-op jobs: CPU microseconds per job"
              f"{' (profiled: the profile costs more than the work)' if args.profile else ''}")
        print(f"  {'the whole child process (from the kernel)':<56} {spent['whole'] * per_job:>7.1f}")
        for label, _, _ in PARTS:
            print(f"  {label:<56} {spent[label] * per_job:>7.1f}")
        if args.profile:
            print()
            pstats.Stats(str(out.with_suffix(".pstats"))).sort_stats("tottime").print_stats(
                args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
