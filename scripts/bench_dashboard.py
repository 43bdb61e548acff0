#!/usr/bin/env python3
"""What a dashboard page costs on a big queue: each page of ``jobq dashboard`` timed through its
WSGI app (no HTTP), on a queue of N jobs, against a bare engine read measured in the same run.

Usage::

    python scripts/bench_dashboard.py [--jobs N] [--engine dir|pg|both] [--runs R] [--dsn DSN]

The queue: N jobs enqueued by ``enqueue_many`` (not timed), 90% of one task and 10% of
another; the oldest 200 run to success and the next 20 to death (in this process), so most
are queued: the
counts stop at their cap, and the lists have rows of every kind. PostgreSQL: in a database made
for the run on the server at ``--dsn`` (default ``JOBQ_BENCH_PG_DSN``, else
postgresql://postgres@127.0.0.1:5432/postgres), dropped at the end, ANALYZEd once filled (as
autovacuum keeps a queue in use).

Each page is called R times after one warm-up call; the median is printed, and its ratio to
the baseline: ``engine.row(id)``, one job's index row, the cheapest read a page makes. The
filters no index answers (a substring of the id, an unknown task) read at most
``listing.SCAN_LIMIT`` jobs a page and link on: those are the slow pages, printed as such.
A q.map group of ``GROUP`` members is added (not timed) for the group filter.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts")]  # this checkout's jobq, not an installed one

from jobq import Queue  # noqa: E402
from jobq.dashboard import Dashboard  # noqa: E402
from jobq.testing import run_burst  # noqa: E402

MAIN, OTHER = "peers.tasks:noop", "bench_dashboard:fail"
BATCH = 10_000


def fail() -> None:
    raise ValueError("a failure for the dashboard to show")


def item(x: object) -> object:  # a q.map group's task (never run here)
    return x


GROUP = 1_000


def fill(location: str, jobs: int) -> tuple[list[str], float]:
    """N jobs; returns a few ids (first, middle, last) and the seconds filling took."""
    started, ids = time.perf_counter(), []
    with Queue(location) as q:
        # The oldest, which run first: 200 that succeed, then 20 that die.
        q.enqueue_many(MAIN, [() for _ in range(200)])
        q.enqueue_many(OTHER, [() for _ in range(20)], max_attempts=1)
        done = 220
        while done < jobs:
            n = min(BATCH, jobs - done)
            others = n // 10
            made = q.enqueue_many(MAIN, [() for _ in range(n - others)])
            made += q.enqueue_many(OTHER, [() for _ in range(others)], max_attempts=1)
            if len(ids) == 0 or done + n >= jobs or done <= jobs // 2 < done + n:
                ids.append(made[-1])
            done += n
        filled = time.perf_counter() - started
        run_burst(q, max_jobs=220)
    return ids, filled


def call(app: Dashboard, path: str) -> int:
    raw, _, query = path.partition("?")
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": raw, "QUERY_STRING": query,
               "HTTP_HOST": "127.0.0.1:8181", "wsgi.input": io.BytesIO()}
    got: dict[str, Any] = {}
    body = b"".join(app(environ, lambda status, headers: got.update(status=status)))
    code = int(got["status"].split()[0])
    assert code in (200, 303), (path, got["status"], body[:300])
    return len(body)


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm-up: caches, prepared plans
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def bench(location: str, jobs: int, runs: int, label: str,
          settle: Callable[[], None] = lambda: None) -> None:
    ids, filled = fill(location, jobs)
    settle()
    first, middle, last = ids[0], ids[len(ids) // 2], ids[-1]
    with Queue(location) as q:
        app = Dashboard(q, allow_actions=True)
        group = q.map("bench_dashboard:item", range(GROUP)).id  # not timed: a q.map group among the jobs
        counts = q.counts()
        print(f"\n== {label}: {jobs:,} jobs (filled in {filled:.1f} s: {jobs / filled:,.0f}/s);"
              f" {', '.join(f'{s} {n:,}' for s, n in counts.items() if n)}")
        base = median_ms(lambda: q.engine.row(middle), runs)
        print(f"{'baseline: engine.row(id)':44} {base:9.3f} ms   1.0x")
        pages = [("/", "overview"), ("/metrics", "metrics"), ("/jobs", "jobs, newest"),
                 ("/jobs?order=oldest", "jobs, oldest"),
                 (f"/jobs?after={middle}", "jobs, a page in the middle (by key)"),
                 ("/jobs?status=queued", "jobs, status queued"),
                 ("/jobs?status=dead", "jobs, status dead"),
                 (f"/jobs?task={OTHER}", "jobs, task (10% of jobs)"),
                 (f"/jobs/{middle}", "job page"), (f"/jobs?id={last[:-2]}", "jump by id prefix"),
                 (f"/jobs?group={group}", f"jobs, group ({GROUP:,} members)"),
                 (f"/jobs?q={first[-8:]}", "jobs, id contains (one match, oldest)"),
                 ("/jobs?q=no-such-text", "jobs, id contains, no match (budget)"),
                 ("/jobs?task=no.such:task", "jobs, unknown task (budget)")]
        for path, name in pages:
            ms = median_ms(lambda: call(app, path), runs)
            print(f"{name:44} {ms:9.3f} ms {ms / base:6.1f}x")


def _analyze(dsn: str) -> None:
    """Table statistics, as autovacuum keeps them on a queue in use: a table filled a moment
    ago has none, and the planner would sort every row for a page."""
    import pg_server
    with pg_server.psycopg_module().connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--engine", choices=("dir", "pg", "both"), default="both")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--dsn", default=os.environ.get("JOBQ_BENCH_PG_DSN",
                                                       "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args(argv)
    if args.jobs < 100 or args.runs < 1:
        parser.error("--jobs is at least 100 and --runs at least 1")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; median of {args.runs} runs")
    if args.engine in ("dir", "both"):
        with tempfile.TemporaryDirectory(prefix="jobq-bench-dash-") as tmp:
            bench(os.path.join(tmp, "queue"), args.jobs, args.runs, "directory engine")
    if args.engine in ("pg", "both"):
        import pg_server
        with pg_server.bench_database(args.dsn) as dsn:
            bench(pg_server.url_of(dsn, "dash"), args.jobs, args.runs, "PostgreSQL engine",
                  settle=lambda: _analyze(dsn))


if __name__ == "__main__":
    main()
