#!/usr/bin/env python3
"""What groups (``q.map``) cost, each figure next to a baseline measured in the same run.

    python scripts/bench_workflows.py [--items N] [--drain-jobs N] [--runs N]
                                      [--pg postgresql://user@host:port] [--pg-items N]

On each engine, each figure measured in a fresh child process:

1. ``q.map`` of ``--items`` items (1,000,000 by default) from a generator, durable (fsync on):
   its time and the child's peak RSS, next to ``enqueue_many`` of the same jobs (the same task
   and arguments, from the same generator);
2. a drain through ``engine.settle`` (batches of 100 finished + 100 claimed, one transaction
   each, as a worker child does) of one group of ``--drain-jobs`` members (100,000 by
   default), next to a plain drain of as many jobs: the fan-in's cost per member (the counter
   updated in each settle), in microseconds and as a ratio (goal >= 0.8x). fsync off for the
   drains (the figures are CPU, not the disk's; bench_dependencies.py does the same).

The best of ``--runs`` runs (2 by default) of each drain, interleaved. Queues are made under
``.bench-tmp/``; PostgreSQL queues in databases ``jobq_bench_<pid>_<tag>``, one a queue,
dropped at the end.
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

ENQUEUE = r"""
import resource, sys, time
from jobq import Queue
kind, n, location = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with Queue(location) as q:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if kind == "map":
        made = q.map("math:sqrt", range(n)).jobs
    else:
        made = len(q.enqueue_many("math:sqrt", ((i,) for i in range(n))))
    took = time.perf_counter() - start
    assert made == n, (made, n)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(took, before / 1024, peak / 1024)
"""

DRAIN = r"""
import sys, time
from jobq import Queue, transitions
kind, n, location = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with Queue(location, **({} if "postgresql:" in location else {"fsync": False})) as q:
    if kind == "group":
        g = q.map("math:sqrt", range(n), then="math:sqrt")
        last = f"{g.id}.{n - 1}"
    else:
        last = q.enqueue_many("math:sqrt", ((i,) for i in range(n)))[-1]
    q.state(last)  # indexed before the clock starts
    done = lambda s, now, m: transitions.succeeded(s, None, now)
    finished, count = [], 0
    start, cpu = time.perf_counter(), time.process_time()
    while True:
        _, claims = q.engine.settle(finished, "bench", 100)
        if not claims:
            break
        count += len(claims)
        finished = [(c.job_id, c.token, done) for c in claims]
    took, cpu = time.perf_counter() - start, time.process_time() - cpu
    expected = n + 1 if kind == "group" else n  # the group's final job, let go by the last
    assert count == expected, (count, expected)
    if kind == "group":
        st = q.group(g.id)
        assert st.done and st.ended == n and st.counts == {"succeeded": n}, st
    print(n / took, n / cpu)
"""


def child(code: str, *args: str) -> list[float]:
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True,
                         text=True, cwd=ROOT).stdout
    return [float(x) for x in out.split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--drain-jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--pg", default=None, metavar="URL",
                        help="a PostgreSQL server, postgresql://user@host:port (no database)")
    parser.add_argument("--pg-items", type=int, default=None,
                        help="--items on PostgreSQL (default: --items)")
    args = parser.parse_args()
    with scratch_dir("groups-") as tmp, ExitStack() as dbs:
        location = pg_server.fresh_queues(tmp, args.pg, dbs)
        for engine in ["local"] + (["postgres"] if args.pg else []):
            items = args.items if engine == "local" else (args.pg_items or args.items)
            print(f"{engine}:")
            m_took, m_before, m_peak = child(ENQUEUE, "map", str(items), location(engine))
            e_took, e_before, e_peak = child(ENQUEUE, "many", str(items), location(engine))
            print(f"  q.map of {items:,} items       {m_took:7.2f} s  {items / m_took:9,.0f}"
                  f" jobs/s  peak RSS {m_peak:6.0f} MiB (at start {m_before:.0f})")
            print(f"  enqueue_many of the same    {e_took:7.2f} s  {items / e_took:9,.0f}"
                  f" jobs/s  peak RSS {e_peak:6.0f} MiB (at start {e_before:.0f})")
            print(f"  map/enqueue_many time {m_took / e_took:.2f}x (goal <= 1x),"
                  f" peak RSS {m_peak / e_peak:.2f}x")
            n = args.drain_jobs
            runs: dict[str, list[list[float]]] = {"plain": [], "group": []}
            for _ in range(args.runs):
                for kind in runs:
                    runs[kind].append(child(DRAIN, kind, str(n), location(engine)))
            # wall clock, and this process's CPU time (on PostgreSQL the server's is not in it)
            for i, what in ((0, "wall"), (1, "CPU of the settling process")):
                plain, group = max(r[i] for r in runs["plain"]), max(r[i] for r in runs["group"])
                print(f"  drain, {what}: {n:,} plain jobs {plain:,.0f} jobs/s, a {n:,}-member"
                      f" group {group:,.0f} jobs/s: group/plain {group / plain:.2f}x"
                      f" (goal >= 0.80x), fan-in cost per member"
                      f" {(1 / group - 1 / plain) * 1e6:+.1f} us")
                print("    runs: plain " + ", ".join(f"{r[i]:,.0f}" for r in runs["plain"])
                      + "; group " + ", ".join(f"{r[i]:,.0f}" for r in runs["group"]))


if __name__ == "__main__":
    main()
