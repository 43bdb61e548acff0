#!/usr/bin/env python3
"""CPU per job of a worker child's loop (claim, run, record), in this process.

    python scripts/bench_child.py [--jobs N] [--runs R]

N no-op jobs (20,000) are enqueued, then one child-like ``workers.child.Runner`` drains them in
this process, exactly as a worker child does (its pipe, board and info events included); the CPU
time of the whole process (``time.process_time()``: every thread, the watcher's too) is divided
by N. CPU time, not wall time, because on a shared machine the wall clock measures the
neighbours. Prints each run and the median. Run it in two trees alternately to compare them.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from bench_scratch import scratch_dir  # noqa: E402
from bench_tasks import noop  # noqa: E402
from jobq import Queue  # noqa: E402
from jobq.cli import configure_logging  # noqa: E402
from workers.board import Board  # noqa: E402
from workers.child import Runner  # noqa: E402
from workers.config import WorkerConfig  # noqa: E402
from workers.worker import log  # noqa: E402


def log_json_to(out: TextIO) -> None:
    """An info event per finished job, in JSON, as ``jobq worker --log-format json`` writes them
    by default, into ``out`` (a file here, as a service manager would take them)."""
    stderr, sys.stderr = sys.stderr, out
    try:
        configure_logging(True, fmt="json")
    finally:
        sys.stderr = stderr


def run_child(queue: Queue, prepare: Callable[[Runner, Board], None] | None = None) -> float:
    """Run one child-like Runner over ``queue`` until it idles with nothing ready (or its board
    asks it to stop); the CPU seconds of its loop. ``prepare`` sees the runner and its board
    before the loop starts."""
    ours, theirs = multiprocessing.Pipe()
    theirs.send(None)  # read once the queue is drained and the child idles: it stops
    board = Board()
    runner = Runner(ours, queue, board, "bench/1", WorkerConfig(), log.bind(worker="bench"))
    if prepare is not None:
        prepare(runner, board)
    start = time.process_time()
    runner.loop()
    getattr(runner, "close", lambda: None)()  # the watcher's thread, where there is one
    spent = time.process_time() - start
    while theirs.poll():
        theirs.recv()
    board.close()
    return spent


def one_run(path: Path, jobs: int) -> float:
    """CPU seconds per job of draining ``jobs`` no-op jobs."""
    with Queue(path) as queue:
        queue.enqueue_many(noop, [()] * jobs)
        queue.store.catch_up()
        spent = run_child(queue)
        assert queue.store.counts()["succeeded"] == jobs
    return spent / jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    figures = []
    with scratch_dir("child-") as root, open(root / "events.log", "w") as events:
        log_json_to(events)
        for n in range(args.runs):
            figures.append(one_run(root / f"q{n}", args.jobs))
            print(f"run {n + 1}: {figures[-1] * 1e6:.1f} µs CPU per job", flush=True)
    print(f"median: {statistics.median(figures) * 1e6:.1f} µs CPU per job ({ROOT})")


if __name__ == "__main__":
    main()
