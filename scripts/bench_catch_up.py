#!/usr/bin/env python3
"""CPU per record of indexing a producer's backlog (``Store.catch_up``), in this process.

    python scripts/bench_catch_up.py [--jobs N] [--runs R] [--limit L]
    python scripts/bench_catch_up.py --make DIR [--jobs N]    # a backlog, left unindexed
    python scripts/bench_catch_up.py --index DIR [--limit L]  # index it (under callgrind, say)

N no-op jobs (20,000) are enqueued without being indexed, then indexed in transactions of L
records each (2,000, as ``catch_up`` does; a worker child indexes 200 or more at each claim, in
the claim's transaction): the CPU time
of the indexing (``time.process_time()``) divided by N. CPU time, not wall time, because on a
shared machine the wall clock measures the neighbours. Run it in two trees alternately to compare
them. ``--make`` and ``--index`` split the two halves, so that callgrind can count the indexing
alone (minus a run with ``--jobs 1``, the interpreter's start-up).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from bench_scratch import scratch_dir  # noqa: E402
from bench_tasks import noop  # noqa: E402
from jobq import Queue  # noqa: E402
from jobq.local import index  # noqa: E402


def make(path: Path, jobs: int) -> None:
    """A queue at ``path`` whose log holds ``jobs`` no-op jobs the index has not seen."""
    queue = Queue(path)
    queue.close()
    queue = Queue._for_worker(path)  # opened without catching up
    try:
        for start in range(0, jobs, 5_000):
            queue.enqueue_many(noop, [()] * min(5_000, jobs - start))
    finally:
        queue.close()


def index_all(path: Path, limit: int) -> tuple[int, float]:
    """Index the backlog at ``path``, ``limit`` records a transaction, as ``catch_up`` does:
    (jobs, CPU seconds)."""
    queue = Queue._for_worker(path)
    try:
        store = queue.engine.store
        db, log_ = store._db, store._log
        indexed = 0
        start = time.process_time()
        while log_.has_more(store.covered()):
            with db.write() as conn:
                indexed += index.index_batch(conn, db.shelf, log_, time.time, limit)[0]
        return indexed, time.process_time() - start
    finally:
        queue.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=2_000, help="records a transaction")
    parser.add_argument("--make", type=Path, help="only make the backlog in this directory")
    parser.add_argument("--index", type=Path, help="only index the backlog in this directory")
    args = parser.parse_args()
    if args.make:
        make(args.make, args.jobs)
        return
    if args.index:
        indexed, spent = index_all(args.index, args.limit)
        print(f"{indexed} jobs: {spent / max(indexed, 1) * 1e6:.2f} µs CPU per job")
        return
    figures = []
    with scratch_dir("catch-up-") as root:
        for n in range(args.runs):
            make(root / f"q{n}", args.jobs)
            indexed, spent = index_all(root / f"q{n}", args.limit)
            assert indexed == args.jobs, indexed
            figures.append(spent / indexed)
            print(f"run {n + 1}: {figures[-1] * 1e6:.2f} µs CPU per job", flush=True)
    print(f"median: {statistics.median(figures) * 1e6:.2f} µs CPU per job ({ROOT})")


if __name__ == "__main__":
    main()
