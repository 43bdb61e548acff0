#!/usr/bin/env python3
"""Idle workers on PostgreSQL: what they cost the server, and how soon they start a new job,
with LISTEN/NOTIFY (the default) against poll-only (``?wakeups=poll``), in the same run.

    python scripts/bench_wakeups.py [--seconds S] [--jobs N] [--dsn DSN]

In a database made for the run and dropped at its end, for each mode in turn, a worker of
concurrency 2 in a process of its own (poll-only is what every worker did before wake-ups: each
idle child asks the server every poll_interval, 20 ms):

1. idle transactions per second: ``pg_stat_database.xact_commit + xact_rollback`` of the run's
   database over S seconds while the worker has nothing to do, read from another database so
   that the reads are not counted. Backends report these at most once a second, so a window of
   S >= 10 s keeps the error to a few percent. The supervisor's own chores (looking for dead
   workers every reap_interval, 0.1 s) are in both figures;
2. enqueue-to-start latency: N jobs enqueued one at a time by this process, each once the one
   before has finished and the worker has been idle for 0.3 s; the job's start (the server's
   clock) minus the time just before its enqueue (this host's clock: run it on the server's
   host); median and max.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
sys.path[:0] = [str(REPO), str(SCRIPTS)]

from bench_pg import DEFAULT_DSN, bench_database, server_info  # noqa: E402
from pg_server import url_of  # noqa: E402

from jobq import Queue, Status  # noqa: E402

TASK = "peers.tasks:noop"
WORKER = ("import sys\nfrom jobq import Queue\nfrom workers import Worker\n"
          "Worker(Queue(sys.argv[1]), concurrency=2, imports=('peers.tasks',)).run()\n")
SETTLE = 2.0  # seconds the worker is left idle before the idle window


def committed(server_dsn: str, database: str) -> int:
    import psycopg

    with psycopg.connect(server_dsn, autocommit=True) as conn:
        row = conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database"
                           " WHERE datname = %s", (database,)).fetchone()
    return int(row[0])


def run_one(q: Queue) -> float:
    """Seconds from just before enqueueing a job to its start."""
    before = time.time()
    job_id = q.enqueue(TASK)
    state = q.wait(job_id, timeout=60)
    assert state.status is Status.SUCCEEDED and state.started_at is not None, state.error
    return state.started_at - before


def measure(server_dsn: str, dsn: str, mode: str, seconds: float, jobs: int
            ) -> tuple[float, list[float]]:
    """Idle transactions per second, and the latencies, of a worker in ``mode``."""
    import psycopg

    database = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    url = f"{url_of(dsn, f'wake_{mode}')}&wakeups={mode}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(SCRIPTS)])}
    worker = subprocess.Popen([sys.executable, "-c", WORKER, url], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with Queue(url) as q:
            run_one(q)  # the worker is up
            time.sleep(SETTLE)
            start = committed(server_dsn, database)
            time.sleep(seconds)
            idle = (committed(server_dsn, database) - start) / seconds
            latencies = []
            for _ in range(jobs):
                time.sleep(0.3)  # idle again, and past the producer's debounce window
                latencies.append(run_one(q))
    finally:
        worker.terminate()
        worker.wait(60)
    return idle, latencies


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("JOBQ_BENCH_PG_DSN", DEFAULT_DSN))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--jobs", type=int, default=30)
    args = parser.parse_args(argv)
    results = {}
    with bench_database(args.dsn) as dsn:
        version, _ = server_info(dsn)
        for mode in ("poll", "listen"):
            print(f"{mode}...", file=sys.stderr)
            results[mode] = measure(args.dsn, dsn, mode, args.seconds, args.jobs)
    print("idle worker of concurrency 2 on PostgreSQL: LISTEN/NOTIFY against poll-only")
    print(f"  server:  {version}")
    print(f"  machine: {os.cpu_count()} CPUs; idle window {args.seconds:g} s;"
          f" {args.jobs} jobs one at a time")
    (poll_idle, poll_lat), (listen_idle, listen_lat) = results["poll"], results["listen"]
    print(f"  {'':34} {'poll-only':>12} {'listen':>12} {'listen/poll':>12}")
    print(f"  {'idle transactions/s (whole worker)':34} {poll_idle:12.1f} {listen_idle:12.1f}"
          f" {listen_idle / poll_idle:12.2f}")
    for name, pick in (("median", statistics.median), ("max", max)):
        p, li = pick(poll_lat) * 1000, pick(listen_lat) * 1000
        print(f"  {'enqueue-to-start ms, ' + name:34} {p:12.1f} {li:12.1f} {li / p:12.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
