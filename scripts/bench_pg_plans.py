"""A drain after an ANALYZE of the emptied queue, against one in a fresh database.

Each drain is scripts/pg_jobq.py's ``worker_drain`` (``jobq worker --burst`` processes, default
``2x1``: two workers of one child, on N no-op jobs queued by ``enqueue_many``, checked: none lost
or run twice), in a database of its own on a private cluster (autovacuum off: nothing analyzes
during a drain). Two cases:

- ``fresh``: a new database (jobq_jobs never analyzed: its size is estimated from its pages);
- ``emptied``: jobq_jobs first filled with N jobs of another queue, emptied (DELETE) and
  analyzed: statistics of no rows in the pages the table keeps, as autovacuum leaves them when
  it analyzes a drained queue; then the drain's queue is filled.

Printed per drain: jobs/s (wall, from the workers' start to the last completion) and the
server's CPU seconds (the backends', counted as the postmaster reaps them: cutime + cstime).
``--against DIR``: also drain with the jobq of checkout DIR (e.g. a git worktree of the base
commit), alternating with this one's, run by run.

    python scripts/bench_pg_plans.py --jobs 3000 --runs 3 --against /path/to/base-worktree
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests")]

import pg  # noqa: E402

# Run by each checkout's python (its own jobq and scripts): one drain, its result as JSON.
_DRAIN = """
import json, sys, time
from pathlib import Path
sys.path[:0] = [sys.argv[1] + "/scripts"]
import pg_jobq, pg_server, psycopg
dsn, n, case, layout, root = sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
pg_server.compile_sources()
with pg_jobq.Queue(pg_server.url_of(dsn, "setup")) as q:
    if case == "emptied":
        for start in range(0, n, pg_jobq.FILL_BATCH):
            q.enqueue_many(pg_jobq.noop_with, [(pg_jobq.PAD,)] * min(pg_jobq.FILL_BATCH, n - start))
with psycopg.connect(dsn, autocommit=True) as conn:
    if case == "emptied":
        conn.execute("DELETE FROM jobq_jobs")
        conn.execute("ANALYZE jobq_jobs")
    stats = conn.execute("SELECT relpages, reltuples FROM pg_class"
                         " WHERE relname = 'jobq_jobs'").fetchone()
rate, note = pg_jobq.worker_drain(dsn, n, layout, Path(root))
print(json.dumps({"rate": rate, "note": note, "stats": list(stats)}))
"""


def _reaped_cpu(pid: int) -> float:
    """CPU seconds of the postmaster's children that have exited (cutime + cstime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def drain(cluster: pg.Cluster, checkout: Path, n: int, case: str, layout: str, run: int
          ) -> dict[str, object]:
    dbname = f"plans_{case}_{run}_{time.monotonic_ns()}"
    admin = cluster.dsn()
    pg.psycopg()
    with pg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {dbname}")
    try:
        with tempfile.TemporaryDirectory(prefix="jobq-plans-") as root:
            pid = cluster.postmaster_pid()
            assert pid is not None
            before = _reaped_cpu(pid)
            out = subprocess.run(
                [sys.executable, "-c", _DRAIN, str(checkout), cluster.dsn(dbname), str(n), case,
                 layout, root], capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise RuntimeError(f"drain failed: {out.stderr[-2000:]}")
            time.sleep(0.5)  # the last backends reaped
            result = json.loads(out.stdout.strip().splitlines()[-1])
            result["server_cpu"] = _reaped_cpu(pid) - before
            return result
    finally:
        with pg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=3_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--layout", default="2x1", choices=["2x1", "1x2"])
    parser.add_argument("--cases", default="fresh,emptied")
    parser.add_argument("--against", type=Path, help="a checkout of the jobq to compare with")
    args = parser.parse_args()
    checkouts = {"this": REPO} | ({"against": args.against.resolve()} if args.against else {})
    results: dict[tuple[str, str], list[dict[str, object]]] = {}
    with pg.private_cluster(settings={"autovacuum": "off"}) as cluster:
        for run in range(args.runs):
            for case in args.cases.split(","):
                order = list(checkouts.items())
                for name, checkout in order if run % 2 == 0 else order[::-1]:
                    r = drain(cluster, checkout, args.jobs, case, args.layout, run)
                    results.setdefault((name, case), []).append(r)
                    print(f"run {run} {case:8} {name:8} {r['rate']:8,.0f} jobs/s"
                          f"  server CPU {r['server_cpu']:6.2f} s  jobq_jobs (relpages,"
                          f" reltuples) before the fill {r['stats']}", flush=True)
    print(f"\nmedians, {args.jobs:,} jobs, {args.layout}, {args.runs} runs:")
    for (name, case), rs in results.items():
        print(f"  {case:8} {name:8} {statistics.median(r['rate'] for r in rs):8,.0f} jobs/s"
              f"  server CPU {statistics.median(r['server_cpu'] for r in rs):6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
