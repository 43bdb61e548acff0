"""A drain after an ANALYZE of the emptied queue, against one in a fresh database.

``--level worker`` (the default): scripts/pg_jobq.py's ``worker_drain`` (two ``jobq worker
--burst -c 1`` processes on N no-op jobs queued by ``enqueue_many``, checked: none lost or run
twice); ``--level settle``: one engine on one connection settling batches of 100 (recorded, and
the next claimed) until the queue is empty. Each in a database of its own on a private cluster
(autovacuum off: nothing analyzes during a drain). Two cases:

- ``fresh``: a new database (jobq_jobs never analyzed: its size is estimated from its pages);
- ``emptied``: jobq_jobs first filled with N jobs of another queue, emptied (DELETE) and
  analyzed: statistics of no rows in the pages the table keeps, as autovacuum leaves them when
  it analyzes a drained queue; then the drain's queue is filled.

Printed per drain: jobs/s (wall: for a worker drain from the workers' start to the last
completion, for a settle drain of the settles) and the server's CPU seconds from the case's
set-up on (the drain's own fill, then the drain: the backends' CPU, counted as the postmaster
reaps them, its cutime + cstime). ``--against DIR``: also drain with the jobq of checkout DIR
(e.g. a git worktree of the base commit), alternating with this one's, run by run.

    python scripts/bench_pg_plans.py --jobs 3000 --runs 3 --against /path/to/base-worktree
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests")]

import pg  # noqa: E402

# Run by each checkout's python (its own jobq, scripts and tests): the case's set-up, then one
# drain; its result as JSON.
_DRAIN = """
import json, os, sys, time
from pathlib import Path
checkout, dsn, n, case, level, root, postmaster = sys.argv[1:8]
n, postmaster = int(n), int(postmaster)
sys.path[:0] = [checkout, checkout + "/scripts", checkout + "/tests"]
import pg_jobq, pg_server, psycopg

def reaped():
    fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")

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
time.sleep(0.3)
before = reaped()
if level == "worker":
    rate, note = pg_jobq.worker_drain(dsn, n, "2x1", Path(root))
else:  # one engine settling batches of 100 (recorded, and the next claimed) on one connection
    from postgres.pgq import frames, open_url, succeed
    engine = open_url(pg_server.url_of(dsn, "settles"))
    engine.append(frames([f"j{i:07d}" for i in range(n)]))
    start = time.perf_counter()
    claims = engine.settle([], "w/1", 1, prefetch=99)[1]
    while claims:
        claims = engine.settle([(c.job_id, c.token, succeed()) for c in claims], "w/1", 1,
                               prefetch=99)[1]
    rate, note = n / (time.perf_counter() - start), ""
    engine.close()
time.sleep(0.3)
print(json.dumps({"rate": rate, "note": note, "stats": list(stats),
                  "server_cpu": reaped() - before}))
"""


def drain(cluster: pg.Cluster, checkout: Path, n: int, case: str, level: str, run: int
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
            out = subprocess.run(
                [sys.executable, "-c", _DRAIN, str(checkout), cluster.dsn(dbname), str(n), case,
                 level, root, str(pid)], capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise RuntimeError(f"drain failed: {out.stderr[-2000:]}")
            return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        with pg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=3_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--level", default="worker", choices=["worker", "settle"])
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
                    r = drain(cluster, checkout, args.jobs, case, args.level, run)
                    results.setdefault((name, case), []).append(r)
                    print(f"run {run} {case:8} {name:8} {r['rate']:8,.0f} jobs/s"
                          f"  server CPU {r['server_cpu']:6.2f} s  jobq_jobs (relpages,"
                          f" reltuples) before the fill {r['stats']}", flush=True)
    print(f"\nmedians, {args.jobs:,} jobs, {args.level} drains, {args.runs} runs:")
    for (name, case), rs in results.items():
        print(f"  {case:8} {name:8} {statistics.median(r['rate'] for r in rs):8,.0f} jobs/s"
              f"  server CPU {statistics.median(r['server_cpu'] for r in rs):6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
