#!/usr/bin/env python3
"""What a worker's heartbeat costs, and what reading the workers costs.

    PYTHONPATH=. python scripts/bench_heartbeat.py [--children N] [--beats N]

1. One heartbeat: the record of a worker with N children (each running a job) written with a
   rename and no fsync, then the supervisor's look at the other workers' records; next to one
   raw write+fdatasync of the same bytes, and as a share of one core at the default 2 s interval.
   The heartbeat is on the supervisor's clock, not per job: a drain's per-job cost is untouched.
2. ``Queue.workers()`` (what ``jobq workers`` reads) with 8 workers: 4 live, 4 dead.

Files go under ``.bench-tmp/`` on the project's disk.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from bench_scratch import scratch_dir  # noqa: E402
from jobq import Queue  # noqa: E402
from jobq.local import worker_records  # noqa: E402
from jobq.local import durable
from workers import WorkerConfig, liveness  # noqa: E402

HOLD = ("import sys, time; from jobq.local.workers import LivenessLock;"
        "lock = LivenessLock(sys.argv[1], sys.argv[2]); print('held', flush=True);"
        " time.sleep(600)")


def record(worker_id: str, children: int) -> dict[str, object]:
    now = time.time()
    return {"id": worker_id, "host": "bench", "pid": os.getpid(), "started": now,
            "queue": "/q", "version": "0", "concurrency": children, "heartbeat_interval": 2.0,
            "heartbeat": now, "children": [{"n": i, "pid": 1000 + i, "job_id": f"{i:032x}",
                                            "since": now} for i in range(1, children + 1)]}


def beat_cost(root: str, children: int, beats: int) -> float:
    """Seconds per heartbeat: publish our record, then probe every other recorded worker."""
    me = record("me-1-aa", children)
    start = time.perf_counter()
    for _ in range(beats):
        worker_records.publish(root, me)
        for other in worker_records.recorded(root):
            if other != "me-1-aa":
                liveness.is_dead(root, other)
    return (time.perf_counter() - start) / beats


def fsync_cost(root: str, size: int, writes: int) -> float:
    path = os.path.join(root, "raw")
    data = b"x" * size
    start = time.perf_counter()
    for _ in range(writes):
        durable.atomic_write(path, data)
    return (time.perf_counter() - start) / writes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=4)
    parser.add_argument("--beats", type=int, default=2000)
    args = parser.parse_args()
    interval = WorkerConfig().heartbeat_interval
    holders: list[subprocess.Popen[str]] = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with scratch_dir("heartbeat-") as tmp:
        qdir = str(tmp / "q")
        try:
            with Queue(qdir, fsync=False) as q:
                for i in range(8):  # 4 live (a process holds the lock), 4 dead
                    wid = f"w{i}-{i}-bb"
                    if i < 4:
                        holders.append(subprocess.Popen(
                            [sys.executable, "-c", HOLD, qdir, wid], env=env, text=True,
                            stdout=subprocess.PIPE))
                        holders[-1].stdout.readline()  # type: ignore[union-attr]
                    else:
                        os.makedirs(os.path.join(qdir, "workers"), exist_ok=True)
                        open(worker_records.lock_path(qdir, wid), "w").close()
                    worker_records.publish(qdir, record(wid, args.children))
                size = len(str(record("me-1-aa", args.children)))
                beat = statistics.median(beat_cost(qdir, args.children, args.beats // 5)
                                         for _ in range(5))
                raw = statistics.median(fsync_cost(str(tmp), size, 50) for _ in range(5))
                reads = []
                for _ in range(50):
                    start = time.perf_counter()
                    q.workers()
                    reads.append(time.perf_counter() - start)
        finally:
            for proc in holders:
                proc.send_signal(signal.SIGKILL)
                proc.communicate()
    print(f"jobq heartbeat benchmark ({os.cpu_count()} CPUs; Python {sys.version.split()[0]};"
          f" {args.children} children; 7 other workers' records looked at per beat)")
    rows = [("one heartbeat (record + look at others)", f"{beat * 1e6:,.0f} us",
             f"{beat / raw:.2f}x one durable write of the record ({raw * 1e6:,.0f} us)"),
            (f"share of one core at a {interval:g} s interval", f"{beat / interval:.4%}", ""),
            ("Queue.workers(), 8 workers", f"{statistics.median(reads) * 1e3:,.2f} ms", "")]
    for label, value, note in rows:
        print(f"  {label:<42}{value:>10}  {note}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
