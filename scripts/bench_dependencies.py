#!/usr/bin/env python3
"""What dependencies cost the hot path, each figure next to a baseline measured in the same run.

    python scripts/bench_dependencies.py [--jobs N] [--runs N] [--baseline DIR]
                                         [--pg postgresql://user@host:port]

Drains N no-op jobs through ``engine.settle`` (batches of 100 finished + 100 claimed, one
transaction each, as a worker child does), on each engine:

1. plain jobs with this jobq, against the same with the jobq of ``--baseline``, a source tree
   from before dependencies (``git archive 7fda499 | tar -x -C DIR``; run by this interpreter
   from that directory): the price every settle now pays to look for dependents;
2. N/2 parents and N/2 dependents (each waiting for one parent, released by its settle),
   against plain jobs with this jobq: the price of a release.

The best of ``--runs`` runs (3 by default), run interleaved: on a machine shared with other
work, the best run is the one least disturbed. Queues are made under
``.bench-tmp/`` with fsync off (the figures are CPU, not the disk's); PostgreSQL queues in a
database ``jobq_bench_<pid>_<tag>`` each, dropped at the end.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pg_server
from bench_scratch import scratch_dir

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import sys, time
from jobq import Queue, transitions
kind, n, location = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with Queue(location, **({} if "postgresql:" in location else {"fsync": False})) as q:
    if kind == "plain":
        ids = q.enqueue_many("os:getpid", [()] * n)
    else:
        parents = q.enqueue_many("os:getpid", [()] * (n // 2))
        for p in parents:
            ids = [q.enqueue_call("os:getpid", depends_on=[p])]
    q.state(ids[-1])  # indexed before the clock starts
    done = lambda s, now, m: transitions.succeeded(s, None, now)
    finished, count = [], 0
    start = time.perf_counter()
    while True:
        _, claims = q.engine.settle(finished, "bench", 100)
        if not claims:
            break
        count += len(claims)
        finished = [(c.job_id, c.token, done) for c in claims]
    took = time.perf_counter() - start
    assert count == n, (count, n)
    print(n / took)
"""


def run(source: Path, kind: str, n: int, location: str) -> float:
    """Jobs per second of one drain, by this interpreter with the jobq of ``source``."""
    out = subprocess.run([sys.executable, "-c", CHILD, kind, str(n), location], check=True,
                         capture_output=True, text=True, cwd=source).stdout
    return float(out.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", default=None, type=Path, metavar="DIR",
                        help="a jobq source tree from before dependencies (figure 1)")
    parser.add_argument("--pg", default=None, metavar="URL",
                        help="a PostgreSQL server, postgresql://user@host:port (no database)")
    args = parser.parse_args()
    engines = ["local"] + (["postgres"] if args.pg else [])
    with scratch_dir("deps-") as tmp, ExitStack() as dbs:
        location = pg_server.fresh_queues(tmp, args.pg, dbs)
        for engine in engines:
            figures: dict[str, list[float]] = {"plain": [], "pairs": [], "baseline": []}
            for _ in range(args.runs):
                figures["plain"].append(run(ROOT, "plain", args.jobs, location(engine)))
                figures["pairs"].append(run(ROOT, "pairs", args.jobs, location(engine)))
                if args.baseline:
                    figures["baseline"].append(run(args.baseline, "plain", args.jobs,
                                                   location(engine)))
            med = {k: max(v) for k, v in figures.items() if v}
            print(f"{engine}: {args.jobs} jobs, best of {args.runs} runs")
            print(f"  plain jobs, this jobq      {med['plain']:9.0f} jobs/s")
            if "baseline" in med:
                print(f"  plain jobs, baseline jobq  {med['baseline']:9.0f} jobs/s"
                      f"  (this/baseline {med['plain'] / med['baseline']:.2f}x)")
            print(f"  half parents, half waiting {med['pairs']:9.0f} jobs/s"
                  f"  (pairs/plain {med['pairs'] / med['plain']:.2f}x)")


if __name__ == "__main__":
    main()
