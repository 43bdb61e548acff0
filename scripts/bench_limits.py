#!/usr/bin/env python3
"""What limits per key (issue 17) cost the claim path: one process's settle loop, ratios printed.

    python scripts/bench_limits.py [--jobs N] [--batch K] [--runs R] [--dsn DSN] [--no-pg]

On each engine (a queue directory under ``.bench-tmp/``; a database made for the run on the
PostgreSQL server at ``--dsn``, default ``JOBQ_BENCH_PG_DSN`` or postgresql://postgres@
127.0.0.1:5432/postgres, dropped at its end), N jobs are queued, then drained by the worker's
loop on ``Engine.settle`` (record the last batch, claim the next K, one transaction) in this
process, in four layouts, interleaved R times (medians printed):

* ``plain``: jobs without keys, no limit set: the baseline every other figure is divided by;
* ``plain, a limit set``: the same jobs, with a limit set on another key (the limited claim
  path runs, and finds no job of a limited key);
* ``keyed, no limit``: every job has a concurrency key that has no limit (free, by design);
* ``keyed, limited``: every job has a concurrency key limited to 1,000,000 at once (the limited
  path, each job's key looked up and counted).

Jobs are claimed and recorded, not run (the claim path is what is measured).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

from bench_scratch import scratch_dir  # noqa: E402

from jobq import Queue, transitions  # noqa: E402

LAYOUTS = ("plain", "plain, a limit set", "keyed, no limit", "keyed, limited")


def _succeeded(state, now, max_attempts):  # type: ignore[no-untyped-def]
    return transitions.succeeded(state, None, now)


def fill(q: Queue, layout: str, n: int) -> None:
    if layout.startswith("plain"):
        q.enqueue_many("operator:add", [(i, i) for i in range(n)])
    else:
        for i in range(n):
            q.enqueue_call("operator:add", (i, i), concurrency_key="k")
    store = getattr(q.engine, "store", None)
    if store is not None:  # the directory engine indexes the log first: not the claim's cost
        store.catch_up()
    if layout == "plain, a limit set":
        q.set_limit("other", concurrency=1)
    elif layout == "keyed, limited":
        q.set_limit("k", concurrency=1_000_000)


def drain(q: Queue, batch: int) -> tuple[float, int]:
    """Seconds to claim and record every job, K at a time; how many."""
    engine = q.engine
    finished: list[tuple[str, int, Callable]] = []
    done = 0
    started = time.perf_counter()
    while True:
        _, claims = engine.settle(finished, "bench", batch)
        if not claims:
            return time.perf_counter() - started, done
        finished = [(c.job_id, c.token, _succeeded) for c in claims]
        done += len(claims)


def one_run(location_of: Callable[[str], str], n: int, batch: int, fsync: bool
            ) -> dict[str, float]:
    per_job = {}
    for layout in LAYOUTS:
        with Queue(location_of(layout), fsync=fsync) as q:
            fill(q, layout, n)
            seconds, done = drain(q, batch)
            if done != n:
                raise RuntimeError(f"{layout}: drained {done} of {n}")
            per_job[layout] = seconds / n * 1e6
    return per_job


def report(engine: str, runs: list[dict[str, float]], n: int, batch: int) -> None:
    print(f"\n{engine}: claim and record N={n:,} jobs, K={batch}, medians of {len(runs)}")
    base = statistics.median(r["plain"] for r in runs)
    for layout in LAYOUTS:
        us = statistics.median(r[layout] for r in runs)
        print(f"  {layout:<22} {us:8.1f} us/job   {us / base:5.2f}x plain")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=3_000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dsn", default=os.environ.get("JOBQ_BENCH_PG_DSN",
                                                        "postgresql://postgres@127.0.0.1:5432/"
                                                        "postgres"))
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args(argv)
    with scratch_dir("limits-") as root:
        runs = []
        for r in range(args.runs):
            runs.append(one_run(lambda layout: str(root / f"{r}-{layout.replace(' ', '_')}"),
                                args.jobs, args.batch, fsync=True))
        report("directory engine", runs, args.jobs, args.batch)
    if args.no_pg:
        return 0
    import pg_server
    with pg_server.bench_database(args.dsn) as dsn:
        runs = []
        for r in range(args.runs):
            runs.append(one_run(lambda layout: pg_server.url_of(
                dsn, f"r{r}{LAYOUTS.index(layout)}"), args.jobs, args.batch, fsync=True))
        report("PostgreSQL engine", runs, args.jobs, args.batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
