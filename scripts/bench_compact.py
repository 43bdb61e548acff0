#!/usr/bin/env python3
"""How long claims wait while ``jobq compact`` rewrites segments full of jobs still to run.

Usage::

    python scripts/bench_compact.py [--quick] [--jobs N]

A queue gets N jobs (200,000 by default, 40,000 with ``--quick``) in segments of the default
size; every other chunk of 100 is finished and purged, so every segment is rewritten with N/2
jobs still queued in all. Then this process claims one job at a time (and gives it back) in a loop, first
for a while with nothing else running (the baseline), then while ``jobq compact`` runs as a
command. Printed: the longest and the median claim in each phase, their ratios, and how long the
compaction took. The longest claim during the compaction is about the longest hold of the write
lock: repointing one segment's live jobs (step (b) of :mod:`jobq.local.compaction`).

Files go under ``.bench-tmp/`` at the repository root (the project's disk, never a tmpfs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench_scratch import scratch_dir  # noqa: E402 - scripts/ is on sys.path: run from there
from jobq import Queue, transitions  # noqa: E402
from jobq.maintenance import purge  # noqa: E402

TASK = "operator:add"


def build(path: Path, jobs: int) -> None:
    """Chunks of 100 jobs alternate between priority 1 (finished, then purged) and 0 (queued)."""
    with Queue(path, fsync=False) as q:
        for start in range(0, jobs, 100):
            q.enqueue_many(TASK, [(i, i) for i in range(start, min(jobs, start + 100))],
                           priority=(start // 100) % 2)
        q.store.catch_up()
        done = lambda s, now, _: transitions.succeeded(s, None, now)  # noqa: E731
        finished = 0
        claims = q.store.claim("bench", 1000)
        while claims:
            mine = [c for c in claims if q.store.row(c.job_id)["priority"] == 1]
            back = [c for c in claims if c not in mine]  # the last batch reaches priority 0
            finished += len(mine)
            settled = [(c.job_id, c.token, done) for c in mine] + [
                (c.job_id, c.token, lambda s, now, _: transitions.released(s, now))
                for c in back]
            claims = q.store.settle(settled, "bench", 0 if back else 1000)[1]
        purged = purge(q, statuses=["succeeded"], older_than=0, now=time.time() + 1)
        print(f"{jobs:,} jobs in {len(q.log.segments())} segment(s); purged {purged:,},"
              f" {q.counts()['queued']:,} still queued", flush=True)


def claim_times(q: Queue, until) -> list[float]:  # type: ignore[no-untyped-def]
    back = lambda s, now, _: transitions.released(s, now)  # noqa: E731
    times = []
    while not until():
        start = time.perf_counter()
        claims = q.store.claim("prober", 1)
        times.append(time.perf_counter() - start)
        q.store.settle([(c.job_id, c.token, back) for c in claims], "prober", 0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--jobs", type=int, default=None)
    args = parser.parse_args()
    jobs = args.jobs or (40_000 if args.quick else 200_000)
    with scratch_dir("compact-") as root:
        path = root / "queue"
        build(path, jobs)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        with Queue(path) as q:
            q.store.catch_up()
            deadline = time.monotonic() + 3.0
            baseline = claim_times(q, lambda: time.monotonic() > deadline)
            start = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", "jobq.cli", "compact", "--dir",
                                     str(path)], env=env, stdout=subprocess.PIPE, text=True)
            during = claim_times(q, lambda: proc.poll() is not None)
            took = time.perf_counter() - start
            out = proc.stdout.read().strip() if proc.stdout else ""
    if proc.returncode:
        raise SystemExit(f"jobq compact failed ({proc.returncode})")
    print(f"jobq compact: {out} ({took:.2f} s)")
    for name, pick in (("longest", max), ("median", statistics.median)):
        base, busy = pick(baseline), pick(during)
        print(f"{name} claim: {busy * 1e3:8.2f} ms during compaction, {base * 1e3:8.2f} ms without"
              f" (ratio {busy / base:,.1f}x; {len(during):,} and {len(baseline):,} claims)")


if __name__ == "__main__":
    main()
