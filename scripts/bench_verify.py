#!/usr/bin/env python3
"""``verify`` on a big queue: its time next to a bare read of the same queue, its memory at two
sizes.

Usage::

    python scripts/bench_verify.py [--quick] [--jobs N]

``verify`` reads the log once, alongside the jobs that have not finished, which it takes from the
index a page at a time, and reads the snapshots a page at a time. Two figures show that it stays
linear and streaming:

1. Time: ``verify(queue)`` against a baseline measured in the same run on the same queue: a scan of
   the log that loads every record's payload, and a decode of every snapshot (what verify did
   before it checked the jobs). Ratio = verify / baseline; best of three runs each.
2. Memory: the peak of traced allocations (``tracemalloc``) during ``verify`` on a queue of N jobs,
   against one of N/10, but at least SMALL_MIN (with fewer, the whole log fits in the scanner's
   1 MiB read window, which the peak is mostly made of). A ratio near 1 means the memory does not
   grow with the queue.

Half of each queue's jobs are finished (succeeded, with a snapshot), half still queued. Files go
under ``.bench-tmp/`` at the repository root and are removed at the end.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jobq import Queue, job_record, transitions  # noqa: E402
from jobq.local.log import Entry, Position  # noqa: E402
from jobq.maintenance import verify  # noqa: E402

TASK = "builtins:print"
CHUNK = 10_000
SMALL_MIN = 10_000


def build(path: Path, jobs: int) -> Queue:
    queue = Queue(path)
    for start in range(0, jobs, CHUNK):
        queue.enqueue_many(TASK, [(i,) for i in range(start, min(jobs, start + CHUNK))])
    queue.counts()  # index every record

    def done(state, now, _max_attempts):  # type: ignore[no-untyped-def]
        return transitions.succeeded(state, None, now)

    finished = 0
    while finished < jobs // 2:
        claims = queue.store.claim("bench", min(1_000, jobs // 2 - finished))
        queue.store.settle([(c.job_id, c.token, done) for c in claims], "bench", 0)
        finished += len(claims)
    return queue


def baseline(queue: Queue) -> None:
    """Every record loaded and every snapshot decoded, nothing else."""
    rules = queue.config.rules
    for item in queue.log.scan(Position(1, 0)):
        if isinstance(item, Entry):
            job_record.load_payload(item.frame.body, rules)
    shelf = queue.store.shelf
    for key, raw in shelf.dict.conn.execute("SELECT key, value FROM Dict"):
        shelf.decode(key.decode(), raw)


def best_of(runs: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def peak_memory(queue: Queue) -> int:
    tracemalloc.start()
    try:
        report = verify(queue)
        assert report.ok, report
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30,000 jobs instead of 200,000")
    parser.add_argument("--jobs", type=int, default=None)
    args = parser.parse_args(argv)
    jobs = args.jobs or (30_000 if args.quick else 200_000)
    fewer = max(SMALL_MIN, jobs // 10)
    (REPO / ".bench-tmp").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=REPO / ".bench-tmp") as tmp:
        big = build(Path(tmp) / "big", jobs)
        small = build(Path(tmp) / "small", fewer)
        try:
            base = best_of(3, lambda: baseline(big))
            took = best_of(3, lambda: verify(big))
            mem_small, mem_big = peak_memory(small), peak_memory(big)
        finally:
            big.close()
            small.close()
    print(f"jobs {jobs:,} (half finished)")
    print(f"time    verify {took:8.3f} s   baseline (load every record and snapshot)"
          f" {base:8.3f} s   ratio {took / base:5.2f}")
    print(f"memory  verify peak {mem_big / 1e6:8.2f} MB on {jobs:,} jobs, {mem_small / 1e6:8.2f} MB"
          f" on {fewer:,}   ratio {mem_big / mem_small:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
