#!/usr/bin/env python3
"""What ``jobq status`` costs on a big queue: the command run in this process (queue opened,
read, printed) and as a child process, on a queue of N jobs filled as
``scripts/bench_dashboard.py`` fills it (mostly queued), against baselines measured in the same
run.

Usage::

    python scripts/bench_status.py [--jobs N] [--engine dir|pg|both] [--runs R] [--dsn DSN]

Printed for each engine: the median of R runs of ``jobq status`` (rough counts, the default)
and of ``jobq status --exact`` (every job counted: the command before rough counts), each as a
ratio to ``engine.row(id)`` (in process) or to ``jobq status`` on an empty queue of the same
engine (child processes: interpreter start-up included). A checkout without ``--exact`` prints
"n/a" for it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts")]  # this checkout's jobq, not an installed one

from bench_dashboard import _analyze, fill, median_ms  # noqa: E402

from jobq import Queue  # noqa: E402
from jobq.cli import main as jobq_main  # noqa: E402


def in_process(argv: list[str]) -> Callable[[], None]:
    def run() -> None:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            code = jobq_main(argv)
        assert code == 0, (argv, out.getvalue()[:300])
    return run


def child(argv: list[str]) -> Callable[[], None]:
    command = [sys.executable, "-m", "jobq.cli", *argv]
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def run() -> None:
        subprocess.run(command, check=True, capture_output=True, env=env, timeout=600)
    return run


def supports_exact() -> bool:
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            jobq_main(["status", "--exact", "--dir", "/nonexistent/jobq-bench"])
    except SystemExit:
        return False  # argparse: no such option
    return True


def bench(location: str, empty: str, jobs: int, runs: int, label: str,
          settle: Callable[[], None] = lambda: None) -> None:
    ids, filled = fill(location, jobs)
    Queue(empty).close()
    settle()
    with Queue(location) as q:
        counts = q.counts()
        print(f"\n== {label}: {jobs:,} jobs (filled in {filled:.1f} s);"
              f" {', '.join(f'{s} {n:,}' for s, n in counts.items() if n)}")
        base = median_ms(lambda: q.engine.row(ids[len(ids) // 2]), runs)
    print(f"{'baseline: engine.row(id), in process':46} {base:10.3f} ms      1.0x")
    variants = [("jobq status", ["status"])]
    variants.append(("jobq status --exact", ["status", "--exact"]) if supports_exact()
                    else ("jobq status --exact", None))
    for name, argv in variants:
        if argv is None:
            print(f"{name + ', in process':46} {'n/a':>10}")
            continue
        ms = median_ms(in_process([*argv, "--dir", location]), runs)
        print(f"{name + ', in process':46} {ms:10.3f} ms {ms / base:8.1f}x")
    child_runs = max(3, runs // 4)
    empty_ms = median_ms(child(["status", "--dir", empty]), child_runs)
    print(f"{'baseline: jobq status on an empty queue, child':46} {empty_ms:10.3f} ms      1.0x")
    for name, argv in variants:
        if argv is not None:
            ms = median_ms(child([*argv, "--dir", location]), child_runs)
            print(f"{name + ', child process':46} {ms:10.3f} ms {ms / empty_ms:8.2f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--engine", choices=("dir", "pg", "both"), default="both")
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--dsn", default=os.environ.get(
        "JOBQ_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args(argv)
    if args.jobs < 300 or args.runs < 1:
        parser.error("--jobs is at least 300 and --runs at least 1")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; median of {args.runs} runs"
          f" in process, {max(3, args.runs // 4)} as child processes")
    if args.engine in ("dir", "both"):
        with tempfile.TemporaryDirectory(prefix="jobq-bench-status-") as tmp:
            bench(os.path.join(tmp, "queue"), os.path.join(tmp, "empty"), args.jobs, args.runs,
                  "directory engine")
    if args.engine in ("pg", "both"):
        import pg_server
        with pg_server.bench_database(args.dsn) as dsn:
            bench(pg_server.url_of(dsn, "status"), pg_server.url_of(dsn, "empty"), args.jobs,
                  args.runs, "PostgreSQL engine", settle=lambda: _analyze(dsn))


if __name__ == "__main__":
    main()
